"""
The TLS layer securesock endpoints put on each connection, and the gate that
makes a client connection count as made only once its handshake is done.

Twisted's own client endpoints fire C{connect()} as soon as TCP connects and
report a failed handshake later, as a lost connection.  securesock's fire
after the handshake, with the server verified, and fail with a
L{TLSHandshakeError} that says what went wrong: nothing is written by the
application before the peer is known.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from OpenSSL import SSL
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IHandshakeListener,
    IProtocol,
    IProtocolFactory,
    ITCPTransport,
)
from twisted.internet.main import CONNECTION_LOST
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import alsoProvides, directlyProvides, implementer, providedBy
from zope.interface.declarations import Implements

from ._bio import RECORD, decryptRecords, drain, encrypt, feed, publicDecrypt
from ._closewait import ClosingWatch
from ._errors import TLSHandshakeError, opensslReasons
from ._guard import HandshakeGuard, HandshakeWatch, _peer
from ._reads import readIntoSharedBuffer
from ._records import UNKNOWN, RecordCounter
from ._sendnow import sendNow
from ._wrongmode import HTTP_400, isHTTPRequest, isTLSRecord, plaintextFromClient, plaintextFromServer

__all__ = ["TLSFactory", "HandshakeGateFactory", "handshakeError"]

log = Logger()

# TLS 1.3 tickets come after the handshake; OpenSSL servers send two at once.
_SESSION_READS = 3
# Application bytes handed to OpenSSL per call (4 records).  Not more: pyOpenSSL
# copies what is read out of the send BIO twice (a cffi buffer, then bytes), and
# buffers above glibc's mmap threshold (128 KiB at first) are mapped, faulted in
# and unmapped, or trimmed off the heap and grown back, at each write: measured,
# 256 KiB per call made bulk sending cost 1.6-1.7 s of CPU per GB in two server
# processes out of three and 0.6 s in the third; 64 KiB per call, 0.6-0.8 s in
# every one.  The send BIO, which never shrinks, stays at this size too.
_WRITE_SIZE = 2**16
# Bytes asked of SSL_read: more than a record holds (16 KiB), so one call per record.
_READ_SIZE = 2**15
# Received bytes handed to the receive BIO per call, and read out of it before
# the next: a socket read brings up to 256 KiB (securesock._reads), and the
# BIO, which never shrinks, would keep that size for the connection's life.
_FEED_SIZE = 2**16
# Records read into one buffer and handed to the application at once: what one feed holds.
_BATCH = _FEED_SIZE // RECORD
# Records asked for while their number is unknown (just after the handshake, at the
# connection's loss): usually none or one is there.  A smaller buffer than a batch's,
# as the 32 KiB of a single read before batches: 64 KiB per new connection made the
# C library grow and trim its heap, 0.65-0.78 page faults and ~9% more CPU per
# resumed TLS 1.2 connection (A/B with s_time -reuse -www).
_UNKNOWN_BATCH = 2


class _Writes:
    """
    Small application writes gathered into large TLS records, as Twisted's
    C{BufferingTLSTransport} does, except that writes made while incoming
    data is handled (C{holding}) are sent when that handling ends, with no
    timed call per response; other small writes go at the next reactor
    turn.  A write of a whole record or more goes at once (with what was
    gathered before it): there is nothing to gather it with, and a relay or
    a producer writing large chunks saves a timed call per chunk.
    """

    MAX_BUFFER_SIZE = 64_000
    __slots__ = ("_write", "_clock", "_buffer", "_left", "_scheduled", "holding")

    def __init__(self, write: Callable[[bytes], object], clock: Any) -> None:
        self._write = write
        self._clock = clock
        self._buffer: list[bytes] = []
        self._left = self.MAX_BUFFER_SIZE
        self._scheduled: Any = None
        self.holding = False

    def write(self, data: bytes) -> None:
        self._buffer.append(data + b"")  # a TypeError for str, at the caller
        self._left -= len(data)
        if self._left < 0 or len(data) >= RECORD:
            self.flush()
        elif not self.holding and self._scheduled is None:
            self._scheduled = self._clock.callLater(0, self._scheduledFlush)

    def _scheduledFlush(self) -> None:
        self._scheduled = None
        self.flush()

    def flush(self) -> None:
        if self._buffer:
            self._left = self.MAX_BUFFER_SIZE
            data = b"".join(self._buffer) if len(self._buffer) > 1 else self._buffer[0]
            del self._buffer[:]
            self._write(data)

    def close(self) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        self.flush()


# The last interface each transport class provides (see _TLSProtocol._connectTLS).
_LAST_INTERFACE: dict[type, Any] = {}


def _lastInterface(transport: Any) -> Any:
    """
    The last of C{providedBy(transport)}, remembered per class: walking a TCP
    transport's interfaces costs some 40 Python calls per connection.  A
    transport with interfaces of its own (C{directlyProvides}) is walked.
    """
    provides = getattr(transport, "__provides__", None)  # as zope's directlyProvidedBy reads it
    if provides is not None and not isinstance(provides, Implements):
        declared = list(providedBy(transport))
        return declared[-1] if declared else None
    kind = type(transport)
    if kind not in _LAST_INTERFACE:
        declared = list(providedBy(transport))
        _LAST_INTERFACE[kind] = declared[-1] if declared else None
    return _LAST_INTERFACE[kind]


_FIRST_BYTES = 5 + 2**14  # one TLS record


class _TLSProtocol(BufferingTLSTransport):
    """
    Twisted's TLS protocol, plus TCP_NODELAY when the endpoint asks, plus a
    look at the peer's first chunk (and only that): plaintext where TLS was
    expected is said in words (see L{securesock._wrongmode}).
    """

    factory: TLSFactory
    firstBytes: bytes | None = None  # the start of the peer's first chunk
    _watch: HandshakeWatch | None = None  # servers: this handshake under its endpoint's guard
    _plaintext = False

    _sessionReads = 0  # clients: reads left in which to look for a resumable session
    # _counter.unread: whole records received and not yet read by SSL_read;
    # each read takes at least one, so reading stops at 0 without a
    # WantReadError.  UNKNOWN until the handshake is done (do_handshake reads
    # an unknown number) and once the connection is lost.
    _counter: RecordCounter
    _aggregator: Any  # _Writes, then Twisted's null aggregator once the connection is lost
    _holdingSendBIO = False  # in loseConnection: _write leaves its records for the shutdown's flush
    _held = 0  # application bytes in the send BIO that no flush has sent yet

    def __init__(self, factory: TLSFactory, wrappedProtocol: IProtocol, _connectWrapped: bool = True) -> None:
        # BufferingTLSTransport.__init__ only installs Twisted's aggregator, which
        # _Writes replaces: skip it rather than build one per connection for nothing.
        TLSMemoryBIOProtocol.__init__(self, factory, wrappedProtocol, _connectWrapped)
        self._aggregator = _Writes(super(BufferingTLSTransport, self).write, factory._clock)
        self.write = self._aggregator.write  # type: ignore[method-assign]

    def makeConnection(self, transport: Any) -> None:
        if self.factory.noDelay and ITCPTransport.providedBy(transport):
            transport.setTcpNoDelay(True)
        if self.factory.isClient and hasattr(self.factory.creator, "rememberSession"):
            self._sessionReads = _SESSION_READS
        self._counter = RecordCounter()
        readIntoSharedBuffer(transport, self)
        self._connectTLS(transport)
        if self.factory.guard is not None:
            self._watch = self.factory.guard.watch(self)

    def _connectTLS(self, transport: Any) -> None:
        """
        C{TLSMemoryBIOProtocol.makeConnection}, less its loop of
        C{directlyProvides} calls, one per interface of the transport, each
        replacing the one before: they cost a third of the Python time of an
        accepted connection, and the one call kept leaves the same result.
        """
        self._tlsConnection = self.factory._creatorCallable(self)
        self._appSendBuffer = []
        last = _lastInterface(transport)
        if last is not None:
            directlyProvides(self, last)
        Protocol.makeConnection(self, transport)
        self.factory.registerProtocol(self)
        if self._connectWrapped:
            ProtocolWrapper.makeConnection(self, transport)
        if self.factory.isClient:  # sends the ClientHello; a server has nothing to say before it
            self._checkHandshakeStatus()

    def loseConnection(self) -> None:
        """
        Twisted's C{loseConnection}, sending what the application wrote last
        and the close_notify alert together, in one TCP write, rather than
        one each (a response followed by a close: HTTP/1.0, s_time -www).
        Whatever does not end in a shutdown now (writes waiting for the
        handshake or for a producer) is sent as before.
        """
        self._holdingSendBIO = True
        try:
            super().loseConnection()
        finally:
            self._holdingSendBIO = False
        if self._held:
            self._flushSendBIO()
        if self.disconnecting and not self._lostTLSConnection and not self._aborted:
            connection = self._tlsConnection
            if connection is not None and not connection.get_shutdown() & SSL.RECEIVED_SHUTDOWN:
                self.factory.closing.add(self)  # for the peer's close_notify, a while (securesock._closewait)

    def closeWaitExpired(self) -> None:
        """The peer left our close_notify unanswered: close the TCP connection without its own."""
        connection = self._tlsConnection
        if self._lostTLSConnection or self._aborted or connection is None:
            return
        if not connection.get_shutdown() & SSL.SENT_SHUTDOWN:
            # Ours is not sent yet: Twisted waits for the application's producer (or for
            # writes held until the handshake) before it sends it.  Look again later.
            self.factory.closing.add(self)
            return
        if self._reason is None:
            self._reason = Failure(
                ConnectionLost(
                    f"the peer did not answer our close_notify within {self.factory.closing.wait:g} s; "
                    "closed without its own"
                )
            )
        self._lostTLSConnection = True  # nothing more is read or written through TLS
        self.transport.loseConnection()  # type: ignore[union-attr]  # after what Twisted still holds for the peer

    def _write(self, data: bytes) -> None:
        """
        Twisted's C{_write}, handing OpenSSL up to 64 KiB per call instead of
        one 16 KiB record: OpenSSL cuts the records itself, into the memory
        BIO, and they leave in one transport write, not one per record.
        """
        if self._lostTLSConnection:
            return
        sent = 0
        while sent < len(data):
            if not sent and len(data) <= _WRITE_SIZE:
                chunk: bytes | memoryview = data
            else:  # a slice of a view, not a copy
                chunk = memoryview(data)[sent : sent + _WRITE_SIZE]
            try:
                sent += encrypt(self._tlsConnection, chunk)  # Twisted calls _write once the handshake is done
            except SSL.WantReadError:
                self._bufferedWrite(data[sent:])
                break
            except SSL.Error:
                # As Twisted does: end the connection; the error reaches the application's connectionLost.
                self._tlsShutdownFinished(Failure())
                break
            else:
                if self._holdingSendBIO:  # the aggregator's last bytes (< 80 KB), to go with the close_notify
                    self._held += len(chunk)
                else:
                    self._flushSendBIO(len(chunk))

    def _flushSendBIO(self, expected: int = 0) -> None:
        """
        Everything in the send BIO, in as few transport writes as it takes:
        C{expected} application bytes just went in, plus the records'
        overhead (22 to 29 bytes per 16 KiB with AEAD suites; the buffer
        read into allows 32, plus 1 KiB).  The loop ends: each pass that
        goes on takes C{size} bytes out of a finite BIO that nothing refills
        meanwhile; stopping earlier would leave TLS bytes unsent until some
        later write.
        """
        connection = self._tlsConnection
        transport: Any = self.transport
        expected += self._held
        self._held = 0
        size = max(2**15, expected + (expected >> 9) + 2**10)
        while True:  # one read normally empties the BIO
            try:
                data = drain(connection, size)
            except SSL.WantReadError:
                return
            if self._aborted:  # Twisted drops what is queued then: nothing goes at once
                transport.write(data)
            else:  # to the kernel now when nothing waits before it (securesock._sendnow)
                sendNow(transport, data)
            if len(data) < size:  # the BIO is empty: no second read to fail
                break

    def _rememberSession(self, wasDone: bool) -> None:
        """
        Hand the client's session to its creator once it can be resumed:
        under TLS 1.2 at the end of the handshake; under TLS 1.3 only from
        the tickets the server sends after it, in the next reads.
        """
        connection = self._tlsConnection
        if connection is None:  # lost while reading
            return
        if connection.get_protocol_version_name() == "TLSv1.3":
            if not wasDone:
                return
            self._sessionReads -= 1
        else:
            self._sessionReads = 0
        self.factory.creator.rememberSession(connection)

    # The handshake deadline and cap (securesock._guard) end here: at completion, or at loss.
    def _checkHandshakeStatus(self) -> None:
        super()._checkHandshakeStatus()  # type: ignore[no-untyped-call]
        if self._handshakeDone:
            if self._watch is not None:
                self._watch.completed()
            # What explains a failed handshake is not kept per idle connection (memory per
            # connection is a goal of its own).  Assigned, not deleted from self.__dict__:
            # reading that would give each protocol a dictionary of its own.
            self._watch = None
            self.firstBytes = None

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.factory.closing.discard(self)
        if self._watch is not None:
            self._watch.lost(self, self._reason or reason, logged=self._plaintext)
            self._watch = None
        counter = self._counter
        if (
            self._handshakeDone
            and not self._lostTLSConnection
            and not self._aborted
            and counter.unread == 0
            and counter.atBoundary
        ):
            # The TCP connection ended without the peer's close_notify, after whole
            # records that were all read.  Twisted's connectionLost would ask OpenSSL
            # for the rest (an SSL_read that fails with "unexpected EOF", an error
            # queue turned into a Failure, a read of the empty send BIO) only to
            # report ConnectionLost: this is its conclusion, without the questions.
            # (tests/test_datapath.py: a peer leaving without close_notify.)
            if self._reason is None:
                self._reason = Failure(CONNECTION_LOST)
            self._lostTLSConnection = True
        counter.unread = UNKNOWN  # Twisted's connectionLost reads whatever is left
        connection = self._tlsConnection
        super().connectionLost(reason)
        if self._handshakeDone and connection is not None and not keepSessionResumable(connection):
            forget = getattr(self.factory.creator, "forgetSession", None)
            if forget is not None:  # a client would offer it again before OpenSSL frees this connection
                forget(connection)

    def _flushReceiveBIO(self) -> None:
        """
        Twisted's C{_flushReceiveBIO}, reading only as many records as have
        arrived whole: the steady state costs no WantReadError from
        C{SSL_read}, and no empty read of the send BIO (reading sends
        nothing, unless a record other than application data was read,
        e.g. a TLS 1.3 KeyUpdate; then a read finds no data and the send
        BIO is flushed as Twisted does).  Once the handshake is done, the
        records that arrived together reach the application together, in
        one C{dataReceived} (L{decryptRecords}).  When the peer's
        close_notify or an error ends the loop, Twisted's C{_shutdownTLS}
        and C{_tlsShutdownFinished} have already flushed what it made.
        """
        connection = self._tlsConnection
        counter = self._counter
        done = self._handshakeDone
        quiet = True
        while not self._lostTLSConnection and counter.unread:
            # The records fed so far, a few at a time once the handshake is done (securesock._bio: why).
            unread = counter.unread
            if done:
                wanted = _UNKNOWN_BATCH if unread < 0 else unread if unread < _BATCH else _BATCH
                data, error = decryptRecords(connection, wanted)
            else:
                wanted = 1
                try:
                    data, error = publicDecrypt(connection, _READ_SIZE), None
                except SSL.Error as raised:
                    data, error = b"", raised.with_traceback(None)  # no cycle through this frame
            if error is None and unread > 0:
                counter.unread = unread - wanted
            if data and not self._aborted:
                self.wrappedProtocol.dataReceived(data)
            if error is None:
                continue
            if isinstance(error, SSL.WantReadError):
                counter.unread = 0
                quiet = False
            elif isinstance(error, SSL.ZeroReturnError):  # both flush what they make (close_notify, an alert)
                self._shutdownTLS()
                self._tlsShutdownFinished(None)
            else:
                self._tlsShutdownFinished(Failure(error))
        if not quiet:
            self._flushSendBIO()

    def dataReceived(self, data: bytes | memoryview) -> None:
        """
        C{data}: bytes, or a view of the process's read buffer
        (L{securesock._reads}), valid only during this call: nothing here
        keeps it (the BIO and the record counter copy what they need).
        """
        if self.firstBytes is None and not self._handshakeDone:
            # A whole ClientHello, mostly (the SNI check of a resumption reads it; kept
            # until the handshake is done); a server's first flight, for a client's messages.
            self.firstBytes = bytes(data[:_FIRST_BYTES])
            if not self.factory.isClient and not isTLSRecord(self.firstBytes):
                self._refusePlaintext(bytes(data))
        if self._plaintext:
            return
        # What the application writes while it handles this data leaves as
        # one TLS record at the end, not at the next reactor turn.
        writes = self._aggregator
        writes.holding = True
        try:
            if len(data) <= _FEED_SIZE:
                self._received(data)
            else:
                for start in range(0, len(data), _FEED_SIZE):
                    if self._lostTLSConnection or self._aborted:
                        break  # Twisted's layer would read nothing more either
                    self._received(data[start : start + _FEED_SIZE])
        finally:
            writes.holding = False
            writes.flush()

    def _received(self, data: bytes | memoryview) -> None:
        wasDone = self._handshakeDone
        self._tlsReceived(data)
        if self._sessionReads and self._handshakeDone and self._reason is None:
            self._rememberSession(wasDone)

    def _tlsReceived(self, data: bytes | memoryview) -> None:
        """Twisted's C{TLSMemoryBIOProtocol.dataReceived}, counting records as they arrive."""
        self._counter.feed(data)
        feed(self._tlsConnection, data)
        if not self._handshakeDone:
            self._checkHandshakeStatus()
            if not self._handshakeDone:
                return
            self._counter.unread = UNKNOWN  # what do_handshake left unread: read until OpenSSL wants more
        if self._appSendBuffer:
            self._unbufferPendingWrites()  # type: ignore[no-untyped-call]
        self._flushReceiveBIO()

    def _refusePlaintext(self, data: bytes) -> None:
        """A client spoke plaintext to this TLS server: say so, answer HTTP like nginx, close."""
        self._plaintext = True
        transport: Any = self.transport
        if getattr(self.wrappedProtocol, "logsHandshakeFailures", False):
            # Said once, by the close line of the application's log (twistd securesock):
            # "ADDRESS handshake failed: the client sent a plain HTTP request ...".
            self._reason = Failure(TLSHandshakeError(plaintextFromClient(data, "the client")))
        else:
            log.warn("{message}", message=plaintextFromClient(data, _peer(self)))
        if isHTTPRequest(data):
            transport.write(HTTP_400)
        transport.loseConnection()


# Versions whose sessions may be resumed after a connection ended without close_notify.
_RESUMABLE_AFTER_RAGGED_CLOSE = SSL.TLS1_1_VERSION


def keepSessionResumable(connection: SSL.Connection) -> bool:
    """
    Let the session of a connection that ended without a close_notify sent
    be resumed: OpenSSL, when it frees such a connection, marks its session
    not resumable (and a server drops it from its cache), as TLS 1.0 asked;
    since TLS 1.1 "failure to properly close a connection no longer requires
    that a session not be resumed" (RFC 5246, 7.2.1), and peers that close
    their sockets without one (Python's ssl, many HTTP clients) would never
    resume a session id.  A fatal alert still ends the session: OpenSSL
    removes it when the alert is sent or received, whatever this says.
    Whether the session may be resumed: not after a TLS 1.0 connection that
    ended so.
    """
    shutdown = connection.get_shutdown()
    if shutdown & SSL.SENT_SHUTDOWN:
        return True
    if connection.get_protocol_version() < _RESUMABLE_AFTER_RAGGED_CLOSE:
        return False
    connection.set_shutdown(shutdown | SSL.SENT_SHUTDOWN)
    return True


class TLSFactory(TLSMemoryBIOFactory):
    """L{TLSMemoryBIOFactory} building securesock's TLS protocol."""

    protocol = _TLSProtocol

    def __init__(
        self,
        creator: Any,
        isClient: bool,
        wrappedFactory: IProtocolFactory,
        noDelay: bool = True,
        limits: tuple[float, int] | None = None,
    ) -> None:
        super().__init__(creator, isClient, wrappedFactory)
        self.creator = creator
        self.noDelay = noDelay
        self.isClient = isClient
        # limits: (handshakeTimeout, maxHandshakes), for servers.
        self.guard = None if limits is None else HandshakeGuard(*limits, clock=self._clock)
        self.closing = ClosingWatch(self._clock)

    def buildProtocol(self, addr: Any) -> Any:
        if self.guard is not None and not self.guard.admit(addr):
            return None  # over maxHandshakes: the port closes the connection at once
        return super().buildProtocol(addr)


def _reasons(error: SSL.Error) -> list[str]:
    return opensslReasons(error) or [str(error)]


def _serverHelloIn(received: bytes) -> bool:
    """Whether a server's first bytes start with a ServerHello (a handshake record, message type 2)."""
    return len(received) > 5 and received[0] == 0x16 and received[5] == 0x02


def handshakeError(
    reason: Failure, peer: str, protocols: str, received: bytes | None = None
) -> TLSHandshakeError:
    """
    Turn why a connection ended during its handshake into words.
    C{received}: the start of what the server sent, when known, so that a
    plaintext answer (a STARTTLS port) is recognised.
    """
    value = reason.value
    if isinstance(value, TLSHandshakeError):
        return value
    plaintext = plaintextFromServer(received, peer) if received else None
    if plaintext is not None:
        return TLSHandshakeError(plaintext)
    if isinstance(value, SSL.Error):
        reasons = _reasons(value)
        text = "; ".join(reasons)
        if any("version" in r or "unsupported protocol" in r for r in reasons):
            hint = f" (we offered {protocols}; the peer accepts none of them)"
        elif any("handshake failure" in r or "no shared cipher" in r for r in reasons):
            # A server that picks a version below ours finds none of our suites usable at it
            # (TLS 1.2's AEAD suites under TLS 1.0) and sends handshake_failure, not
            # protocol_version, before any ServerHello.  OpenSSL servers also send
            # handshake_failure for a missing client certificate (TLS 1.2), after the ServerHello.
            versions = f"the peer accepts none of the versions we offered ({protocols})"
            certificate = "the server requires a client certificate and got none"
            if received is None:  # not known whether the ServerHello came
                hint = f" (no cipher suite or key type in common, {versions}, or {certificate})"
            elif _serverHelloIn(received):
                hint = f" (no cipher suite or key type in common, or {certificate})"
            else:
                hint = f" (no cipher suite or key type in common, or {versions})"
        else:
            hint = ""
        return TLSHandshakeError(f"TLS handshake with {peer} failed: {text}{hint}")
    if isinstance(value, (ConnectionDone, ConnectionLost)):
        return TLSHandshakeError(
            f"{peer} closed the connection during the TLS handshake: it may not speak "
            f"TLS on this port, or it refused our protocol versions ({protocols}) or our "
            "client certificate"
        )
    return TLSHandshakeError(f"TLS handshake with {peer} failed: {value}")


@implementer(IHandshakeListener)
class _HandshakeGate(Protocol):
    """
    Sits between the TLS layer and the application protocol, which it
    connects only when the handshake has completed.
    """

    def __init__(
        self, application: IProtocol, peer: str, protocols: str, deadline: tuple[Any, float] | None = None
    ) -> None:
        self.application = application
        self.ready: Deferred[IProtocol] = Deferred(self._cancel)
        self._peer = peer
        self._protocols = protocols
        self._open = False
        self._deadline = deadline  # (clock, seconds) the handshake may take once TCP is connected
        self._timer: Any = None
        self._expired = False
        if IHalfCloseableProtocol.providedBy(application):
            alsoProvides(self, IHalfCloseableProtocol)

    def makeConnection(self, transport: Any) -> None:
        super().makeConnection(transport)
        if self._deadline is not None and not self._open:
            clock, seconds = self._deadline
            self._timer = clock.callLater(seconds, self._expire)

    def _expire(self) -> None:
        """The server accepted the connection but did not finish the handshake in time."""
        self._timer = None
        if not self._open and self.transport is not None:
            self._expired = True
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def _stopTimer(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _cancel(self, ready: Deferred[IProtocol]) -> None:
        transport: Any = self.transport
        if transport is not None:
            transport.abortConnection()

    def handshakeCompleted(self) -> None:
        self._stopTimer()
        self._open = True
        assert self.transport is not None
        self.application.makeConnection(self.transport)
        if IHandshakeListener.providedBy(self.application):
            self.application.handshakeCompleted()  # type: ignore[attr-defined]
        if not self.ready.called:
            self.ready.callback(self.application)

    def dataReceived(self, data: bytes) -> None:
        self.application.dataReceived(data)

    def readConnectionLost(self) -> None:
        self.application.readConnectionLost()  # type: ignore[attr-defined]

    def writeConnectionLost(self) -> None:
        self.application.writeConnectionLost()  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self._stopTimer()
        if self._open:
            self.application.connectionLost(reason)
        elif not self.ready.called:
            if self._expired:
                assert self._deadline is not None
                error = TLSHandshakeError(
                    f"{self._peer} accepted the connection but did not complete the TLS handshake "
                    f"within {self._deadline[1]:g} s (timeout={self._deadline[1]:g}): it may not speak TLS on this port, "
                    "or it waits for the client to speak first in plaintext"
                )
            else:
                received = getattr(self.transport, "firstBytes", None)
                error = handshakeError(reason, self._peer, self._protocols, received)
            self.ready.errback(Failure(error))


class HandshakeGateFactory(Factory):
    """Wraps the application's factory in handshake gates."""

    def __init__(
        self,
        wrappedFactory: IProtocolFactory,
        peer: str,
        protocols: str,
        deadline: tuple[Any, float] | None = None,
    ) -> None:
        self.wrappedFactory = wrappedFactory
        self._peer = peer
        self._protocols = protocols
        self._deadline = deadline  # (clock, seconds) each handshake may take

    def doStart(self) -> None:
        self.wrappedFactory.doStart()

    def doStop(self) -> None:
        self.wrappedFactory.doStop()

    def buildProtocol(self, addr: Any) -> _HandshakeGate | None:  # type: ignore[override]
        application = self.wrappedFactory.buildProtocol(addr)
        if application is None:
            return None
        return _HandshakeGate(application, self._peer, self._protocols, self._deadline)
