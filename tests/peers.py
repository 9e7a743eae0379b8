"""
Running things during reactor-driven tests: a line-echo application, a
listening securesock server, and external programs run in a thread with a
time limit (never blocking the reactor, never left running).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThread

import securesock


class Shout(Protocol):
    """Answers the first line in upper case, with the negotiated ALPN, then closes."""

    def connectionMade(self) -> None:
        self.buffer = b""

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        if b"\n" in self.buffer:
            line = self.buffer.split(b"\n", 1)[0]
            alpn = getattr(self.transport, "negotiatedProtocol", None)
            self.transport.write(line.upper() + b" alpn=" + (alpn or b"none") + b"\n")
            self.transport.loseConnection()


class Collect(Protocol):
    """Client side: sends a line, collects everything until the server closes."""

    def __init__(self) -> None:
        self.received = b""
        self.done: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(b"hello\n")

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any) -> None:
        self.done.callback(self.received)


async def listen(description: str, factory: Any = None) -> Any:
    """Listen with a securesock description; returns the listening port."""
    endpoint = securesock.serverFromString(reactor, description)
    return await endpoint.listen(factory or Factory.forProtocol(Shout))


def run(
    args: Sequence[str], input: bytes = b"", timeout: float = 30
) -> Deferred[subprocess.CompletedProcess[bytes]]:
    """Run an external program in a thread, with a time limit."""
    return deferToThread(subprocess.run, list(args), input=input, capture_output=True, timeout=timeout)


def readToEnd(sock: Any, seconds: float = 20, size: int = 1 << 20) -> bytes:
    """Everything a (TLS or plain) socket receives until its peer closes, for at most C{seconds}."""
    received = bytearray()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        chunk = sock.recv(size)
        if not chunk:
            break
        received += chunk
    return bytes(received)


def freePort(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (for programs that need a fixed port)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Background:
    """
    An external server program (openssl s_server, twistd) running beside a
    test: its output goes to a file that L{waitFor} polls, and L{stop} ends
    it by its PID.
    """

    def __init__(self, args: Sequence[str], output: str, cwd: str | None = None, env: Any = None) -> None:
        self.output = output
        with open(output, "wb") as sink:
            self.process = subprocess.Popen(
                list(args), stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT, cwd=cwd, env=env
            )

    def text(self) -> str:
        with open(self.output, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def waitFor(self, pattern: str, timeout: float = 10) -> Any:
        """Block (call it in a thread) until the output matches; the match."""
        import re
        import time

        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.text(), re.MULTILINE)
            if found is not None:
                return found
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.process.args[0]} did not print {pattern!r} "
                    f"(exit status {self.process.returncode}); its output:\n{self.text()}"
                )
            time.sleep(0.02)

    def stop(self, grace: float = 5) -> int:
        """SIGTERM, wait, then SIGKILL; the exit status."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(grace)
        return self.process.returncode
