"""
The worker processes of ``twistd securesock --workers N``, forked from one
process that built every listener's TLS contexts first and never started a
reactor.

OpenSSL makes a context's session ticket keys when the context is created,
so workers forked after the contexts exist accept each other's tickets: a
returning client resumes its session on whichever worker the kernel hands
its next connection to (SO_REUSEPORT spreads connections by address and
port, not by client).  A reactor cannot be forked (its epoll instance would
be shared), hence this small supervisor without one:

    python -m securesock._prefork COUNT GRACE TWISTD-ARGUMENT...

It prebuilds the TLS side of every ``--listen`` in the twistd arguments,
forks COUNT workers that each run ``twistd TWISTD-ARGUMENT...``, writes their
output as ``worker N: line``, restarts a worker that dies (a bounded number
of times, never one that dies before all its listeners are up), passes SIGHUP
on, and on SIGTERM, SIGINT or the end of its standard input (its parent is
gone) stops them: SIGTERM, then SIGKILL after the grace period.

The parent sends its orders as lines on the standard input too (``HUP``,
``TERM``): a signal would not do after twistd has dropped privileges with
--uid, as this process (and the workers, until they drop theirs) is root.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["prebuild", "main", "splitLines", "outputPipe"]

MAX_RESTARTS = 5
# What a worker's twistd logs for each listener that is up (securesock._tap):
# a worker that ends before all of them are failed to start (a busy port, a
# certificate gone), and starting it again would fail again.
LISTENING = b"] listening: "
_HANDLED = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)
_TICK = 0.5  # seconds between looks at the children, at most
_MAX_LINE = 65536  # a longer run of output without a newline goes out in pieces
# Workers' lines are passed on together, at most this late (seconds): written one
# by one, each connection's log line woke the parent process up on its own, which
# cost it more CPU than the line itself (docs/performance.md, "workers").
_BATCH_DELAY = 0.05
_BATCH_SIZE = 65536  # or as soon as this much is waiting
# A worker's pipe holds its lines meanwhile: 1 MiB (Linux's default cap for a user) is
# some 7,000 connection lines, 140,000 a second, before a worker would wait to write.
_PIPE_SIZE = 2**20


def splitLines(partial: bytes, data: bytes) -> tuple[list[bytes], bytes]:
    """
    The whole lines of C{partial + data}, and what is left after the last
    newline (given back as a line when it grows too long to wait for one).
    """
    *lines, rest = (partial + data).split(b"\n")
    if len(rest) >= _MAX_LINE:
        lines.append(rest)
        rest = b""
    return lines, rest


def prebuild(descriptions: Sequence[str]) -> int:
    """
    Build the TLS side of every securesock server description in
    C{descriptions} (others, e.g. C{tcp:}, have none); returns how many.
    """
    from ._description import parseServer
    from ._endpoints import prebuildServer

    count = 0
    for description in descriptions:
        parsed = parseServer(description)
        if not isinstance(parsed, str):
            prebuildServer(parsed)
            count += 1
    return count


def listenDescriptions(twistdArguments: Sequence[str]) -> list[str]:
    """
    The values of C{--listen}/C{-l} of the C{securesock} subcommand in a
    twistd command line (before it, C{-l} is twistd's own C{--logfile}).
    """
    arguments = list(twistdArguments)
    options = arguments[arguments.index("securesock") + 1 :] if "securesock" in arguments else []
    found = []
    for index, argument in enumerate(options):
        if argument in ("--listen", "-l") and index + 1 < len(options):
            found.append(options[index + 1])
        elif argument.startswith("--listen="):
            found.append(argument[len("--listen=") :])
    return found


@dataclass
class _Child:
    number: int
    pid: int
    output: int  # read end of the worker's stdout and stderr
    started: float
    partial: bytes = b""
    listening: int = 0  # its listeners that are up


@dataclass
class Supervisor:
    """Forks, watches, restarts and stops the workers."""

    count: int
    grace: float
    twistdArguments: list[str]
    listeners: int = 1  # a worker serves once this many are up
    children: dict[int, _Child] = field(default_factory=dict)  # by pid
    restarts: int = 0
    stopping: bool = False
    deadline: float = 0.0
    due: list[tuple[float, int]] = field(default_factory=list)  # (when, number) of restarts
    _signals: list[int] = field(default_factory=list)
    _batch: bytearray = field(default_factory=bytearray)  # workers' lines not yet passed on
    _batchDue: float = 0.0  # when they go at the latest

    def run(self) -> int:
        """Serve until stopped; the exit status.  In a worker it never returns."""
        wakeup, self._wakeupWrite = os.pipe()
        for fd in (wakeup, self._wakeupWrite):
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
        signal.set_wakeup_fd(self._wakeupWrite)
        for handled in _HANDLED:
            signal.signal(handled, self._signalled)
        for number in range(1, self.count + 1):
            self._fork(number)
        while self.children or (self.due and not self.stopping):
            readable = [wakeup, *self._outputsToWatch()]
            if not self.stopping:
                readable.append(0)
            wait = min(_TICK, max(0.0, self._batchDue - time.monotonic())) if self._batch else _TICK
            try:
                ready, _, _ = select.select(readable, [], [], wait)
            except InterruptedError:  # pragma: no cover - Python retries select itself (PEP 475)
                ready = []
            if wakeup in ready:
                _drain(wakeup)
            for received in self._takeSignals():
                self._handleSignal(received)
            for child in list(self.children.values()):
                if child.output in ready:
                    self._relay(child)
            if self._batch and time.monotonic() >= self._batchDue:
                self._passOn()
            if 0 in ready:
                self._obey(os.read(0, 4096))
            self._reap()
            self._restartDue()
            if self.stopping and self.children and time.monotonic() > self.deadline:
                for pid in self.children:
                    _kill(pid, signal.SIGKILL)
        self._passOn()
        if self.stopping:
            return 0
        self._say("no worker is left running")
        return 1

    def _outputsToWatch(self) -> list[int]:
        """
        The workers' pipes to wait on: none while lines wait to be passed on
        (the next ones wait in the pipes, read together when the batch is
        due, rather than a wake-up of this process per line).
        """
        if self._batch and time.monotonic() < self._batchDue:
            return []
        return [child.output for child in self.children.values() if child.output >= 0]

    # -- signals -------------------------------------------------------------

    def _signalled(self, number: int, frame: object) -> None:
        self._signals.append(number)

    def _takeSignals(self) -> list[int]:
        taken: list[int] = []
        for _ in range(len(self._signals)):  # one at a time: a handler may append meanwhile
            taken.append(self._signals.pop(0))
        return taken

    def _obey(self, orders: bytes) -> None:
        """The parent's orders, a line each (b"": the parent is gone)."""
        if not orders:
            self._say("the parent process is gone; stopping the workers")
            self._stop()
            return
        for order in orders.split():
            if order == b"HUP":
                self._handleSignal(signal.SIGHUP)
            elif order == b"TERM":
                self._handleSignal(signal.SIGTERM)

    def _handleSignal(self, number: int) -> None:
        if number == signal.SIGHUP:
            for pid in self.children:
                _kill(pid, signal.SIGHUP)
        elif number in (signal.SIGTERM, signal.SIGINT):
            self._stop()

    def _stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.due.clear()
        self.deadline = time.monotonic() + self.grace + 5.0
        for pid in self.children:
            _kill(pid, signal.SIGTERM)

    # -- workers -------------------------------------------------------------

    def _fork(self, number: int) -> None:
        readEnd, writeEnd = outputPipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            os.close(readEnd)
            self._becomeWorker(number, writeEnd)
        os.close(writeEnd)
        self.children[pid] = _Child(number, pid, readEnd, time.monotonic())
        self._say(f"started worker {number} (pid {pid})")

    def _becomeWorker(self, number: int, output: int) -> None:
        signal.set_wakeup_fd(-1)
        # Until its twistd installs the reload handler, a SIGHUP passed on must not
        # end it (it reads the current certificates as it starts anyway): ignored
        # first, never the default action for a moment in between.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        for handled in _HANDLED:
            if handled != signal.SIGHUP:
                signal.signal(handled, signal.SIG_DFL)
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.close(output)
        for child in self.children.values():
            os.close(child.output)
        os.close(self._wakeupWrite)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)  # the parent's pipe is the supervisor's to watch
        os.close(devnull)
        os.environ["SECURESOCK_WORKER"] = str(number)
        sys.argv = ["twistd", *self.twistdArguments]
        from twisted.scripts.twistd import run

        run()
        sys.exit(0)  # through the interpreter's exit: atexit handlers set the status

    def _relay(self, child: _Child) -> None:
        """What is waiting in a worker's pipe (up to all of it), queued line by line."""
        for _ in range(_PIPE_SIZE // 65536):
            try:
                data = os.read(child.output, 65536)
            except BlockingIOError:  # all read
                return
            except OSError:
                data = b""
            if not self._relayed(child, data):
                return

    def _relayed(self, child: _Child, data: bytes) -> bool:
        """Queue C{data} read from a worker's pipe (C{b""}: its end); whether to read on."""
        if not data:
            os.close(child.output)
            child.output = -1
            if child.partial:
                self._queue(child.number, [child.partial])
                child.partial = b""
            return False
        lines, child.partial = splitLines(child.partial, data)
        if child.listening < self.listeners:
            child.listening += sum(LISTENING in line for line in lines)
        self._queue(child.number, lines)
        return True

    def _queue(self, number: int, lines: list[bytes]) -> None:
        """A worker's lines, as "worker N: line", to pass on with others (the parent decodes them)."""
        if not lines:
            return
        if not self._batch:
            self._batchDue = time.monotonic() + _BATCH_DELAY
        prefix = b"worker %d: " % number
        for line in lines:
            self._batch += prefix + line + b"\n"
        if len(self._batch) >= _BATCH_SIZE:
            self._passOn()

    def _passOn(self) -> None:
        """Write the workers' waiting lines to the parent."""
        data, self._batch = bytes(self._batch), bytearray()
        self._write(data)

    def _relayRest(self, child: _Child) -> None:
        """What an ended worker wrote last (a process it started may hold the pipe: no waiting)."""
        if child.output >= 0:
            self._relay(child)  # to the end of what is there, or of the pipe (its read end never blocks)
        if child.output >= 0:
            os.close(child.output)
            child.output = -1

    def _reap(self) -> None:
        for _ in range(len(self.children)):
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is None:
                continue
            self._relayRest(child)
            self._ended(child, status)

    def _ended(self, child: _Child, status: int) -> None:
        how = _describeStatus(status)
        if self.stopping:
            self._say(f"worker {child.number} ended ({how})")
            return
        if child.listening < self.listeners and status != 0:
            self._say(f"worker {child.number} ended during its start ({how}); not restarting it")
            return
        if self.restarts >= MAX_RESTARTS:
            self._say(f"worker {child.number} ended ({how}); not restarting again")
            return
        self.restarts += 1
        self._say(f"worker {child.number} ended ({how}); restarting")
        self.due.append((time.monotonic() + 1.0, child.number))

    def _restartDue(self) -> None:
        now = time.monotonic()
        for entry in [entry for entry in self.due if entry[0] <= now]:
            self.due.remove(entry)
            self._fork(entry[1])

    def _say(self, line: str) -> None:
        """A line of the supervisor's own, after the workers' lines that came before it."""
        if self._batch:
            self._passOn()
        self._write((line + "\n").encode("utf-8", "replace"))

    def _write(self, data: bytes) -> None:
        try:
            while data:
                data = data[os.write(1, data) :]
        except BrokenPipeError:
            self._stop()  # the parent is gone
        except BlockingIOError:  # pragma: no cover - stdout is a blocking pipe
            pass


def outputPipe() -> tuple[int, int]:
    """
    A worker's output pipe (read end, write end): with room for what the
    worker writes while its lines wait for the batch (Linux; elsewhere the
    system's size), and a read end that never blocks (the supervisor reads
    until it is empty), while the worker's writes wait when it is full.
    """
    readEnd, writeEnd = os.pipe()
    try:
        fcntl.fcntl(readEnd, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
    except (AttributeError, OSError):  # not Linux, or above /proc/sys/fs/pipe-max-size
        pass
    fcntl.fcntl(readEnd, fcntl.F_SETFL, fcntl.fcntl(readEnd, fcntl.F_GETFL) | os.O_NONBLOCK)
    return readEnd, writeEnd


def _drain(fd: int) -> None:
    for _ in range(64):
        try:
            if not os.read(fd, 512):
                return
        except BlockingIOError:
            return


def _kill(pid: int, number: int) -> None:
    try:
        os.kill(pid, number)
    except ProcessLookupError:
        pass


def _describeStatus(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.WEXITSTATUS(status)}"


def main(argv: Sequence[str]) -> int:
    if len(argv) < 3:
        print("usage: python -m securesock._prefork COUNT GRACE TWISTD-ARGUMENT...", file=sys.stderr)
        return 2
    count, grace, twistdArguments = int(argv[0]), float(argv[1]), list(argv[2:])
    from ._errors import DescriptionError

    descriptions = listenDescriptions(twistdArguments)
    try:
        prebuild(descriptions)
    except DescriptionError as e:
        print(f"cannot start the workers: {e}", file=sys.stderr)
        return 1
    if "twisted.internet.reactor" in sys.modules:  # pragma: no cover - a bug of ours
        print("cannot start the workers: a reactor exists before they fork", file=sys.stderr)
        return 1
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    return Supervisor(count, grace, twistdArguments, listeners=max(1, len(descriptions))).run()


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except OSError as e:
        if e.errno != errno.EPIPE:
            raise
        sys.exit(1)
