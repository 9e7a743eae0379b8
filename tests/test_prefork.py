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
from pathlib import Path

import pytest
from twisted.internet.task import Clock

import securesock
from securesock import _endpoints
from securesock._errors import DescriptionError
from securesock._prefork import (
    MAX_RESTARTS,
    STARTUP_SECONDS,
    Supervisor,
    _Child,
    listenDescriptions,
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
    assert listenDescriptions(["-l", "twistd.log", "securesock", "-l", "tls:1"]) == ["tls:1"]  # twistd's -l: a log file


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


def _ended(supervisor: Supervisor, status: int, age: float) -> None:
    import time

    child = _Child(number=1, pid=1, output=-1, started=time.monotonic() - age)
    supervisor._ended(child, status)


def test_a_worker_that_dies_while_serving_is_restarted_a_bounded_number_of_times(
    capfd: pytest.CaptureFixture[str],
) -> None:
    supervisor = _supervisor()
    killed = signal.SIGKILL << 0  # waitpid's status for "killed by SIGKILL"
    for _ in range(MAX_RESTARTS):
        _ended(supervisor, killed, age=STARTUP_SECONDS + 1)
    assert len(supervisor.due) == MAX_RESTARTS
    _ended(supervisor, killed, age=STARTUP_SECONDS + 1)
    assert len(supervisor.due) == MAX_RESTARTS
    out = capfd.readouterr().out
    assert out.count("worker 1 ended (signal SIGKILL); restarting") == MAX_RESTARTS
    assert "worker 1 ended (signal SIGKILL); not restarting again" in out


def test_a_worker_that_fails_during_its_start_is_not_restarted(capfd: pytest.CaptureFixture[str]) -> None:
    supervisor = _supervisor()
    _ended(supervisor, 1 << 8, age=0.5)  # exit status 1 at once: a busy port, say
    assert supervisor.due == []
    assert "worker 1 ended during its start (exit status 1); not restarting it" in capfd.readouterr().out


def test_no_worker_is_restarted_once_stopping(capfd: pytest.CaptureFixture[str]) -> None:
    supervisor = _supervisor()
    supervisor.due.append((0.0, 2))
    supervisor._stop()
    assert supervisor.due == [] and supervisor.stopping
    _ended(supervisor, signal.SIGTERM, age=STARTUP_SECONDS + 1)
    assert supervisor.due == []
    assert "worker 1 ended (signal SIGTERM)" in capfd.readouterr().out
