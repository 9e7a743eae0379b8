"""
Running things during reactor-driven tests: a line-echo application, a
listening securesock server, and external programs run in a thread with a
time limit (never blocking the reactor, never left running).
"""

from __future__ import annotations

import subprocess
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
