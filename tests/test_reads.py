"""
securesock._reads: accepted TLS connections read up to 256 KiB at a time
into one buffer the process shares, with real sockets and real peers.
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import tempfile
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor, tcp
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThread
from zope.interface import implementer

from securesock import _handshake
from securesock._reads import READ_SIZE, readIntoSharedBuffer

from .conftest import PKI
from .peers import listen, readToEnd

UPLOAD = os.urandom(3 * 2**20 + 12_345)  # random: a stale byte from the shared buffer would show


@implementer(IHandshakeListener)
class Digest(Protocol):
    """
    Hashes what it receives and answers with the digest.  Records the size
    and type of each socket read that fed the TLS layer under it (the test
    records the writes into OpenSSL's receive BIO).  Stops reading for a
    moment after the handshake, so that the kernel holds more than one
    64 KiB read's worth when reading resumes.
    """

    reads: list[tuple[type, int]]
    feeds: list[int]

    def connectionMade(self) -> None:
        self.digest = hashlib.sha256()
        self.size = 0
        tls: Any = self.transport
        self.transportClass = type(tls.transport)
        received = tls.dataReceived

        def recordedReceived(data: Any) -> None:
            self.reads.append((type(data), len(data)))
            received(data)

        tls.dataReceived = recordedReceived  # the TCP transport's doRead calls the instance's

    def handshakeCompleted(self) -> None:
        self.transport.pauseProducing()  # type: ignore[union-attr]
        reactor.callLater(0.5, self.transport.resumeProducing)  # type: ignore[attr-defined, union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.digest.update(data)
        self.size += len(data)
        if self.size >= len(UPLOAD):
            self.transport.write(self.digest.hexdigest().encode() + b"\n")  # type: ignore[union-attr]
            self.transport.loseConnection()  # type: ignore[union-attr]


def upload(port: int, cafile: str) -> bytes:
    context = ssl.create_default_context(cafile=cafile)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(UPLOAD)
            return readToEnd(tls, 10)


@pytest_twisted.ensureDeferred
async def test_uploads_are_read_in_large_reads_into_the_shared_buffer_and_arrive_intact(
    pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    Reads bigger than Twisted's 64 KiB happen (the kernel held more while the
    server paused), each one a view of the shared buffer; the receive BIO is
    fed at most 64 KiB at a time, so it stays as small as before; and the
    3 MiB of random bytes hash the same on both sides although every read
    reuses the same buffer.
    """
    Digest.reads, Digest.feeds = [], []
    seen: list[Digest] = []
    feed = _handshake.feed

    def recordedFeed(connection: Any, data: Any) -> None:  # into a receive BIO (one connection here)
        Digest.feeds.append(len(data))
        feed(connection, data)

    monkeypatch.setattr(_handshake, "feed", recordedFeed)

    class Recorded(Factory):
        def buildProtocol(self, addr: Any) -> Digest:
            protocol = Digest()
            seen.append(protocol)
            return protocol

    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}", Recorded())
    try:
        reply = await deferToThread(upload, port.getHost().port, pki.ca_pem)
    finally:
        await port.stopListening()
    assert reply == hashlib.sha256(UPLOAD).hexdigest().encode() + b"\n"
    assert seen[0].transportClass is not tcp.Server and issubclass(seen[0].transportClass, tcp.Server)
    sizes = [size for _, size in Digest.reads]
    assert {kind for kind, _ in Digest.reads} == {memoryview}
    assert 2**16 < max(sizes) <= READ_SIZE
    assert max(Digest.feeds) <= 2**16
    assert sum(Digest.feeds) == sum(sizes)  # every byte read went to OpenSSL, once


class Quiet(Protocol):
    pass


async def acceptedTransport(description: str) -> Any:
    """The transport of a connection accepted by a plain Twisted endpoint (not TLS)."""
    accepted: Deferred[Any] = Deferred()

    class Record(Factory):
        def buildProtocol(self, addr: Any) -> Protocol:
            protocol = Quiet()
            reactor.callLater(0, accepted.callback, protocol)  # type: ignore[attr-defined]
            return protocol

    port = await serverFromString(reactor, description).listen(Record())
    address = port.getHost()
    family, target = (
        (socket.AF_UNIX, address.name)
        if hasattr(address, "name")
        else (socket.AF_INET, ("127.0.0.1", address.port))
    )
    client = socket.socket(family, socket.SOCK_STREAM)
    client.connect(target)
    protocol = await accepted
    return port, client, protocol


@pytest_twisted.ensureDeferred
async def test_only_twisted_tcp_connections_feeding_the_given_protocol_change_how_they_read() -> None:
    port, client, protocol = await acceptedTransport("tcp:0:interface=127.0.0.1")
    try:
        readIntoSharedBuffer(protocol.transport, Quiet())  # it feeds another protocol
        assert type(protocol.transport) is tcp.Server
        readIntoSharedBuffer(protocol.transport, protocol)
        assert type(protocol.transport) is not tcp.Server
    finally:
        client.close()
        await port.stopListening()
    with tempfile.TemporaryDirectory() as directory:
        port, client, protocol = await acceptedTransport(f"unix:{directory}/s")
        try:
            kind = type(protocol.transport)  # a subclass of tcp.Server with reads of its own
            readIntoSharedBuffer(protocol.transport, protocol)
            assert type(protocol.transport) is kind
        finally:
            client.close()
            await port.stopListening()
