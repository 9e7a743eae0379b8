"""
securesock._prefork: the supervisor that builds TLS contexts, then forks
the workers of ``twistd securesock --workers N``.  Its processes are run for
real by tests/test_tap.py (tickets shared across workers, a busy port, a
killed parent); these tests pin its parts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from twisted.internet.task import Clock

import securesock
from securesock import _endpoints
from securesock._errors import DescriptionError
from securesock._prefork import (
    _BATCH_DELAY,
    _BATCH_SIZE,
    _PIPE_SIZE,
    LISTENING,
    MAX_RESTARTS,
    Supervisor,
    _Child,
    listenDescriptions,
    outputPipe,
    prebuild,
)

from .conftest import PKI

ROOT = Path(__file__).resolve().parent.parent


def test_listen_descriptions_are_read_from_the_worker_command() -> None:
    arguments = [
        "-n",
        "--pidfile=",
        "securesock",
        "--worker",
        "--listen",
        "tls:1",
        "-l",
        "tcp:2",
        "--listen=tls:3",
    ]
    assert listenDescriptions(arguments) == ["tls:1", "tcp:2", "tls:3"]
    assert listenDescriptions(["securesock", "--listen"]) == []  # a dangling option names nothing
    assert listenDescriptions(["-l", "twistd.log", "securesock", "-l", "tls:1"]) == [
        "tls:1"
    ]  # twistd's -l: a log file


def test_a_prebuilt_server_is_used_by_endpoints_of_equal_descriptions(
    pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_endpoints, "_prebuilt", {})
    description = f"tls:8443:interface=127.0.0.1:certificate={pki.server_pem}"
    upgraded = description.replace("tls:", "starttls:", 1) + ":dialect=smtp"
    assert prebuild([description, upgraded, "tcp:8080"]) == 2  # tcp: has no TLS side
    prebuilt = [creator for creator, _, _ in _endpoints._prebuilt.values()]
    clock = Clock()
    first = securesock.serverFromString(clock, description)
    second = securesock.serverFromString(clock, description)
    starttls = securesock.serverFromString(clock, upgraded)
    assert first.creator is second.creator is prebuilt[0]  # type: ignore[attr-defined]
    assert starttls._tls.creator is prebuilt[1]  # type: ignore[attr-defined]
    other = securesock.serverFromString(clock, description.replace("8443", "8444"))
    assert other.creator not in prebuilt  # type: ignore[attr-defined]  # other options: built anew


def test_prebuild_reports_a_bad_description(pki: PKI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_endpoints, "_prebuilt", {})
    with pytest.raises(DescriptionError, match="certificate="):
        prebuild(["tls:8443:certificate=/nonexistent/site.pem"])


def test_the_supervisor_refuses_a_bad_description_before_forking(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "securesock._prefork",
            "2",
            "1",
            "securesock",
            "--listen",
            "tls:8443:certificate=/nonexistent/x.pem",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert result.returncode == 1
    assert result.stderr.startswith("cannot start the workers: certificate=")
    assert "started worker" not in result.stdout


def _supervisor() -> Supervisor:
    return Supervisor(count=2, grace=1.0, twistdArguments=["securesock"])


def _ended(supervisor: Supervisor, status: int, serving: bool) -> None:
    """A worker ends: C{serving}, once every listener of it was up."""
    child = _Child(number=1, pid=1, output=-1, started=time.monotonic(), listening=1 if serving else 0)
    supervisor._ended(child, status)


def test_a_worker_that_dies_while_serving_is_restarted_a_bounded_number_of_times(
    capfd: pytest.CaptureFixture[str],
) -> None:
    supervisor = _supervisor()
    killed = signal.SIGKILL << 0  # waitpid's status for "killed by SIGKILL"
    for _ in range(MAX_RESTARTS):
        _ended(supervisor, killed, serving=True)
    assert len(supervisor.due) == MAX_RESTARTS
    _ended(supervisor, killed, serving=True)
    assert len(supervisor.due) == MAX_RESTARTS
    out = capfd.readouterr().out
    assert out.count("worker 1 ended (signal SIGKILL); restarting") == MAX_RESTARTS
    assert "worker 1 ended (signal SIGKILL); not restarting again" in out


def test_a_worker_that_fails_during_its_start_is_not_restarted(capfd: pytest.CaptureFixture[str]) -> None:
    supervisor = _supervisor()
    _ended(supervisor, 1 << 8, serving=False)  # exit status 1 at once: a busy port, say
    assert supervisor.due == []
    assert "worker 1 ended during its start (exit status 1); not restarting it" in capfd.readouterr().out


def test_a_worker_is_serving_once_every_listener_is_up(capfd: pytest.CaptureFixture[str]) -> None:
    """Counted from its log lines, not from the time since its start: one killed at once is restarted."""
    supervisor = Supervisor(count=1, grace=1.0, twistdArguments=["securesock"], listeners=2)
    write = _worker(supervisor, 1)
    child = supervisor.children[1001]
    try:
        os.write(
            write, b"2026-12-07T10:00:00+0000 [securesock.twistd#info] listening: tls:1 on IPv4Address\n"
        )
        supervisor._relay(child)
        assert child.listening == 1
        os.write(write, b"x [securesock.twistd#info] listening: tls:2 on IPv4Address\n")
        supervisor._relay(child)
        assert child.listening == 2 and LISTENING == b"] listening: "
    finally:
        os.close(write)
        os.close(child.output)
    supervisor._ended(child, signal.SIGKILL)  # killed a moment after its start, while serving
    assert [number for _, number in supervisor.due] == [1]
    assert "worker 1 ended (signal SIGKILL); restarting" in capfd.readouterr().out


def test_the_parents_orders_come_on_standard_input(capfd: pytest.CaptureFixture[str]) -> None:
    """HUP and TERM as lines (twistd may have dropped privileges a signal would need); b"": the parent is gone."""
    supervisor = _supervisor()
    handled: list[int] = []
    supervisor._handleSignal = handled.append  # type: ignore[method-assign]
    supervisor._obey(b"HUP\nHUP\nTERM\n")
    assert handled == [signal.SIGHUP, signal.SIGHUP, signal.SIGTERM]
    supervisor._obey(b"nonsense\n")
    assert handled == [signal.SIGHUP, signal.SIGHUP, signal.SIGTERM]
    supervisor._obey(b"")
    assert supervisor.stopping
    assert "the parent process is gone; stopping the workers" in capfd.readouterr().out


def test_no_worker_is_restarted_once_stopping(capfd: pytest.CaptureFixture[str]) -> None:
    supervisor = _supervisor()
    supervisor.due.append((0.0, 2))
    supervisor._stop()
    assert supervisor.due == [] and supervisor.stopping
    _ended(supervisor, signal.SIGTERM, serving=True)
    assert supervisor.due == []
    assert "worker 1 ended (signal SIGTERM)" in capfd.readouterr().out


def _worker(supervisor: Supervisor, number: int) -> int:
    """A stand-in worker: the write end of a pipe the supervisor reads as its output."""
    readEnd, writeEnd = outputPipe()
    supervisor.children[1000 + number] = _Child(number=number, pid=1000 + number, output=readEnd, started=0.0)
    return writeEnd


def test_workers_lines_wait_to_go_together_and_keep_their_order(capfd: pytest.CaptureFixture[str]) -> None:
    supervisor = _supervisor()
    one, two = _worker(supervisor, 1), _worker(supervisor, 2)
    try:
        os.write(one, b"first\nsecond \xff\npart")
        supervisor._relay(supervisor.children[1001])
        os.write(two, b"from two\n")
        supervisor._relay(supervisor.children[1002])
        assert capfd.readouterr().out == ""  # held for at most _BATCH_DELAY
        assert 0 < supervisor._batchDue - time.monotonic() <= _BATCH_DELAY
        supervisor._say("a line of the supervisor's own")
        assert capfd.readouterr().out == (
            "worker 1: first\n"
            "worker 1: second \ufffd\n"  # bytes that are not UTF-8 are passed on as they are
            "worker 2: from two\n"
            "a line of the supervisor's own\n"
        )
        os.close(one)
        one = -1
        supervisor._relay(supervisor.children[1001])  # the end of its output: the unfinished line goes
        supervisor._passOn()
        assert capfd.readouterr().out == "worker 1: part\n"
    finally:
        for fd in (one, two, *(child.output for child in supervisor.children.values())):
            if fd >= 0:
                os.close(fd)


def test_while_lines_wait_the_workers_pipes_are_not_watched(capfd: pytest.CaptureFixture[str]) -> None:
    """One wake-up of the supervisor per batch, not per line: the next lines wait in the pipes."""
    supervisor = _supervisor()
    one, two = _worker(supervisor, 1), _worker(supervisor, 2)
    outputs = [child.output for child in supervisor.children.values()]
    try:
        assert supervisor._outputsToWatch() == outputs  # nothing waiting: watch every pipe
        os.write(one, b"a line\n")
        supervisor._relay(supervisor.children[1001])
        assert supervisor._outputsToWatch() == []  # a batch waits: no pipe watched until it is due
        supervisor._batchDue = time.monotonic() - 0.001
        assert supervisor._outputsToWatch() == outputs  # due: read everything, then pass it on
        supervisor._passOn()
        assert capfd.readouterr().out == "worker 1: a line\n"
        assert supervisor._outputsToWatch() == outputs
    finally:
        for fd in (one, two, *outputs):
            os.close(fd)


def test_everything_waiting_in_a_pipe_is_read_at_once(capfd: pytest.CaptureFixture[str]) -> None:
    """Lines that waited for the batch come out in one read pass, whole and in order (more than one read's 64 KiB)."""
    supervisor = _supervisor()
    one = _worker(supervisor, 1)
    lines = [b"line %05d " % number + b"x" * 80 + b"\n" for number in range(3000)]  # ~270 KiB
    try:
        os.write(one, b"".join(lines))
        supervisor._relay(supervisor.children[1001])
        supervisor._passOn()
        out = capfd.readouterr().out
        assert out == "".join("worker 1: " + line.decode() for line in lines)
        supervisor._relay(supervisor.children[1001])  # empty now: returns at once (the read end never blocks)
        assert supervisor._batch == bytearray()
    finally:
        os.close(one)
        os.close(supervisor.children[1001].output)


def test_a_workers_pipe_holds_its_lines_meanwhile() -> None:
    import fcntl

    readEnd, writeEnd = outputPipe()
    try:
        if sys.platform == "linux":
            assert fcntl.fcntl(readEnd, fcntl.F_GETPIPE_SZ) >= min(_PIPE_SIZE, _pipeMaxSize())
        assert fcntl.fcntl(readEnd, fcntl.F_GETFL) & os.O_NONBLOCK  # the supervisor's end
        assert not fcntl.fcntl(writeEnd, fcntl.F_GETFL) & os.O_NONBLOCK  # the worker's: writes wait
    finally:
        os.close(readEnd)
        os.close(writeEnd)


def _pipeMaxSize() -> int:
    return int(Path("/proc/sys/fs/pipe-max-size").read_text())


def test_a_full_batch_of_lines_is_passed_on_at_once(capfd: pytest.CaptureFixture[str]) -> None:
    supervisor = _supervisor()
    one = _worker(supervisor, 1)
    line = b"x" * 99 + b"\n"
    fitting = -(-_BATCH_SIZE // len(b"worker 1: " + line)) - 1  # the most whole lines below the size
    try:
        for _ in range(fitting):
            os.write(one, line)
            supervisor._relay(supervisor.children[1001])
        assert capfd.readouterr().out == ""
        os.write(one, line)
        supervisor._relay(supervisor.children[1001])
        out = capfd.readouterr().out
        assert out.count("worker 1: " + "x" * 99 + "\n") == fitting + 1
        assert supervisor._batch == bytearray()
    finally:
        os.close(one)
        os.close(supervisor.children[1001].output)


def test_workers_lines_reach_the_parent_soon_while_the_supervisor_runs(tmp_path: Path) -> None:
    """The real loop: a worker's line arrives within the batch delay (plus a margin), not at the next tick."""
    script = (
        "import sys, time\n"
        "from securesock._prefork import Supervisor\n"
        "class Workers(Supervisor):\n"
        "    def _becomeWorker(self, number, output):\n"
        "        import os\n"
        "        os.dup2(output, 1)\n"
        "        for n in range(3):\n"
        "            os.write(1, b'line %d\\n' % n)\n"
        "            time.sleep(0.3)\n"
        "        os._exit(0)\n"
        "sys.exit(Workers(count=1, grace=1.0, twistdArguments=[]).run())\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert process.stdout is not None
    try:
        arrivals = []
        for _ in range(4):  # then the worker ends, and would be started again
            line = process.stdout.readline()
            if not line:
                break
            arrivals.append((time.monotonic(), line.decode().strip()))
    finally:
        process.kill()
        process.wait(timeout=10)
    lines = [text for _, text in arrivals]
    assert lines[0].startswith("started worker 1 (pid ")
    assert lines[1:4] == ["worker 1: line 0", "worker 1: line 1", "worker 1: line 2"]
    gaps = [later - earlier for (earlier, _), (later, _) in zip(arrivals[1:3], arrivals[2:4], strict=True)]
    # written 0.3 s apart: each arrives on its own, not held back for a later one or a tick
    assert all(0.15 < gap < 0.3 + _BATCH_DELAY + 0.25 for gap in gaps), gaps
