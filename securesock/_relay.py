"""
The relay of ``twistd securesock --connect``: each accepted connection is
joined to a new connection made from a client description, both ways, with
back-pressure: each side is registered as the other's streaming producer, so
a slow reader pauses the fast writer instead of making securesock buffer
without bound.  What a side receives goes to the other side's socket at once
when nothing waits before it (L{securesock._sendnow}): a plaintext backend
connection's writes would otherwise wait for the reactor's next pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import tcp
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from ._connlog import LoggedProtocol, closeReason
from ._sendnow import sendNow
from .dialects import FramingError, NumericReply

__all__ = ["RelayFactory", "RelayServer", "greetingFor"]


_GREETING_LIMIT = 8192
# A TCP backend is read up to 256 KiB at a time instead of Twisted's 64 KiB:
# a quarter of the reactor passes per GB relayed (about 9% less CPU per GB and
# 9% more MB/s, docs/performance.md).  Twisted also uses this size as the
# write buffer past which the client is paused (back-pressure): up to 256 KiB
# may wait for the backend per connection, instead of 64 KiB.
_BACKEND_READ = 2**18
# Bytes a client may send before the backend is connected; then it is paused.
_EARLY_LIMIT = 65536

# A C{starttls:} --connect reads the backend's greeting during its upgrade, so
# the relayed client, which speaks plaintext to us, is greeted here instead.
# Dialects whose client speaks first (ldap, postgres, xmpp) need nothing.
_GREETINGS = {
    "smtp": b"220 %s ESMTP relayed by securesock (STARTTLS to the backend)\r\n",
    "ftp": b"220 %s FTP relayed by securesock (AUTH TLS to the backend)\r\n",
    "pop3": b"+OK %s POP3 relayed by securesock (STLS to the backend)\r\n",
    "imap": b"* OK %s IMAP4rev1 relayed by securesock (STARTTLS to the backend)\r\n",
}


def greetingFor(dialect: str | None, host: str) -> bytes | None:
    """What to greet a relayed client with when the backend was upgraded with C{dialect}."""
    template = _GREETINGS.get(dialect or "")
    return None if template is None else template % host.encode("ascii", "replace")


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
        if not _replyComplete(lines) and len(self._buffer) < _GREETING_LIMIT:
            return b"", False
        return self._withoutGreeting(lines) + tail, True


def _replyComplete(lines: bytes) -> bool:
    """
    Whether whole lines hold a complete first reply: a numeric one (SMTP,
    FTP: the dialects' framing, free text between a multi-line reply's first
    and last lines included), or any line (IMAP and POP3 greet in one).
    """
    reply = NumericReply()
    try:
        return any(reply.add(line) is not None for line in lines.splitlines(keepends=True))
    except FramingError:
        return True


def _reactor() -> IReactorTime:
    from twisted.internet import reactor

    return reactor  # type: ignore[return-value]


@implementer(IPushProducer)
class _Pauses:
    """
    One side as the other side's producer: paused and resumed by it, never
    stopped, and telling the relay when it is held back.

    Never stopped: a transport whose connection is lost stops its producer,
    and a TLS transport's stopProducing (Twisted's ProtocolWrapper passes it
    to TCP) would close the client's TCP connection at once, before the
    close_notify the relay sends when the backend closes could be answered;
    the relay closes each side itself.  Held back (C{paused}): the other side
    reads slowly, so bytes wait for it; --idle-timeout counts that as busy,
    and each resume as progress.
    """

    paused = False

    def __init__(self, transport: Any, relay: RelayServer) -> None:
        self._transport = transport
        self._relay = relay

    def pauseProducing(self) -> None:
        self.paused = True
        self._transport.pauseProducing()

    def resumeProducing(self) -> None:
        self.paused = False
        if self._relay.idleTimeout:
            self._relay.lastActive = self._relay.clock.seconds()
        self._transport.resumeProducing()

    def stopProducing(self) -> None:
        """The relay closes this side itself (L{RelayServer.backendLost}, C{connectionLost})."""


def _close(transport: Any) -> None:
    """
    Close a side that back-pressure may have paused: a TLS transport only
    closes once the peer's close_notify is read, so reading must resume (what
    still arrives is dropped).
    """
    resume = getattr(transport, "resumeProducing", None)
    if resume is not None:
        resume()
    transport.loseConnection()


class _RelayClient(Protocol):
    """The connection towards the backend."""

    server: RelayServer
    greeting: _GreetingDropper | None = None

    def connectionMade(self) -> None:
        self.server.backendConnected(self)

    def dataReceived(self, data: bytes) -> None:
        if self.server._closing:
            return  # the client is gone or going: nobody to give it to
        if self.server.idleTimeout:
            self.server.lastActive = self.server.clock.seconds()
        greeted = False
        if self.greeting is not None:
            data, greeted = self.greeting.feed(data)
            if greeted:
                self.greeting = None
        self.server.countOut(data)
        assert self.server.transport is not None
        if data:
            sendNow(self.server.transport, data)
        if greeted:
            self.server.sendEarly()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.server.backendLost()


class RelayServer(LoggedProtocol):
    """The accepted connection; connects to the backend once it is usable."""

    lastActive = 0.0  # when a byte last went either way (the clock's seconds)
    _idleTimer: IDelayedCall | None = None
    _producers: tuple[_Pauses, ...] = ()  # each side as the other's producer, once the backend is connected

    def __init__(self, relay: RelayFactory) -> None:
        self._backend = relay.backend
        self._description = relay.description
        self._greeting = relay.greeting
        self.idleTimeout = relay.idleTimeout
        self.clock = relay.clock
        self._client: _RelayClient | None = None
        self._closing = False
        self._backendGone = False
        # Bytes that arrived with the handshake, before the backend answered;
        # reading is paused meanwhile, so this holds at most one read's worth.
        self._early: list[bytes] = []  # what the client sent before the backend was connected
        self._earlySize = 0
        self._connecting: Deferred[Any] | None = None  # the backend connection being made
        self._withoutGreeting: Callable[[bytes], bytes] | None = None

    def greetingAlreadySent(self, withoutGreeting: Callable[[bytes], bytes]) -> None:
        """Called by a C{starttls:} listener: the client was greeted before TLS."""
        if self._greeting is not None:
            # A starttls: backend: its greeting went into its own upgrade, so
            # there is none to drop, and ours would greet the client twice.
            self._greeting = None
            return
        self._withoutGreeting = withoutGreeting

    def ready(self) -> None:
        # The client is read on while the backend connection is made (what it
        # sends waits in _early, up to _EARLY_LIMIT), so that a client leaving
        # meanwhile is noticed and the attempt given up.
        client = _RelayClient()
        client.server = self
        if self._withoutGreeting is not None:
            client.greeting = _GreetingDropper(self._withoutGreeting)
        factory = Factory.forProtocol(lambda: client)
        factory.noisy = False
        self._connecting = self._backend.connect(factory)
        self._connecting.addErrback(self._backendFailed)
        if self.idleTimeout and not self._closing:
            self.lastActive = self.clock.seconds()
            self._idleTimer = self.clock.callLater(self.idleTimeout, self._idleCheck)

    def _idleCheck(self) -> None:
        """Close the connection if nothing went either way for --idle-timeout seconds; else look again then."""
        self._idleTimer = None
        if self._closing or self.transport is None:
            return
        quiet = self.clock.seconds() - self.lastActive
        if quiet < self.idleTimeout or any(producer.paused for producer in self._producers):
            # Bytes waiting for a slow reader are not idleness: look again later.
            delay = self.idleTimeout - quiet if quiet < self.idleTimeout else self.idleTimeout
            self._idleTimer = self.clock.callLater(delay, self._idleCheck)
            return
        self.closeNote = f"idle for {self.idleTimeout:g} s (--idle-timeout)"
        self._closing = True
        self._early = []
        client = self._client
        if client is not None and client.transport is not None and not self._backendGone:
            self.transport.unregisterProducer()  # type: ignore[attr-defined]
            client.transport.unregisterProducer()  # type: ignore[attr-defined]
            _close(client.transport)  # now: the client's side may wait for its close_notify
        _close(self.transport)

    def _backendFailed(self, reason: Failure) -> None:
        if self._closing:
            return  # the client left first: connectionLost cancelled the attempt and logged the connection
        # Said once, in the connection's own log line.
        self.closeNote = f"cannot reach {self._description}: {closeReason(reason)}"
        # What still arrives is dropped: kept, it would pause the client again
        # past _EARLY_LIMIT, and a paused TLS transport never reads the
        # close_notify it waits for to close.
        self._closing = True
        self._early = []
        if self.transport is not None:
            _close(self.transport)

    def backendConnected(self, client: _RelayClient) -> None:
        self._client = client
        if self._closing:
            client.transport.loseConnection()  # type: ignore[union-attr]
            return
        assert self.transport is not None and client.transport is not None
        if isinstance(client.transport, tcp.Connection):
            client.transport.bufferSize = _BACKEND_READ
        # Back-pressure both ways.
        self._producers = (_Pauses(client.transport, self), _Pauses(self.transport, self))
        self.transport.registerProducer(self._producers[0], True)  # type: ignore[attr-defined]
        client.transport.registerProducer(self._producers[1], True)  # type: ignore[attr-defined]
        if self._greeting is not None:
            self.countOut(self._greeting)
            self.transport.write(self._greeting)
        if client.greeting is None:
            self.sendEarly()
        # Else the client's commands wait for the backend's greeting, as a client
        # would (RFC 5321, 3.1; servers that check for pregreet traffic refuse it).

    def sendEarly(self) -> None:
        """Hand the backend what the client sent before it could take it."""
        assert self._client is not None and self._client.transport is not None
        early, self._early = self._early, []
        self._earlySize = 0
        if early:
            self._client.transport.writeSequence(early)
        if self.transport is not None:
            self.transport.resumeProducing()  # type: ignore[attr-defined]  # if _EARLY_LIMIT paused it

    def dataReceived(self, data: bytes) -> None:
        self.countIn(data)
        if self._closing:
            return  # closing reads on only to find the close_notify: nowhere to take this
        if self.idleTimeout:
            self.lastActive = self.clock.seconds()
        client = self._client
        if client is not None and client.transport is not None and client.greeting is None:
            sendNow(client.transport, data)
        else:
            self._early.append(data)
            self._earlySize += len(data)
            if self._earlySize > _EARLY_LIMIT:  # back-pressure before the backend is there
                self.transport.pauseProducing()  # type: ignore[union-attr]

    def backendLost(self) -> None:
        self._backendGone = True
        self.closedBy = "the backend closed the connection"
        if self.transport is not None and not self._closing:
            self._closing = True
            self.transport.unregisterProducer()  # type: ignore[attr-defined]
            _close(self.transport)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._closing = True
        if self._idleTimer is not None and self._idleTimer.active():
            self._idleTimer.cancel()
        self._idleTimer = None
        if self._client is None and self._connecting is not None:
            # Nobody is left to relay for.  (A Deferred waiting on another, here the
            # backend's TLS handshake, counts as called: cancel() reaches the one waited on.)
            self._connecting.cancel()
        # Once the backend is gone its transport must not be touched (an upgraded
        # TCP transport has dropped its protocol by then).
        if self._client is not None and self._client.transport is not None and not self._backendGone:
            self._client.transport.unregisterProducer()  # type: ignore[attr-defined]
            _close(self._client.transport)
        super().connectionLost(reason)


class RelayFactory(Factory):
    """Builds relays towards one client endpoint."""

    def __init__(
        self,
        backend: IStreamClientEndpoint,
        description: str,
        greeting: bytes | None = None,
        idleTimeout: float = 0.0,
        clock: IReactorTime | None = None,
    ) -> None:
        self.backend = backend
        self.description = description  # the --connect description, for messages
        self.greeting = greeting  # what a starttls: backend's relay says to the client first
        self.idleTimeout = idleTimeout  # seconds without a byte either way before closing; 0: never
        self.clock: IReactorTime = clock if clock is not None else _reactor()

    def buildProtocol(self, addr: Any) -> RelayServer:
        return RelayServer(self)
