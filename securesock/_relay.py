"""
The relay of ``twistd securesock --connect``: each accepted connection is
joined to a new connection made from a client description, both ways, with
back-pressure: each side is registered as the other's streaming producer, so
a slow reader pauses the fast writer instead of making securesock buffer
without bound.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._connlog import LoggedProtocol, closeReason

__all__ = ["RelayFactory", "RelayServer"]

log = Logger(namespace="securesock.relay")


_GREETING_LIMIT = 8192


class _GreetingDropper:
    """
    Removes the backend's greeting when the client already had one from a
    C{starttls:} listener before its upgrade.  Buffers until the greeting is
    complete: a numeric reply ends with a line whose fourth byte is a space
    (SMTP, FTP); IMAP and POP3 greet in one line.
    """

    def __init__(self, withoutGreeting: Callable[[bytes], bytes]) -> None:
        self._withoutGreeting = withoutGreeting
        self._buffer = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to pass on, whether the greeting is dealt with)."""
        self._buffer += data
        end = self._buffer.rfind(b"\n")
        if end < 0 and len(self._buffer) < _GREETING_LIMIT:
            return b"", False
        lines, tail = self._buffer[: end + 1], self._buffer[end + 1 :]
        lastLine = lines.rstrip(b"\r\n").rsplit(b"\n", 1)[-1]
        if lastLine[3:4] == b"-" and lastLine[:3].isdigit() and len(self._buffer) < _GREETING_LIMIT:
            return b"", False  # a multi-line reply is not finished yet
        return self._withoutGreeting(lines) + tail, True


class _RelayClient(Protocol):
    """The connection towards the backend."""

    server: RelayServer
    greeting: _GreetingDropper | None = None

    def connectionMade(self) -> None:
        self.server.backendConnected(self)

    def dataReceived(self, data: bytes) -> None:
        if self.greeting is not None:
            data, done = self.greeting.feed(data)
            if done:
                self.greeting = None
        self.server.countOut(data)
        assert self.server.transport is not None
        if data:
            self.server.transport.write(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.server.backendLost()


class RelayServer(LoggedProtocol):
    """The accepted connection; connects to the backend once it is usable."""

    def __init__(self, backend: IStreamClientEndpoint, description: str) -> None:
        self._backend = backend
        self._description = description
        self._client: _RelayClient | None = None
        self._closing = False
        # Bytes that arrived with the handshake, before the backend answered;
        # reading is paused meanwhile, so this holds at most one read's worth.
        self._early: list[bytes] = []
        self._withoutGreeting: Callable[[bytes], bytes] | None = None

    def greetingAlreadySent(self, withoutGreeting: Callable[[bytes], bytes]) -> None:
        """Called by a C{starttls:} listener: the client was greeted before TLS."""
        self._withoutGreeting = withoutGreeting

    def ready(self) -> None:
        assert self.transport is not None
        self.transport.pauseProducing()  # type: ignore[attr-defined]
        client = _RelayClient()
        client.server = self
        if self._withoutGreeting is not None:
            client.greeting = _GreetingDropper(self._withoutGreeting)
        factory = Factory.forProtocol(lambda: client)
        factory.noisy = False
        connecting = self._backend.connect(factory)
        connecting.addErrback(self._backendFailed)

    def _backendFailed(self, reason: Failure) -> None:
        log.warn("cannot reach {backend}: {reason}", backend=self._description, reason=closeReason(reason))
        if self.transport is not None:
            self.transport.loseConnection()

    def backendConnected(self, client: _RelayClient) -> None:
        self._client = client
        if self._closing:
            client.transport.loseConnection()  # type: ignore[union-attr]
            return
        assert self.transport is not None and client.transport is not None
        # Back-pressure both ways.
        self.transport.registerProducer(client.transport, True)  # type: ignore[attr-defined]
        client.transport.registerProducer(self.transport, True)  # type: ignore[attr-defined]
        early, self._early = self._early, []
        if early:
            client.transport.writeSequence(early)
        self.transport.resumeProducing()  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        self.countIn(data)
        if self._client is not None and self._client.transport is not None:
            self._client.transport.write(data)
        elif not self._closing:
            self._early.append(data)

    def backendLost(self) -> None:
        if self.transport is not None and not self._closing:
            self._closing = True
            self.transport.unregisterProducer()  # type: ignore[attr-defined]
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._closing = True
        if self._client is not None and self._client.transport is not None:
            self._client.transport.unregisterProducer()  # type: ignore[attr-defined]
            self._client.transport.loseConnection()
        super().connectionLost(reason)


class RelayFactory(Factory):
    """Builds relays towards one client endpoint."""

    def __init__(self, backend: IStreamClientEndpoint, description: str) -> None:
        self._backend = backend
        self._description = description

    def buildProtocol(self, addr: Any) -> RelayServer:
        return RelayServer(self._backend, self._description)
