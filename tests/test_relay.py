"""
securesock._relay: the relay of ``twistd securesock --connect``, in process
with real sockets (tests/test_tap.py runs it under twistd).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import ssl
import time
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

import securesock
from securesock import _relay
from securesock._relay import RelayFactory

from .conftest import PKI
from .logcapture import LogLines
from .peers import listen, readToEnd


async def within(seconds: float, event: Deferred[None]) -> None:
    """Wait for C{event}, failing (CancelledError) if it has not come after C{seconds}."""
    deadline = reactor.callLater(seconds, event.cancel)  # type: ignore[attr-defined]
    try:
        await event
    finally:
        if deadline.active():
            deadline.cancel()


class Silent(Protocol):
    """Accepts, says nothing, reports when its connection ends."""

    ended: Deferred[None]

    def connectionLost(self, reason: object = None) -> None:
        self.ended.callback(None)


def handshakeThenLeave(port: int, cafile: str) -> None:
    context = ssl.create_default_context(cafile=cafile)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost"):
            time.sleep(0.5)  # the relay connects to its backend meanwhile; then the client leaves


@pytest_twisted.ensureDeferred
async def test_a_pending_backend_connection_is_given_up_when_the_client_leaves(pki: PKI) -> None:
    """
    The backend (TLS towards a server that never answers the handshake) is
    still being connected when the client leaves: the attempt is cancelled
    at once, instead of living on until its own timeout (here 60 s).
    """
    ended: Deferred[None] = Deferred()
    silent = await securesock.serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
        Factory.forProtocol(lambda: type("S", (Silent,), {"ended": ended})())
    )
    backend = securesock.clientFromString(
        reactor, f"tls:127.0.0.1:{silent.getHost().port}:trustRoots={pki.ca_pem}:timeout=60"
    )
    relay = await listen(
        f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}", RelayFactory(backend, "the backend")
    )
    try:
        await deferToThread(handshakeThenLeave, relay.getHost().port, pki.ca_pem)
        await within(10, ended)  # the silent server saw the backend connection close
        await deferLater(reactor, 0.1, lambda: None)  # nothing left to log an error afterwards
    finally:
        await relay.stopListening()
        await silent.stopListening()


class Collector(Protocol):
    """Backend: keeps what arrives; reports once C{expected} bytes did."""

    received: bytearray
    expected: int
    done: Deferred[None]

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if len(self.received) >= self.expected and not self.done.called:
            self.done.callback(None)


class SlowEndpoint:
    """A backend endpoint that takes its time to connect (0.5 s)."""

    def __init__(self, inner: object) -> None:
        self.inner = inner

    def connect(self, factory: object) -> Deferred[object]:
        return deferLater(reactor, 0.5, lambda: None).addCallback(
            lambda _: self.inner.connect(factory)  # type: ignore[attr-defined]
        )


def sendAll(port: int, cafile: str, payload: bytes) -> None:
    context = ssl.create_default_context(cafile=cafile)
    with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(payload)  # most of it before the backend is there
            time.sleep(2)  # let it through before leaving


@pytest_twisted.ensureDeferred
async def test_what_the_client_sends_before_the_backend_is_connected_arrives_in_order(pki: PKI) -> None:
    """1 MiB sent at once, while the backend connection takes 0.5 s: the client is paused past 64 KiB, nothing is lost."""
    payload = bytes(range(256)) * 4096
    done: Deferred[None] = Deferred()
    received = bytearray()
    collector = type("C", (Collector,), {"received": received, "expected": len(payload), "done": done})
    backendPort = await securesock.serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
        Factory.forProtocol(collector)
    )
    backend = SlowEndpoint(
        securesock.clientFromString(reactor, f"tcp:127.0.0.1:{backendPort.getHost().port}")
    )
    relay = await listen(
        f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}",
        RelayFactory(backend, "the backend"),  # type: ignore[arg-type]
    )
    try:
        sending = deferToThread(sendAll, relay.getHost().port, pki.ca_pem, payload)
        await within(20, done)
        await sending
    finally:
        await relay.stopListening()
        await backendPort.stopListening()
    assert bytes(received) == payload


class FailingEndpoint:
    """A backend endpoint that fails to connect after 0.5 s, as a refused backend does."""

    def connect(self, factory: object) -> Deferred[object]:
        def refuse(_: object) -> object:
            raise ConnectionRefusedError("nothing listens there")

        return deferLater(reactor, 0.5, lambda: None).addCallback(refuse)


def sendThenWait(port: int, cafile: str, payload: bytes) -> None:
    """Send C{payload} (what the server takes of it) and stay until the server closes (at most 15 s)."""
    context = ssl.create_default_context(cafile=cafile)
    with socket.create_connection(("127.0.0.1", port), timeout=15) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            try:
                tls.sendall(payload)
                while tls.recv(65536):
                    pass
            except OSError:
                pass  # reset, or the server's close_notify cut the send short


@pytest_twisted.ensureDeferred
async def test_a_client_that_sent_much_is_closed_when_the_backend_cannot_be_reached(pki: PKI) -> None:
    """
    200 KB sent while the backend connection is being made (paused past
    64 KiB), then the backend is refused: the client's connection is closed
    and logged, instead of staying paused (never reading the client's
    close_notify) until twistd stops.
    """
    ended: Deferred[None] = Deferred()
    relays: list[Any] = []

    class Tracked(RelayFactory):
        def buildProtocol(self, addr: Any) -> Any:
            relay = super().buildProtocol(addr)
            lost = relay.connectionLost

            def connectionLost(reason: Any = None) -> None:
                lost(reason)
                ended.callback(None)

            relay.connectionLost = connectionLost  # type: ignore[method-assign]
            relays.append(relay)
            return relay

    relay = await listen(
        f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}",
        Tracked(FailingEndpoint(), "the backend"),  # type: ignore[arg-type]
    )
    try:
        sending = deferToThread(sendThenWait, relay.getHost().port, pki.ca_pem, os.urandom(200_000))
        await within(10, ended)
        await sending
    finally:
        await relay.stopListening()
    assert len(relays) == 1 and relays[0].closeNote.startswith("cannot reach the backend: ")


class Pour(Protocol):
    """Backend: sends C{payload} as soon as it is connected, then closes."""

    payload: bytes

    def connectionMade(self) -> None:
        self.transport.write(self.payload)  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]


def receiveAll(port: int, cafile: str) -> bytes:
    context = ssl.create_default_context(cafile=cafile)
    with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            return readToEnd(tls)


@pytest_twisted.ensureDeferred
async def test_a_tcp_backend_is_read_in_large_pieces_and_relayed_whole(
    pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """16 MiB from a TCP backend: read more than Twisted's 64 KiB at a time, every byte in order."""
    payload = os.urandom(16 * 2**20)
    reads: list[int] = []
    dataReceived = _relay._RelayClient.dataReceived

    def counted(self: Any, data: bytes) -> None:
        reads.append(len(data))
        dataReceived(self, data)

    monkeypatch.setattr(_relay._RelayClient, "dataReceived", counted)
    backendPort = await securesock.serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
        Factory.forProtocol(type("P", (Pour,), {"payload": payload}))
    )
    backend = securesock.clientFromString(reactor, f"tcp:127.0.0.1:{backendPort.getHost().port}")
    relay = await listen(
        f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}", RelayFactory(backend, "the backend")
    )
    try:
        received = await deferToThread(receiveAll, relay.getHost().port, pki.ca_pem)
    finally:
        await relay.stopListening()
        await backendPort.stopListening()
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()
    assert sum(reads) == len(payload)
    assert max(reads) > 65536, max(reads)


class EchoBackend(Protocol):
    """A plaintext backend that echoes, and reports when its connection ends."""

    ended: Deferred[None]

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]

    def connectionLost(self, reason: object = None) -> None:
        if not self.ended.called:
            self.ended.callback(None)


def talk(port: int, cafile: str, lines: int, pause: float, hold: float) -> tuple[bytes, float | None]:
    """
    Sends C{lines} lines C{pause} s apart, reading each echo; then says nothing
    for up to C{hold} s.  Returns what came back, and after how long of silence
    the relay closed (None: it did not).
    """
    context = ssl.create_default_context(cafile=cafile)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            received = b""
            for number in range(lines):
                line = b"line %d\n" % number
                tls.sendall(line)
                while not received.endswith(line):
                    received += tls.recv(1024)
                time.sleep(pause)
            quiet = time.monotonic()
            tls.settimeout(hold)
            try:
                extra = tls.recv(1024)  # b"": the relay's close_notify
            except TimeoutError:
                return received, None
            assert extra == b"", extra
            return received, time.monotonic() - quiet


async def idleRelay(pki: PKI, idleTimeout: float) -> tuple[Any, Any, Deferred[None]]:
    ended: Deferred[None] = Deferred()
    backend = await securesock.serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
        Factory.forProtocol(lambda: type("B", (EchoBackend,), {"ended": ended})())
    )
    client = securesock.clientFromString(reactor, f"tcp:127.0.0.1:{backend.getHost().port}")
    relay = await listen(
        f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}",
        RelayFactory(client, "the backend", idleTimeout=idleTimeout),
    )
    return relay, backend, ended


@pytest_twisted.ensureDeferred
async def test_an_idle_connection_is_closed_both_ways(pki: PKI, logLines: LogLines) -> None:
    """--idle-timeout: nothing either way for that long closes the client's and the backend's connections."""
    relay, backend, ended = await idleRelay(pki, 1.0)
    try:
        received, closedAfter = await deferToThread(talk, relay.getHost().port, pki.ca_pem, 2, 0.1, 10)
        assert received == b"line 0\nline 1\n"
        assert closedAfter is not None and 0.7 < closedAfter < 4, closedAfter
        await within(5, ended)  # the backend's connection ended too
        await deferLater(reactor, 0.2, lambda: None)
        assert logLines.matching("closed: idle for 1 s (--idle-timeout)"), logLines.events
    finally:
        await relay.stopListening()
        await backend.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_connection_that_keeps_talking_is_not_idle(pki: PKI) -> None:
    """Traffic restarts the count: eight lines 0.4 s apart (3.2 s) outlive a 1 s idle timeout."""
    relay, backend, ended = await idleRelay(pki, 1.0)
    try:
        received, closedAfter = await deferToThread(talk, relay.getHost().port, pki.ca_pem, 8, 0.4, 3)
        assert received == b"".join(b"line %d\n" % n for n in range(8))
        assert closedAfter is not None and closedAfter < 3  # then idle: closed
    finally:
        await relay.stopListening()
        await backend.stopListening()


@pytest_twisted.ensureDeferred
async def test_no_idle_timeout_keeps_a_quiet_connection(pki: PKI) -> None:
    relay, backend, ended = await idleRelay(pki, 0.0)
    try:
        received, closedAfter = await deferToThread(talk, relay.getHost().port, pki.ca_pem, 1, 0, 2.5)
        assert received == b"line 0\n" and closedAfter is None
        assert not [call for call in reactor.getDelayedCalls() if "_idleCheck" in repr(call.func)]
    finally:
        await relay.stopListening()
        await backend.stopListening()


class AnswerAndClose(Protocol):
    """A backend that answers the first bytes and closes."""

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(b"answer\n")
        self.transport.loseConnection()


def waitsForOurCloseNotify(port: int, cafile: str, hold: float) -> tuple[bytes, bool]:
    """
    Sends a line, reads the answer and the relay's close_notify, holds our own
    close_notify back for C{hold} s: whether the relay kept TCP open meanwhile.
    """
    context = ssl.create_default_context(cafile=cafile)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")

        def pump() -> bool:
            raw.sendall(outgoing.read())
            chunk = raw.recv(65536)
            if chunk:
                incoming.write(chunk)
            else:
                incoming.write_eof()
            return bool(chunk)

        for _ in range(50):
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                pump()
        raw.sendall(outgoing.read())
        tls.write(b"question\n")
        received = b""
        for _ in range(200):
            try:
                chunk = tls.read(65536)
            except ssl.SSLWantReadError:
                pump()
                continue
            except ssl.SSLZeroReturnError:
                break  # the relay's close_notify
            received += chunk
        raw.setblocking(False)
        time.sleep(hold)
        try:
            stillOpen = raw.recv(1) != b""  # b"": the relay's FIN came while we held back
        except BlockingIOError:
            stillOpen = True
        raw.setblocking(True)
        with contextlib.suppress(ssl.SSLError):
            tls.unwrap()
        raw.sendall(outgoing.read())
        return received, stillOpen


@pytest_twisted.ensureDeferred
async def test_the_backend_closing_ends_the_client_side_with_a_close_that_waits(
    pki: PKI, logLines: LogLines
) -> None:
    """
    The backend answers and closes: the client gets the answer and the relay's
    close_notify, and its TCP connection is kept until it answers (it was
    closed at once, the backend's transport stopping its producer), as any
    close of securesock's; the log line says who ended it.
    """
    backend = await securesock.serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
        Factory.forProtocol(AnswerAndClose)
    )
    client = securesock.clientFromString(reactor, f"tcp:127.0.0.1:{backend.getHost().port}")
    relay = await listen(
        f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}", RelayFactory(client, "the backend")
    )
    try:
        received, stillOpen = await deferToThread(
            waitsForOurCloseNotify, relay.getHost().port, pki.ca_pem, 1.0
        )
        assert received == b"answer\n"
        assert stillOpen, "the relay closed TCP without waiting for the client's close_notify"
        await deferLater(reactor, 0.3, lambda: None)
        assert logLines.matching("closed: the backend closed the connection"), logLines.events
    finally:
        await relay.stopListening()
        await backend.stopListening()


class Flood(Protocol):
    """A backend that, asked (it reads the request: closing with it unread would reset), sends C{size} bytes and closes."""

    size = 6 * 2**20

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(b"x" * self.size)
        self.transport.loseConnection()


def slowDownload(port: int, cafile: str, rate: int, limit: float) -> int:
    """Reads at about C{rate} bytes a second until the relay ends the stream; how many bytes came."""
    context = ssl.create_default_context(cafile=cafile)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"go\n")
            received = 0
            started = time.monotonic()
            while time.monotonic() - started < limit:
                chunk = tls.recv(16384)
                if not chunk:
                    break
                received += len(chunk)
                ahead = received / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            return received


@pytest_twisted.ensureDeferred
async def test_a_slow_reader_is_busy_not_idle(pki: PKI, logLines: LogLines) -> None:
    """
    A download read at 1 MiB/s through a relay with a 1 s idle timeout:
    bytes waiting for the reader are not idleness, and every byte arrives
    (the transfer was cut, with a clean close_notify, when the kernel's
    buffers kept the relay from reading the backend for longer than that).
    """
    backend = await securesock.serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
        Factory.forProtocol(Flood)
    )
    client = securesock.clientFromString(reactor, f"tcp:127.0.0.1:{backend.getHost().port}")
    relay = await listen(
        f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}",
        RelayFactory(client, "the backend", idleTimeout=1.0),
    )
    try:
        received = await deferToThread(slowDownload, relay.getHost().port, pki.ca_pem, 2**20, 30)
        assert received == Flood.size
        assert not logLines.matching("--idle-timeout"), logLines.events
    finally:
        await relay.stopListening()
        await backend.stopListening()


class Sink(Protocol):
    """A backend that never reads: what the client sends waits."""

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.pauseProducing()


def uploadFor(port: int, cafile: str, seconds: float) -> tuple[int, bool]:
    """Sends for C{seconds}; the bytes the relay took, and whether the connection was still open then."""
    context = ssl.create_default_context(cafile=cafile)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.settimeout(0.2)
            sent = 0
            block = b"y" * 65536
            started = time.monotonic()
            while time.monotonic() - started < seconds:
                try:
                    sent += tls.send(block)
                except (TimeoutError, ssl.SSLWantWriteError):
                    continue
                except (OSError, ssl.SSLError):
                    return sent, False
            return sent, True


@pytest_twisted.ensureDeferred
async def test_an_upload_to_a_backend_that_does_not_read_is_held_back(pki: PKI, logLines: LogLines) -> None:
    """
    The client is paused while the backend does not read (busy, not idle:
    not closed by a 1 s idle timeout), and what the relay holds stays
    bounded: it took everything without limit once the idle timeout had fired.
    """
    backend = await securesock.serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
        Factory.forProtocol(Sink)
    )
    client = securesock.clientFromString(reactor, f"tcp:127.0.0.1:{backend.getHost().port}")
    relay = await listen(
        f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}",
        RelayFactory(client, "the backend", idleTimeout=1.0),
    )
    try:
        sent, stillOpen = await deferToThread(uploadFor, relay.getHost().port, pki.ca_pem, 4.0)
        assert stillOpen and not logLines.matching("--idle-timeout"), logLines.events
        assert sent < 64 * 2**20, sent  # kernel buffers and the relay's bounded ones, not all 4 s could send
    finally:
        await relay.stopListening()
        await backend.stopListening()


def test_who_closed_is_said_with_what_went_wrong_after() -> None:
    """The backend's close is the news of a clean end; a close-wait expiry or a reset after it is said too."""
    from twisted.internet.error import ConnectionDone, ConnectionLost
    from twisted.python.failure import Failure

    from securesock._connlog import _ended

    closedBy = "the backend closed the connection"
    assert _ended(closedBy, Failure(ConnectionDone())) == closedBy
    late = _ended(closedBy, Failure(ConnectionLost("the peer did not answer our close_notify within 30 s")))
    assert late.startswith(f"{closedBy}; then ConnectionLost: ") and "did not answer our close_notify" in late
    assert _ended(None, Failure(ConnectionDone())).startswith("ConnectionDone")
