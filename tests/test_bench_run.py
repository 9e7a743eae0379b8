"""
bench/run.py's order of measurements (each figure on every server back to
back, forwards then backwards, so that the pairs compared run by run are
seconds apart; the loads here are stand-ins), and how it reads a server's
CPU time (to the nanosecond when it can).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from .benchscripts import loadBenchScript, requirePinnedCores
from .conftest import requireTool

run = loadBenchScript("run")


class _StandIn:
    """A server of one kind, as measureInTurn sees it."""

    port = 0

    def __init__(self, kind: str) -> None:
        self.kind = kind


def _measuring(figure: str, log: list[tuple[str, str]]) -> Any:
    def load(server: _StandIn) -> dict[str, float]:
        log.append((figure, server.kind))
        return {"cpu_us_per_op": float(len(log))}

    return load


def test_each_figure_is_measured_on_every_server_before_the_next_figure_in_turns_that_reverse() -> None:
    running = {kind: _StandIn(kind) for kind in ("securesock", "twisted", "pyopenssl")}
    log: list[tuple[str, str]] = []
    loads = [
        run.Load("full", _measuring("full", log)),
        run.Load("echo", _measuring("echo", log), concurrent=True),
    ]
    results: dict[str, Any] = {}
    run.measureInTurn(results, running, loads, 2)
    assert log == [
        ("full", "securesock"),
        ("full", "twisted"),
        ("full", "pyopenssl"),
        ("echo", "securesock"),  # the floor serves one connection at a time: no echo of 50 clients
        ("echo", "twisted"),
        ("full", "pyopenssl"),  # the second run goes backwards
        ("full", "twisted"),
        ("full", "securesock"),
        ("echo", "twisted"),
        ("echo", "securesock"),
    ]
    # Recorded run by run: the i-th value of each server belongs to run i.
    assert results["full"]["securesock"] == [{"cpu_us_per_op": 1.0}, {"cpu_us_per_op": 8.0}]
    assert results["full"]["twisted"] == [{"cpu_us_per_op": 2.0}, {"cpu_us_per_op": 7.0}]
    assert "pyopenssl" not in results["echo"]


def test_servers_are_recorded_under_the_names_given() -> None:
    running = {kind: _StandIn(kind) for kind in ("relay", "stunnel")}
    log: list[tuple[str, str]] = []
    results: dict[str, Any] = {}
    run.measureInTurn(
        results, running, [run.Load("relay MB/s", _measuring("relay MB/s", log))], 1, {"relay": "twistd"}
    )
    assert sorted(results["relay MB/s"]) == ["stunnel", "twistd"]
    assert log == [("relay MB/s", "relay"), ("relay MB/s", "stunnel")]


def test_a_load_for_some_kinds_is_measured_on_those_alone() -> None:
    running = {kind: _StandIn(kind) for kind in ("securesock", "twisted", "pyopenssl")}
    log: list[tuple[str, str]] = []
    results: dict[str, Any] = {}
    loads = [run.Load("+ page", _measuring("+ page", log), only=frozenset({"securesock"}))]
    run.measureInTurn(results, running, loads, 2)
    assert log == [("+ page", "securesock"), ("+ page", "securesock")]
    assert list(results["+ page"]) == ["securesock"]


def _sTimeArguments(monkeypatch: pytest.MonkeyPatch, certName: str) -> dict[str, tuple[Any, ...]]:
    """Each handshake figure of certName: the s_time arguments it measures with (version, reuse, www)."""
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(run, "measured", lambda server, load, *args: calls.append(args) or {})
    found = {}
    for load in run.certificateLoads(certName, Path("loadgen"), 2, 2**20):
        if load.figure.startswith(("full", "resumed")):
            load.measure(_StandIn("securesock"))
            port, seconds, *flags = calls[-1]
            found[load.figure] = tuple(flags)
    return found


def test_the_loads_of_each_certificate(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A resumption is compared with a full handshake doing the same work
    around it: TLS 1.2's alone, TLS 1.3's serving a page (s_time reads the
    tickets only with -www), securesock's full handshake once more with it.
    """
    ecdsa = run.certificateLoads("ecdsa", Path("loadgen"), 2, 2**20)
    assert [load.figure for load in ecdsa] == [
        "full ecdsa TLS1.2",
        "full ecdsa TLS1.3",
        "resumed ecdsa TLS1.2",
        "full ecdsa TLS1.3 + page",
        "resumed ecdsa TLS1.3",
        "bulk server sends",
        "bulk server receives",
        "echo 100 B, 50 clients",
        "TTFB at 300 conn/s",
    ]
    assert {load.figure for load in ecdsa if load.concurrent} == {
        "echo 100 B, 50 clients",
        "TTFB at 300 conn/s",
    }
    assert {load.figure: load.only for load in ecdsa if load.only} == {
        "full ecdsa TLS1.3 + page": frozenset({"securesock"})
    }
    rsa = [load.figure for load in run.certificateLoads("rsa", Path("loadgen"), 2, 2**20)]
    assert rsa == ["full rsa TLS1.2", "full rsa TLS1.3", "full rsa TLS1.3 + page", "resumed rsa TLS1.3"]
    # (version, reuse, www)
    assert _sTimeArguments(monkeypatch, "ecdsa") == {
        "full ecdsa TLS1.2": ("1_2", False, False),
        "full ecdsa TLS1.3": ("1_3", False, False),
        "resumed ecdsa TLS1.2": ("1_2", True, False),
        "full ecdsa TLS1.3 + page": ("1_3", False, True),
        "resumed ecdsa TLS1.3": ("1_3", True, True),
    }
    assert _sTimeArguments(monkeypatch, "rsa") == {
        "full rsa TLS1.2": ("1_2", False, False),
        "full rsa TLS1.3": ("1_3", False, False),
        "full rsa TLS1.3 + page": ("1_3", False, True),
        "resumed rsa TLS1.3": ("1_3", True, True),
    }


def test_s_time_resumes_tls_1_2_alone_and_tls_1_3_only_with_a_page(tmp_path: Path) -> None:
    """
    What the loads above rely on, with real s_time against a real
    securesock server: TLS 1.2 sessions resume from the handshake alone;
    TLS 1.3 ones only when s_time reads a page, and with it the tickets.
    """
    requireTool("openssl")
    requirePinnedCores()
    cert, key = run.certificates(tmp_path)["ecdsa"]
    server = run.Server("securesock", cert, key, tmp_path, None)
    try:
        resumed = {
            (version, www): run.sTime(server.port, 1, version, True, www)[1]["resumed_pct"]
            for version, www in (("1_2", False), ("1_3", False), ("1_3", True))
        }
    finally:
        server.stop()
    assert resumed[("1_2", False)] >= 95
    assert resumed[("1_3", False)] == 0
    assert resumed[("1_3", True)] >= 95


def _burn(seconds: float) -> None:
    deadline = time.process_time() + seconds
    while time.process_time() < deadline:  # bounded: this process's own CPU time
        pass


def test_cpu_is_counted_to_the_nanosecond_when_the_same_threads_lived_through_the_measurement() -> None:
    for _attempt in range(5):  # a thread of this process (a pool's) may come or go meanwhile: read again
        before = run.cpuReading(os.getpid())
        _burn(0.03)
        after = run.cpuReading(os.getpid())
        assert before.threads is not None and after.threads is not None
        if before.threads.keys() == after.threads.keys():
            break
    else:
        pytest.skip("this process's threads kept changing")
    mine = threading.get_native_id()
    assert after.threads[mine] - before.threads[mine] >= 30_000_000  # this thread's 30 ms, in ns
    spent = run.cpuSpent(before, after)
    assert spent == (sum(after.threads.values()) - sum(before.threads.values())) / 1e9
    assert 0.03 <= spent < 0.03 + 0.5
    assert abs(spent - (after.ticks - before.ticks)) <= 0.05  # the clock ticks agree, to a few of them


def test_cpu_comes_from_the_clock_ticks_when_threads_came_or_went() -> None:
    before = run.CPUReading(ticks=1.00, threads={10: 5_000_000_000})
    came = run.CPUReading(ticks=1.25, threads={10: 5_100_000_000, 11: 50_000_000})
    went = run.CPUReading(ticks=1.25, threads={11: 50_000_000})
    unread = run.CPUReading(ticks=1.25, threads=None)
    # the same thread, but 0.25 s in the ticks: another came and went
    churned = run.CPUReading(ticks=1.25, threads={10: 5_123_456_789})
    same = run.CPUReading(ticks=1.12, threads={10: 5_123_456_789})
    for after in (came, went, unread, churned):
        assert run.cpuSpent(before, after) == 0.25
    assert abs(run.cpuSpent(before, same) - 0.123456789) < 1e-9


def test_a_thread_that_came_and_went_between_the_readings_is_counted() -> None:
    """stunnel's case: one thread per connection, none alive when CPU is read."""

    def burn() -> None:
        deadline = time.thread_time() + 0.2
        stop = time.monotonic() + 10
        while time.thread_time() < deadline and time.monotonic() < stop:  # bounded in CPU and in time
            pass

    before = run.cpuReading(os.getpid())
    worker = threading.Thread(target=burn)
    worker.start()
    worker.join(timeout=15)
    assert not worker.is_alive()
    after = run.cpuReading(os.getpid())
    assert before.threads is not None and after.threads is not None
    if before.threads.keys() != after.threads.keys():
        pytest.skip("another thread of this process came or went meanwhile")
    # the live threads missed it
    assert sum(after.threads.values()) - sum(before.threads.values()) < 150_000_000
    assert run.cpuSpent(before, after) >= 0.2 - 0.03  # its 0.2 s, to three ticks
