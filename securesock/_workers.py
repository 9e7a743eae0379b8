"""
The parent side of ``twistd securesock --workers N``: it starts one
supervisor (L{securesock._prefork}) that builds the TLS contexts and forks
the N workers, each listening on the same ports with SO_REUSEPORT so the
kernel spreads new connections across cores; the workers share session
ticket keys.  This process logs their output, passes SIGHUP on, and stops
them when it stops.  If the supervisor ends on its own (no worker could
start), twistd stops with exit status 1.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._prefork import splitLines

__all__ = ["WorkerPool", "ParentWatch", "supervisorArguments"]

log = Logger(namespace="securesock.workers")


def supervisorArguments(count: int, grace: float, twistdArguments: list[str]) -> list[str]:
    """The command that forks C{count} workers running C{twistd twistdArguments}."""
    return [sys.executable, "-m", "securesock._prefork", str(count), str(grace), *twistdArguments]


class _Supervisor(ProcessProtocol):
    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool
        self.ended: Deferred[None] = Deferred()
        self._partial: dict[int, bytes] = {}  # per stream, so stdout and stderr lines never mix

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        lines, self._partial[childFD] = splitLines(self._partial.get(childFD, b""), data)
        for line in lines:
            self._log(line)

    def _log(self, line: bytes) -> None:
        # The supervisor's lines already say which worker ("worker 2: ...").
        log.info("{line}", line=line.decode("utf-8", "replace"))

    def processEnded(self, reason: Failure) -> None:
        for rest in self._partial.values():
            if rest:
                self._log(rest)
        self._partial.clear()
        self.ended.callback(None)
        self.pool.supervisorEnded(reason)


class WorkerPool(Service):
    """Starts the workers' supervisor, passes signals on, and stops it."""

    def __init__(self, reactor: Any, arguments: list[str], directory: str | None = None) -> None:
        self._reactor = reactor
        self._arguments = arguments
        self._directory = directory  # where the descriptions' relative paths are
        self._supervisor: _Supervisor | None = None
        self._process: Any = None

    def privilegedStartService(self) -> None:
        # Before twistd drops privileges: each worker binds its own sockets (the
        # kernel shares a port only between sockets of one user) and drops them
        # itself with the --uid/--gid it is given.
        super().privilegedStartService()
        self._start()

    def startService(self) -> None:
        super().startService()
        self._start()

    def _start(self) -> None:
        if self._supervisor is not None:
            return
        self._supervisor = _Supervisor(self)
        self._process = self._reactor.spawnProcess(
            self._supervisor, self._arguments[0], self._arguments, env=dict(os.environ), path=self._directory
        )
        log.info("started the workers' supervisor (pid {pid})", pid=self._process.pid)

    def supervisorEnded(self, reason: Failure) -> None:
        self._process = None
        if not self.running:
            return
        from ._tap import _stopWithFailure

        log.error("the workers' supervisor ended ({reason}); stopping", reason=reason.getErrorMessage())
        _stopWithFailure()

    def signalAll(self, name: str) -> None:
        """
        Pass C{name} (HUP, TERM) on to the workers, through the supervisor's
        standard input: once twistd has dropped privileges (--uid) it may no
        longer signal the supervisor, which stays root.
        """
        if self._process is not None:
            try:
                self._process.write(name.encode("ascii") + b"\n")
            except Exception:
                pass  # already gone

    def stopService(self) -> Deferred[Any]:  # type: ignore[override]
        super().stopService()
        if self._supervisor is None or self._process is None:
            return succeed(None)
        self.signalAll("TERM")
        return self._supervisor.ended


class ParentWatch(Service):
    """In a worker: stop when the parent process is gone (even killed with SIGKILL)."""

    interval = 1.0

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._parent = os.getppid()
        self._loop: Any = None

    def startService(self) -> None:
        super().startService()
        from twisted.internet.task import LoopingCall

        self._loop = LoopingCall(self._check)
        self._loop.clock = self._reactor
        self._loop.start(self.interval, now=False)

    def _check(self) -> None:
        if os.getppid() != self._parent:
            log.warn("the parent process {pid} is gone; this worker stops", pid=self._parent)
            self._loop.stop()
            self._reactor.stop()

    def stopService(self) -> None:  # type: ignore[override]
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
