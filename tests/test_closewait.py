"""
A connection this side closed waits for the peer's close_notify only so
long (securesock._closewait): a silent peer no longer holds it for ever,
a slow reader still gets every byte, a peer that answers leaves no timer.
Real sockets and Python's ssl as the peer; the wait is shortened to 1 s.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThread

import securesock
from securesock import _closewait
from securesock._closewait import ClosingWatch

from .conftest import PKI
from .peers import listen

WAIT = 1.0


@pytest.fixture
def shortWait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_closewait, "CLOSE_WAIT", WAIT)


class Closed(Protocol):
    """Writes C{payload} once connected, then closes; records how it ended."""

    payload = b"bye\n"
    ended: Deferred[tuple[Any, float]]

    def connectionMade(self) -> None:
        self.transport.write(self.payload)  # type: ignore[union-attr]
        self.closedAt = time.monotonic()
        self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Any) -> None:
        self.ended.callback((reason, time.monotonic() - self.closedAt))


def closedFactory(payload: bytes = b"bye\n") -> tuple[Factory, Deferred[tuple[Any, float]]]:
    ended: Deferred[tuple[Any, float]] = Deferred()
    protocol = type("ClosedOnce", (Closed,), {"payload": payload, "ended": ended})
    return Factory.forProtocol(protocol), ended


def silentPeer(port: int, cafile: str, expect: int, hold: float) -> bytes:
    """Reads C{expect} bytes and the close_notify after them, then neither answers nor closes for C{hold} s."""
    context = ssl.create_default_context(cafile=cafile)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    tls = context.wrap_socket(raw, server_hostname="localhost")
    received = b""
    deadline = time.monotonic() + 10
    while len(received) < expect and time.monotonic() < deadline:
        received += tls.recv(65536)
    time.sleep(hold)  # the server's close_notify sits unread-to-the-end: no answer, no FIN
    tls.close()  # without close_notify (never unwrapped)
    return received


def heldTimers() -> list[Any]:
    return [call for call in reactor.getDelayedCalls() if "ClosingWatch" in repr(call.func)]


@pytest_twisted.ensureDeferred
async def test_a_silent_peer_is_closed_after_the_wait(pki: PKI, shortWait: None) -> None:
    factory, ended = closedFactory()
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}", factory)
    try:
        peer = deferToThread(silentPeer, port.getHost().port, pki.ca_pem, 4, WAIT + 3.5)
        reason, after = await ended
        assert reason.check(ConnectionLost), reason
        assert "did not answer our close_notify within 1 s" in str(reason.value)
        assert WAIT <= after < WAIT + 3, after  # not the 4.5 s the peer holds on
        assert not heldTimers()
        assert await peer == b"bye\n"
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_peer_that_answers_leaves_no_timer(pki: PKI, shortWait: None) -> None:
    factory, ended = closedFactory()
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}", factory)

    def politePeer() -> bytes:
        context = ssl.create_default_context(cafile=pki.ca_pem)
        with socket.create_connection(("127.0.0.1", port.getHost().port), timeout=10) as raw:
            tls = context.wrap_socket(raw, server_hostname="localhost")
            received = tls.recv(1024)
            assert tls.recv(1024) == b""  # the server's close_notify
            tls.unwrap()  # ours in answer
            return received

    try:
        received = await deferToThread(politePeer)
        reason, after = await ended
        assert received == b"bye\n"
        assert reason.check(ConnectionDone), reason
        assert after < WAIT
        assert not heldTimers()
    finally:
        await port.stopListening()


def slowReader(port: int, cafile: str, seconds: float) -> int:
    """Reads a little at a time for C{seconds}, then the rest; the count of bytes up to close_notify."""
    context = ssl.create_default_context(cafile=cafile)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    tls = context.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)
    received = 0
    start = time.monotonic()
    for _ in range(10**6):
        chunk = tls.recv(16384)
        if not chunk:
            break
        received += len(chunk)
        if time.monotonic() - start < seconds:
            time.sleep(0.01)
    tls.close()
    return received


@pytest_twisted.ensureDeferred
async def test_a_slow_reader_still_gets_every_byte(pki: PKI, shortWait: None) -> None:
    """
    The wait bounds a silent peer, not a transfer: what was written before
    closing all arrives (32 MiB: more than the kernel's buffers, so Twisted
    still holds some when the wait ends).
    """
    size = 32 * 2**20
    factory, ended = closedFactory(b"x" * size)
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}", factory)
    try:
        received = await deferToThread(slowReader, port.getHost().port, pki.ca_pem, 3 * WAIT)
        await ended
    finally:
        await port.stopListening()
    assert received == size


@pytest_twisted.ensureDeferred
async def test_our_client_closing_on_a_silent_server(pki: PKI, shortWait: None) -> None:
    """A server that never answers our client's close_notify does not hold the client's connection."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server_pem)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    stop = threading.Event()

    def silentServer() -> None:
        connection, _ = listener.accept()
        with connection:
            tls = context.wrap_socket(connection, server_side=True)
            tls.sendall(b"bye\n")
            stop.wait(10)  # neither reads our close_notify nor closes

    thread = threading.Thread(target=silentServer, daemon=True)
    thread.start()
    endpoint = securesock.clientFromString(
        reactor, f"tls:127.0.0.1:{listener.getsockname()[1]}:hostname=localhost:trustRoots={pki.ca_pem}"
    )
    factory, ended = closedFactory()
    try:
        await endpoint.connect(factory)
        reason, after = await ended
        assert reason.check(ConnectionLost) and "close_notify" in str(reason.value), reason
        assert after < WAIT + 3
        assert not heldTimers()
    finally:
        stop.set()
        listener.close()
        await deferToThread(thread.join, 10)


class Waiting:
    def __init__(self, watch: ClosingWatch, again: bool = False) -> None:
        self.watch = watch
        self.expired = 0
        self.again = again

    def closeWaitExpired(self) -> None:
        self.expired += 1
        if self.again:
            self.again = False
            self.watch.add(self)


def test_one_timer_for_all_in_deadline_order() -> None:
    clock = Clock()
    watch = ClosingWatch(clock, wait=10)
    first, second, third = Waiting(watch), Waiting(watch), Waiting(watch)
    watch.add(first)
    clock.advance(4)
    watch.add(second)
    watch.add(second)  # already waiting: its deadline stays
    clock.advance(4)
    watch.add(third)
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(2)  # t=10
    assert (first.expired, second.expired, third.expired) == (1, 0, 0)
    clock.advance(4)  # t=14
    assert (first.expired, second.expired, third.expired) == (1, 1, 0)
    watch.discard(third)
    assert clock.getDelayedCalls() == [] and len(watch) == 0


def test_expired_and_still_busy_waits_again() -> None:
    clock = Clock()
    watch = ClosingWatch(clock, wait=10)
    busy = Waiting(watch, again=True)
    watch.add(busy)
    clock.advance(10)
    assert busy.expired == 1 and len(watch) == 1
    clock.advance(10)
    assert busy.expired == 2 and len(watch) == 0 and clock.getDelayedCalls() == []


def test_discarding_what_never_waited_keeps_the_timer() -> None:
    clock = Clock()
    watch = ClosingWatch(clock, wait=10)
    waiting = Waiting(watch)
    watch.add(waiting)
    watch.discard(object())
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(10)
    assert waiting.expired == 1


def test_the_default_wait_is_thirty_seconds() -> None:
    assert _closewait.CLOSE_WAIT == 30.0
    assert ClosingWatch(Clock()).wait == 30.0
