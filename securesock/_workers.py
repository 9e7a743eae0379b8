"""
Worker processes for ``twistd securesock --workers N``: N-1 copies of the
command (the first process serves too), each listening on the same ports with
SO_REUSEPORT so the kernel spreads new connections across cores.  Workers
are stopped with the parent, receive its SIGHUP, and are restarted (a
bounded number of times) if they die.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = ["WorkerPool", "ParentWatch"]

log = Logger(namespace="securesock.workers")

_MAX_RESTARTS = 5
_MAX_LINE = 65536  # a longer run of output without a newline is logged in pieces


class _Worker(ProcessProtocol):
    def __init__(self, pool: WorkerPool, number: int) -> None:
        self.pool = pool
        self.number = number
        self.ended: Deferred[None] = Deferred()
        self._partial: dict[int, bytes] = {}  # per stream, so stdout and stderr lines never mix

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        *lines, rest = (self._partial.get(childFD, b"") + data).split(b"\n")
        if len(rest) >= _MAX_LINE:
            lines.append(rest)
            rest = b""
        self._partial[childFD] = rest
        for line in lines:
            self._log(line)

    def _log(self, line: bytes) -> None:
        log.info("worker {number}: {line}", number=self.number, line=line.decode("utf-8", "replace"))

    def processEnded(self, reason: Failure) -> None:
        for rest in self._partial.values():
            if rest:
                self._log(rest)
        self._partial.clear()
        self.ended.callback(None)
        self.pool.workerEnded(self, reason)


class WorkerPool(Service):
    """Starts, watches and stops the worker processes."""

    def __init__(self, reactor: Any, arguments: list[str], count: int) -> None:
        self._reactor = reactor
        self._arguments = arguments
        self._count = count
        self._workers: dict[int, tuple[_Worker, Any]] = {}
        self._restarts = 0
        self._started = False

    def privilegedStartService(self) -> None:
        # Before twistd drops privileges: each worker binds its own sockets (the
        # kernel shares a port only between sockets of one user) and drops them
        # itself with the --uid/--gid it is given.
        super().privilegedStartService()
        self._startWorkers()

    def startService(self) -> None:
        super().startService()
        self._startWorkers()

    def _startWorkers(self) -> None:
        if self._started:
            return
        self._started = True
        for number in range(1, self._count + 1):
            self._spawn(number)

    def _spawn(self, number: int) -> None:
        worker = _Worker(self, number)
        env = dict(os.environ, SECURESOCK_WORKER=str(number))
        process = self._reactor.spawnProcess(worker, self._arguments[0], self._arguments, env=env)
        self._workers[number] = (worker, process)
        log.info("started worker {number} (pid {pid})", number=number, pid=process.pid)

    def workerEnded(self, worker: _Worker, reason: Failure) -> None:
        self._workers.pop(worker.number, None)
        if not self.running:
            return
        if self._restarts >= _MAX_RESTARTS:
            log.error(
                "worker {number} ended ({reason}); not restarting again",
                number=worker.number,
                reason=reason.getErrorMessage(),
            )
            return
        self._restarts += 1
        log.warn(
            "worker {number} ended ({reason}); restarting",
            number=worker.number,
            reason=reason.getErrorMessage(),
        )
        self._reactor.callLater(1.0, self._restart, worker.number)

    def _restart(self, number: int) -> None:
        if self.running:  # not once the pool is stopping: the new worker would be left behind
            self._spawn(number)

    def signalAll(self, name: str) -> None:
        for _, process in list(self._workers.values()):
            try:
                process.signalProcess(name)
            except Exception:
                pass  # already gone

    def stopService(self) -> Deferred[Any]:  # type: ignore[override]
        super().stopService()
        self._started = False
        ended = [worker.ended for worker, _ in self._workers.values()]
        self.signalAll("TERM")
        return DeferredList(ended)  # type: ignore[return-value]


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
