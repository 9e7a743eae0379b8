"""
bench/run.py's order of measurements: each figure on every server back to
back, forwards then backwards, so that the pairs compared run by run are
seconds apart (and nothing is measured here: the loads are stand-ins).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .benchscripts import loadBenchScript

run = loadBenchScript("run")


class _StandIn:
    """A server of one kind, as measureInTurn sees it."""

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
    loads = [("full", _measuring("full", log), False), ("echo", _measuring("echo", log), True)]
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
        results, running, [("relay MB/s", _measuring("relay MB/s", log), False)], 1, {"relay": "twistd"}
    )
    assert sorted(results["relay MB/s"]) == ["stunnel", "twistd"]
    assert log == [("relay MB/s", "relay"), ("relay MB/s", "stunnel")]


def test_the_loads_of_each_certificate() -> None:
    ecdsa = [figure for figure, _, _ in run.certificateLoads("ecdsa", Path("loadgen"), 2, 2**20)]
    assert ecdsa == [
        "full ecdsa TLS1.2",
        "full ecdsa TLS1.3",
        "resumed ecdsa TLS1.2",
        "resumed ecdsa TLS1.3",
        "bulk server sends",
        "bulk server receives",
        "echo 100 B, 50 clients",
        "TTFB at 300 conn/s",
    ]
    concurrent = {
        figure for figure, _, many in run.certificateLoads("ecdsa", Path("loadgen"), 2, 2**20) if many
    }
    assert concurrent == {"echo 100 B, 50 clients", "TTFB at 300 conn/s"}
    rsa = [figure for figure, _, _ in run.certificateLoads("rsa", Path("loadgen"), 2, 2**20)]
    assert rsa == ["full rsa TLS1.2", "full rsa TLS1.3", "resumed rsa TLS1.3"]
