"""
securesock._sendnow: bytes handed to a TCP connection's socket at once when
nothing waits before them, with real loopback connections: through the
relay, larger than the socket takes, and never around TLS started on the
connection itself.
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import time
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor, tcp
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

import securesock
from securesock._relay import RelayFactory
from securesock._sendnow import sendNow, sendsAtOnce

from .conftest import PKI
from .peers import listen, readToEnd

TIMEOUT = 20


def queued(transport: Any) -> int:
    """Bytes a Twisted TCP transport holds, waiting for the reactor to send them."""
    return int(transport._tempDataLen + len(transport.dataBuffer) - transport.offset)


class Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]


def roundTrips(port: int, cafile: str, count: int) -> list[bytes]:
    """C{count} lines sent one at a time through TLS, each answer read before the next line."""
    context = ssl.create_default_context(cafile=cafile)
    answers = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            for number in range(count):
                line = b"line %d\n" % number
                tls.sendall(line)
                answer = b""
                for _ in range(100):
                    answer += tls.recv(100)
                    if answer.endswith(b"\n"):
                        break
                answers.append(answer)
    return answers


@pytest_twisted.ensureDeferred
async def test_the_relay_writes_to_a_plaintext_backend_without_waiting_for_the_reactor(
    pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    Each line goes to the backend's socket while the client's record is
    handled: the relay's backend connection (a tcp.Client) does not wait for
    a "writable" event of the reactor (doWrite) to send it, and every answer
    comes back.
    """
    waited: list[int] = []  # bytes each "writable" event found queued, while the connection is open
    doWrite = tcp.Client.doWrite

    def countedDoWrite(self: Any) -> Any:
        if not self.disconnecting:  # closing goes through doWrite: that one is not a write
            waited.append(queued(self))
        return doWrite(self)

    monkeypatch.setattr(tcp.Client, "doWrite", countedDoWrite)
    backendPort = await listen("tcp:0:interface=127.0.0.1", Factory.forProtocol(Echo))
    backend = securesock.clientFromString(reactor, f"tcp:127.0.0.1:{backendPort.getHost().port}")
    relay = await listen(
        f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}", RelayFactory(backend, "the backend")
    )
    try:
        answers = await deferToThread(roundTrips, relay.getHost().port, pki.ca_pem, 20)
    finally:
        await relay.stopListening()
        await backendPort.stopListening()
    assert answers == [b"line %d\n" % number for number in range(20)]
    # At most the first line waited: it may arrive while the backend is still being
    # connected, and is then written from the relay's early buffer.
    assert waited in ([], [len(b"line 0\n")]), waited


class Sender(Protocol):
    """Writes C{payload} with sendNow as soon as it is connected, then a last line."""

    payload: bytes
    queued: list[int]

    def connectionMade(self) -> None:
        sendNow(self.transport, self.payload)
        transport: Any = self.transport
        self.queued.append(queued(transport))
        sendNow(self.transport, b"the end\n")
        self.transport.loseConnection()  # type: ignore[union-attr]


def readAll(port: int, pause: float) -> bytes:
    """Connect, wait C{pause} seconds without reading (the sender's socket fills), then read to the end."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        time.sleep(pause)
        return readToEnd(raw, TIMEOUT)


@pytest_twisted.ensureDeferred
async def test_what_the_socket_does_not_take_follows_through_the_transport_in_order() -> None:
    payload = os.urandom(16 * 2**20)  # far more than a loopback socket buffers
    queued: list[int] = []
    factory = Factory.forProtocol(type("S", (Sender,), {"payload": payload, "queued": queued}))
    port = await listen("tcp:0:interface=127.0.0.1", factory)
    try:
        received = await deferToThread(readAll, port.getHost().port, 0.3)
    finally:
        await port.stopListening()
    assert queued and queued[0] > 0  # part of it waited in the transport's buffer
    assert len(received) == len(payload) + len(b"the end\n")
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload + b"the end\n").digest()


class Raw(Protocol):
    """A plain TCP server that keeps what arrives."""

    received: bytearray

    def dataReceived(self, data: bytes) -> None:
        self.received += data


@pytest_twisted.ensureDeferred
async def test_nothing_goes_around_tls_started_on_the_connection(pki: PKI) -> None:
    """After Twisted's startTLS on a TCP connection, its bytes must be encrypted: no direct send."""
    received = bytearray()
    port = await listen(
        "tcp:0:interface=127.0.0.1", Factory.forProtocol(type("R", (Raw,), {"received": received}))
    )
    try:
        protocol = await connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), Protocol()
        )
        transport: Any = protocol.transport
        assert sendsAtOnce(transport)  # a plain connection with nothing queued: at once
        with open(pki.ca_pem, "rb") as ca:
            transport.startTLS(optionsForClientTLS("localhost", trustRoot=Certificate.loadPEM(ca.read())))
        await deferLater(reactor, 0.3, lambda: None)  # the ClientHello has left: nothing is queued
        assert queued(transport) == 0
        assert not sendsAtOnce(transport)
        sendNow(transport, b"SECRET-PLAINTEXT")
        await deferLater(reactor, 0.5, lambda: None)
        transport.abortConnection()
    finally:
        await port.stopListening()
    assert received[:1] == b"\x16"  # the ClientHello of the TLS that was started
    assert b"SECRET-PLAINTEXT" not in received


class Idle:
    """A pull producer that has nothing to give."""

    def resumeProducing(self) -> None:
        pass

    def pauseProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


@pytest_twisted.ensureDeferred
async def test_a_producer_that_is_not_streaming_is_left_to_the_transport() -> None:
    port = await listen("tcp:0:interface=127.0.0.1", Factory.forProtocol(Protocol))
    try:
        protocol = await connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), Protocol()
        )
        transport: Any = protocol.transport
        assert sendsAtOnce(transport)
        transport.registerProducer(Idle(), False)
        assert not sendsAtOnce(transport)
        transport.unregisterProducer()
        transport.write(b"queued")  # waits for the reactor: what follows must wait behind it
        assert not sendsAtOnce(transport)
        transport.loseConnection()
    finally:
        await port.stopListening()
