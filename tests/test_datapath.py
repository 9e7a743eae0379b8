"""
The data path of securesock's endpoints with real peers: TCP_NODELAY as
the kernel reports it (getsockopt), producer/consumer back-pressure, ALPN,
handshake completion notification and a clean close with close_notify.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import threading
import time
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHandshakeListener, IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThread
from zope.interface import implementer

import securesock
from securesock import _handshake

from .conftest import PKI
from .peers import listen

TIMEOUT = 20


def kernelNoDelay(transport: Any) -> bool:
    """TCP_NODELAY of the socket under a (TLS) transport, from getsockopt."""
    handle = transport.transport.getHandle()  # the TCP transport under the TLS layer
    return bool(handle.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


class Probe(Protocol):
    """Records the kernel's TCP_NODELAY of its connection, answers and closes."""

    seen: list[bool]

    def connectionMade(self) -> None:
        self.seen.append(kernelNoDelay(self.transport))

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]


def pythonClient(port: int, cafile: str, payload: bytes = b"ping\n", **wrap: Any) -> bytes:
    context = ssl.create_default_context(cafile=cafile)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost", **wrap) as tls:
            tls.sendall(payload)
            reply = b""
            for _ in range(1000):
                chunk = tls.recv(65536)
                if not chunk:
                    break
                reply += chunk
            return reply


@pytest.mark.parametrize("option, expected", [("", True), (":noDelay=yes", True), (":noDelay=no", False)])
@pytest_twisted.ensureDeferred
async def test_no_delay_on_accepted_sockets(pki: PKI, option: str, expected: bool) -> None:
    seen: list[bool] = []
    factory = Factory.forProtocol(type("Seen", (Probe,), {"seen": seen}))
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}{option}", factory)
    try:
        assert await deferToThread(pythonClient, port.getHost().port, pki.ca_pem) == b"ping\n"
    finally:
        await port.stopListening()
    assert seen == [expected]


class Ask(Protocol):
    def __init__(self) -> None:
        self.noDelay: bool | None = None
        self.done: Deferred[bytes] = Deferred()
        self.received = b""

    def connectionMade(self) -> None:
        self.noDelay = kernelNoDelay(self.transport)
        self.transport.write(b"ping\n")  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        self.done.callback(self.received)


@pytest.mark.parametrize("option, expected", [("", True), (":noDelay=no", False)])
@pytest_twisted.ensureDeferred
async def test_no_delay_on_client_sockets(pki: PKI, option: str, expected: bool) -> None:
    seen: list[bool] = []
    port = await listen(
        f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}",
        Factory.forProtocol(type("Seen", (Probe,), {"seen": seen})),
    )
    try:
        endpoint = securesock.clientFromString(
            reactor, f"tls:localhost:{port.getHost().port}:trustRoots={pki.ca_pem}{option}"
        )
        protocol = Ask()
        await endpoint.connect(Factory.forProtocol(lambda: protocol)).addTimeout(TIMEOUT, reactor)
        assert await protocol.done.addTimeout(TIMEOUT, reactor) == b"ping\n"
    finally:
        await port.stopListening()
    assert protocol.noDelay is expected


TOTAL = 32 * 2**20  # far more than the socket buffers hold: the server must be paused


@implementer(IPushProducer, IHandshakeListener)
class Sender(Protocol):
    """Streams TOTAL bytes as a push producer once asked; records pauses and the handshake."""

    log: dict[str, Any]

    def connectionMade(self) -> None:
        self.sent = 0
        self.paused = False
        self.log["handshakes"] = 0

    def handshakeCompleted(self) -> None:
        self.log["handshakes"] += 1
        self.log["alpn"] = self.transport.negotiatedProtocol  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.log["pauses"] = 0
        self.transport.registerProducer(self, True)  # type: ignore[union-attr]
        self.resumeProducing()

    def pauseProducing(self) -> None:
        self.paused = True
        self.log["pauses"] += 1
        self.log["bufferedAtPause"] = self.sent

    def resumeProducing(self) -> None:
        self.paused = False
        chunk = b"d" * 65536
        for _ in range(TOTAL // len(chunk) + 1):  # bounded; normally paused long before
            if self.paused or self.sent >= TOTAL:
                break
            self.transport.write(chunk)  # type: ignore[union-attr]
            self.sent += len(chunk)
        if self.sent >= TOTAL and not self.paused:
            self.transport.unregisterProducer()  # type: ignore[union-attr]
            self.transport.loseConnection()  # type: ignore[union-attr]
        elif self.sent >= TOTAL:
            self.log["finishing"] = True

    def stopProducing(self) -> None:
        self.sent = TOTAL


def slowReader(port: int, cafile: str) -> tuple[int, str | None]:
    """Asks for the stream, waits before reading (so the server must pause), then reads all of it."""
    context = ssl.create_default_context(cafile=cafile)
    context.set_alpn_protocols(["h2", "bench/1"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        # suppress_ragged_eofs=False: an EOF without close_notify raises instead of reading b"".
        with context.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False) as tls:
            tls.sendall(b"go\n")
            time.sleep(1.0)
            received = 0
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                chunk = tls.recv(1 << 20)
                if not chunk:
                    break
                received += len(chunk)
            return received, tls.selected_alpn_protocol()


@pytest_twisted.ensureDeferred
async def test_back_pressure_alpn_handshake_and_close_notify(pki: PKI) -> None:
    log: dict[str, Any] = {}
    factory = Factory.forProtocol(type("Logged", (Sender,), {"log": log}))
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}:alpn=bench/1", factory)
    try:
        received, alpn = await deferToThread(slowReader, port.getHost().port, pki.ca_pem)
    finally:
        await port.stopListening()
    assert received == TOTAL  # everything, ended by close_notify (no SSLEOFError)
    assert alpn == "bench/1" and log["alpn"] == b"bench/1"
    assert log["handshakes"] == 1
    assert log["pauses"] >= 1  # the transport told the producer to stop while the reader slept
    assert log["bufferedAtPause"] < TOTAL


@pytest_twisted.ensureDeferred
async def test_client_closes_with_close_notify(pki: PKI) -> None:
    """Our client end closes with close_notify too: Python's ssl server reads a clean EOF."""
    import threading

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server_pem)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    outcome: dict[str, Any] = {}

    def serve() -> None:
        try:
            connection, _ = listener.accept()
            with context.wrap_socket(connection, server_side=True, suppress_ragged_eofs=False) as tls:
                tls.settimeout(10)
                data = b""
                for _ in range(100):
                    chunk = tls.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                outcome["data"] = data
        except Exception as e:  # reported by the assertion below
            outcome["error"] = repr(e)
        finally:
            listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    class Once(Protocol):
        def connectionMade(self) -> None:
            self.transport.write(b"bye\n")  # type: ignore[union-attr]
            self.transport.loseConnection()  # type: ignore[union-attr]

    endpoint = securesock.clientFromString(
        reactor, f"tls:localhost:{listener.getsockname()[1]}:trustRoots={pki.ca_pem}"
    )
    await endpoint.connect(Factory.forProtocol(Once)).addTimeout(TIMEOUT, reactor)
    await deferToThread(thread.join, TIMEOUT)
    assert outcome == {"data": b"bye\n"}


class Gather(Protocol):
    """Collects what arrives and how the connection ended."""

    log: dict[str, Any]

    def connectionMade(self) -> None:
        self.log["data"] = b""

    def dataReceived(self, data: bytes) -> None:
        self.log["data"] += data

    def connectionLost(self, reason: Any = None) -> None:
        self.log["reason"] = reason.type.__name__


def closeNotifyClient(port: int, cafile: str) -> bytes:
    """Sends data, then close_notify (unwrap), and waits for the server's close_notify."""
    context = ssl.create_default_context(cafile=cafile)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        tls = context.wrap_socket(raw, server_hostname="localhost")
        tls.sendall(b"x" * 100_000 + b"end\n")
        plain = tls.unwrap()  # raises unless the server answers with its own close_notify
        rest = plain.recv(10)
        plain.close()
        return rest


@pytest_twisted.ensureDeferred
async def test_server_takes_close_notify_after_all_data(pki: PKI) -> None:
    """A client's close_notify: every byte before it reaches the application, the server answers in kind."""
    log: dict[str, Any] = {}
    factory = Factory.forProtocol(type("Logged", (Gather,), {"log": log}))
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}", factory)
    try:
        rest = await deferToThread(closeNotifyClient, port.getHost().port, pki.ca_pem)
        for _ in range(100):  # the server may see the end a moment after the client
            if "reason" in log:
                break
            await deferToThread(time.sleep, 0.05)
    finally:
        await port.stopListening()
    assert rest == b""
    assert log["data"] == b"x" * 100_000 + b"end\n"
    assert log["reason"] == "ConnectionDone"


def leavingClient(port: int, cafile: str, ending: str) -> bytes:
    """
    Sends a line, then leaves without close_notify: C{ending} "now" closes the
    socket at once; "after-reply" waits for the server's answer and
    close_notify first (as curl and browsers do); "mid-record" sends the first
    bytes of one more TLS record, raw, and closes.
    """
    context = ssl.create_default_context(cafile=cafile)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with context.wrap_socket(raw, server_hostname="localhost") as tls:  # close(): no close_notify
        tls.sendall(b"hello\n")
        reply = b""
        if ending == "after-reply":
            for _ in range(100):
                chunk = tls.recv(1024)
                if not chunk:  # the server's close_notify
                    break
                reply += chunk
        else:  # read the TLS 1.3 tickets, so that closing sends a FIN, not a reset
            tls.settimeout(0.3)
            with contextlib.suppress(TimeoutError, ssl.SSLError):
                reply += tls.recv(1024)
        if ending == "mid-record":  # 15 bytes of a 69-byte record, under the TLS layer
            os.write(tls.fileno(), b"\x17\x03\x03\x00\x40" + b"\x00" * 10)
    return reply  # the socket closes here: a FIN, no close_notify


class AnswerOnce(Gather):
    """Gather, which answers its first line and closes, when asked to."""

    answer = False

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        if self.answer and data.endswith(b"\n"):
            self.transport.write(b"bye\n")  # type: ignore[union-attr]
            self.transport.loseConnection()  # type: ignore[union-attr]


@pytest.mark.parametrize("ending", ["now", "after-reply", "mid-record"])
@pytest_twisted.ensureDeferred
async def test_a_peer_leaving_without_close_notify_is_a_lost_connection(pki: PKI, ending: str) -> None:
    """
    A TCP close without close_notify may be a truncation: the application hears
    ConnectionLost, never the ConnectionDone of a clean TLS close, whether the
    stream ended between records or inside one, and whether the server had
    closed first or not (what Twisted's TLS layer reports too).
    """
    log: dict[str, Any] = {}
    protocol = type("Logged", (AnswerOnce,), {"log": log, "answer": ending == "after-reply"})
    port = await listen(
        f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}", Factory.forProtocol(protocol)
    )
    try:
        reply = await deferToThread(leavingClient, port.getHost().port, pki.ca_pem, ending)
        for _ in range(100):
            if "reason" in log:
                break
            await deferToThread(time.sleep, 0.05)
    finally:
        await port.stopListening()
    assert log["data"] == b"hello\n"
    assert reply == (b"bye\n" if ending == "after-reply" else b"")
    assert log["reason"] == "ConnectionLost"


BIG = bytes(range(256)) * (3 * 4096) + b"tail-7b"  # 3 MiB + 7 bytes: many 64 KiB OpenSSL calls


class OneBigWrite(Protocol):
    """Answers any data with one large write (and a few small ones), then closes."""

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(b"<")  # type: ignore[union-attr]
        self.transport.write(BIG)  # type: ignore[union-attr]
        self.transport.writeSequence([b">", b"\n"])  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]


@pytest_twisted.ensureDeferred
async def test_large_single_write_arrives_whole_and_in_order(pki: PKI) -> None:
    port = await listen(
        f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}", Factory.forProtocol(OneBigWrite)
    )
    try:
        reply = await deferToThread(pythonClient, port.getHost().port, pki.ca_pem, b"go\n")
    finally:
        await port.stopListening()
    assert len(reply) == len(BIG) + 3
    assert reply == b"<" + BIG + b">\n"


class SizesRecorded(OneBigWrite):
    """OneBigWrite, recording (from its request on) what its TLS layer hands OpenSSL and reads back from the send BIO."""

    recording = False

    def dataReceived(self, data: bytes) -> None:
        SizesRecorded.recording = True
        super().dataReceived(data)


def recordSizes(monkeypatch: pytest.MonkeyPatch, sizes: dict[str, list[int]]) -> None:
    """Record the sizes securesock's TLS layer passes to SSL_write and reads out of the send BIO (securesock._bio)."""
    encrypt, drain = _handshake.encrypt, _handshake.drain

    def recordedEncrypt(connection: Any, buf: Any) -> int:
        if SizesRecorded.recording:
            sizes["send"].append(len(buf))
        return encrypt(connection, buf)

    def recordedDrain(connection: Any, size: int) -> bytes:
        read = drain(connection, size)
        if SizesRecorded.recording:
            sizes["bio_read"].append(len(read))
        return read

    monkeypatch.setattr(_handshake, "encrypt", recordedEncrypt)
    monkeypatch.setattr(_handshake, "drain", recordedDrain)


@pytest_twisted.ensureDeferred
async def test_large_writes_stay_below_the_allocators_mmap_threshold(
    pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    A 3 MiB write reaches OpenSSL 64 KiB at a time, and every read of the send
    BIO (which pyOpenSSL copies twice) stays under glibc's first mmap threshold,
    128 KiB: bigger buffers made bulk sending cost up to 2.5 times the CPU
    (docs/performance.md, "Not more than 64 KiB per call").
    """
    sizes: dict[str, list[int]] = {"send": [], "bio_read": []}
    recordSizes(monkeypatch, sizes)
    monkeypatch.setattr(SizesRecorded, "recording", False)
    factory = Factory.forProtocol(SizesRecorded)
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}", factory)
    try:
        reply = await deferToThread(pythonClient, port.getHost().port, pki.ca_pem, b"go\n")
    finally:
        await port.stopListening()
    assert reply == b"<" + BIG + b">\n"
    assert sum(sizes["send"]) == len(BIG) + 3 and len(sizes["send"]) >= len(BIG) // 2**16
    assert max(sizes["send"]) == 2**16
    assert max(sizes["bio_read"]) < 2**17
    assert sum(sizes["bio_read"]) > len(BIG)  # everything left through these reads (plus TLS overhead)


@pytest_twisted.ensureDeferred
async def test_client_large_write_reaches_python_server(pki: PKI) -> None:
    """Our client's large write, received by Python's ssl server, which ends with close_notify."""
    import hashlib
    import threading

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server_pem)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    outcome: dict[str, Any] = {}

    def serve() -> None:
        try:
            connection, _ = listener.accept()
            with context.wrap_socket(connection, server_side=True, suppress_ragged_eofs=False) as tls:
                tls.settimeout(10)
                digest, size = hashlib.sha256(), 0
                for _ in range(10_000):
                    chunk = tls.recv(1 << 16)
                    if not chunk:
                        break
                    digest.update(chunk)
                    size += len(chunk)
                outcome["size"], outcome["sha256"] = size, digest.hexdigest()
        except Exception as e:  # reported by the assertion below
            outcome["error"] = repr(e)
        finally:
            listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    class Push(Protocol):
        def connectionMade(self) -> None:
            self.transport.write(BIG)  # type: ignore[union-attr]
            self.transport.loseConnection()  # type: ignore[union-attr]

    endpoint = securesock.clientFromString(
        reactor, f"tls:localhost:{listener.getsockname()[1]}:trustRoots={pki.ca_pem}"
    )
    await endpoint.connect(Factory.forProtocol(Push)).addTimeout(TIMEOUT, reactor)
    await deferToThread(thread.join, TIMEOUT)
    assert outcome == {"size": len(BIG), "sha256": hashlib.sha256(BIG).hexdigest()}


class Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]


def echoClient(port: int, cafile: str, messages: list[bytes]) -> list[bytes]:
    """Each message sent on its own (one TLS record each), its echo read back before the next."""
    context = ssl.create_default_context(cafile=cafile)
    replies = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            for message in messages:
                tls.sendall(message)
                reply = b""
                while len(reply) < len(message):
                    chunk = tls.recv(1 << 20)
                    if not chunk:
                        break
                    reply += chunk
                replies.append(reply)
    return replies


@pytest.mark.parametrize("version", ["TLSv1_2", "TLSv1_3"])
@pytest_twisted.ensureDeferred
async def test_records_are_read_without_a_failing_ssl_read_once_connected(
    pki: PKI, version: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    After the handshake the server reads the records that arrived whole and
    stops there, without one more SSL_read that fails with WantReadError,
    also for messages of several records cut into several TCP chunks;
    everything arrives, in order.
    """
    from OpenSSL import SSL

    wants: list[int] = []
    reads: list[int] = []

    def counted(connection: SSL.Connection, bufsiz: int) -> bytes:  # until the handshake is done
        try:
            data: bytes = publicDecrypt(connection, bufsiz)
        except SSL.WantReadError:
            wants.append(1)
            raise
        reads.append(len(data))
        return data

    def countedRecords(connection: SSL.Connection, records: int) -> tuple[bytes, Any]:  # after
        try:
            data, error = decryptRecords(connection, records)
        except SSL.WantReadError:
            wants.append(1)
            raise
        if isinstance(error, SSL.WantReadError):
            wants.append(1)
        reads.append(len(data))
        return data, error

    publicDecrypt, decryptRecords = _handshake.publicDecrypt, _handshake.decryptRecords
    monkeypatch.setattr(_handshake, "publicDecrypt", counted)
    monkeypatch.setattr(_handshake, "decryptRecords", countedRecords)
    protocols = "TLS1_2" if version == "TLSv1_2" else "TLS1_3"
    description = f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}:protocols={protocols}"
    port = await listen(description, Factory.forProtocol(Echo))
    messages = [b"m%03d\n" % i for i in range(50)] + [bytes(range(256)) * 400]  # then 100 KiB: 7 records
    try:
        replies = await deferToThread(echoClient, port.getHost().port, pki.ca_pem, messages)
    finally:
        await port.stopListening()
    assert replies == messages
    assert sum(reads) == sum(len(m) for m in messages)
    # A handful at the handshake's end (reading until OpenSSL wants more), none per message.
    assert len(wants) <= 3, (len(wants), len(reads))


@implementer(IHandshakeListener)
class PausedUntilAsked(Protocol):
    """Reads nothing from the handshake's end until resumed, and records the sizes of what arrives."""

    sizes: list[int]
    connections: list[Any]
    paused: threading.Event

    def handshakeCompleted(self) -> None:
        self.transport.pauseProducing()  # type: ignore[union-attr]
        self.connections.append(self)
        self.paused.set()

    def dataReceived(self, data: bytes) -> None:
        self.sizes.append(len(data))
        if sum(self.sizes) >= len(BATCHED):
            self.transport.write(b"ok")  # type: ignore[union-attr]


BATCHED = bytes(range(256)) * 512  # 128 KiB: 8 records


def sendAndWait(port: int, cafile: str, paused: threading.Event, resume: Any) -> bytes:
    """Once the server has paused, sends BATCHED, has the server resumed, and reads its answer."""
    context = ssl.create_default_context(cafile=cafile)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            if not paused.wait(10):
                return b"the server did not pause"
            tls.sendall(BATCHED)  # the kernel's buffers hold it while the server reads nothing
            reactor.callFromThread(resume)
            return tls.recv(10)


@pytest_twisted.ensureDeferred
async def test_records_that_arrived_together_reach_the_application_together(pki: PKI) -> None:
    """
    128 KiB waiting in the socket when the server reads: its application
    gets them in fewer calls than there are records, several records each
    (one buffer per batch of up to four, securesock._bio.decryptRecords),
    not eight of one record.
    """
    sizes: list[int] = []
    connections: list[Any] = []
    paused = threading.Event()
    factory = Factory.forProtocol(
        type("Paused", (PausedUntilAsked,), {"sizes": sizes, "connections": connections, "paused": paused})
    )
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}", factory)

    def resume() -> None:
        connections[0].transport.resumeProducing()

    try:
        answer = await deferToThread(sendAndWait, port.getHost().port, pki.ca_pem, paused, resume)
    finally:
        await port.stopListening()
    assert answer == b"ok"
    assert sum(sizes) == len(BATCHED)
    assert max(sizes) >= 2 * 2**14, sizes  # at least one call with two whole records or more
    assert max(sizes) <= 4 * 2**14, sizes  # at most a batch: four
    assert len(sizes) < 8, sizes


@pytest.mark.parametrize("command", ["K", "k"])
@pytest_twisted.ensureDeferred
async def test_tls13_key_update_mid_stream(pki: PKI, command: str) -> None:
    """
    openssl s_client sends a TLS 1.3 KeyUpdate ("K": and asks the server to
    update its keys too; "k": not) between two messages: a record that is not
    application data, read among counted ones.  Both messages are echoed.
    """
    from .conftest import requireTool

    openssl = requireTool("openssl")
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}", Factory.forProtocol(Echo))

    def converse() -> tuple[bytes, bytes]:
        import subprocess

        process = subprocess.Popen(
            [openssl, "s_client", "-connect", f"127.0.0.1:{port.getHost().port}", "-CAfile", pki.ca_pem,
             "-tls1_3", "-quiet", "-no_ign_eof", "-verify_return_error"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert process.stdin is not None and process.stdout is not None
        try:
            seen = b""
            for line in (b"before\n", command.encode() + b"\n", b"after\n", b"again\n"):
                process.stdin.write(line)
                process.stdin.flush()
                if line[:1] in b"Kk" and len(line) == 2:
                    time.sleep(0.5)  # s_client reads the command line alone, not with the next one
                    continue  # a command to s_client, not data
                deadline = time.monotonic() + TIMEOUT
                while line not in seen and time.monotonic() < deadline:
                    seen += process.stdout.read1(4096)
            out, err = process.communicate(timeout=TIMEOUT)  # closes stdin: s_client ends
            return seen + out, err
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(5)

    try:
        seen, err = await deferToThread(converse)
    finally:
        await port.stopListening()
    assert b"KEYUPDATE" in err, err
    assert seen.split(b"\n")[:3] == [b"before", b"after", b"again"], (seen, err)


class Aborter(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(b"partial")  # type: ignore[union-attr]
        self.transport.abortConnection()  # type: ignore[union-attr]


def endOfStream(port: int, cafile: str) -> str:
    """How the stream ends for a client that asked a question: 'close_notify' or the error seen."""
    context = ssl.create_default_context(cafile=cafile)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False) as tls:
            tls.sendall(b"question\n")
            try:
                for _ in range(1000):
                    if not tls.recv(65536):
                        return "close_notify"
            except (ssl.SSLError, OSError) as e:
                return type(e).__name__
    return "no end"


@pytest_twisted.ensureDeferred
async def test_an_aborted_connection_does_not_end_with_close_notify(pki: PKI) -> None:
    """
    abortConnection must not look like a clean end to the peer (which would
    take a cut-off answer as complete): no close_notify goes out, though
    securesock hands TLS records to the socket at once where it can.
    """
    port = await listen(
        f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}", Factory.forProtocol(Aborter)
    )
    try:
        ending = await deferToThread(endOfStream, port.getHost().port, pki.ca_pem)
    finally:
        await port.stopListening()
    assert ending in ("SSLEOFError", "ConnectionResetError"), ending


RESPONSE = b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nhello\n"


class RespondAndClose(Protocol):
    """Answers the first chunk and closes; records how many TCP writes its write and close took."""

    sends: list[int]  # one entry per sendNow call (securesock._sendnow), of any connection
    took: list[int]
    producer: bool = False

    def dataReceived(self, data: bytes) -> None:
        before = len(self.sends)
        if self.producer:  # a streaming producer that stays registered: the close waits for it
            self.transport.registerProducer(self, True)  # type: ignore[union-attr]
        self.transport.write(RESPONSE)  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]
        self.took.append(len(self.sends) - before)
        if self.producer:
            reactor.callLater(0.05, self.transport.unregisterProducer)  # type: ignore[union-attr]

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


def requestUntilClosed(port: int, cafile: str, version: ssl.TLSVersion) -> bytes:
    """A request, then everything until the server's close_notify (its absence raises SSLEOFError)."""
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = context.maximum_version = version
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False) as tls:
            tls.sendall(b"GET / HTTP/1.0\r\n\r\n")
            reply = b""
            for _ in range(100):
                chunk = tls.recv(65536)
                if not chunk:  # close_notify
                    break
                reply += chunk
            return reply


@pytest.mark.parametrize("producer", [False, True], ids=["response then close", "with a producer"])
@pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["TLS1_2", "TLS1_3"]
)
@pytest_twisted.ensureDeferred
async def test_a_response_and_the_close_notify_leave_in_one_tcp_write(
    pki: PKI, version: ssl.TLSVersion, producer: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    write() then loseConnection(): the response's records and the
    close_notify go in one TCP write.  With a producer registered the
    close waits for it, but the response goes at once, not with the close.
    """
    sends: list[int] = []
    took: list[int] = []
    send = _handshake.sendNow

    def recorded(transport: Any, data: bytes) -> None:
        sends.append(len(data))
        send(transport, data)

    monkeypatch.setattr(_handshake, "sendNow", recorded)
    app = type("App", (RespondAndClose,), {"sends": sends, "took": took, "producer": producer})
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}", Factory.forProtocol(app))
    try:
        reply = await deferToThread(requestUntilClosed, port.getHost().port, pki.ca_pem, version)
    finally:
        await port.stopListening()
    assert reply == RESPONSE
    assert took == [1]
    if not producer:  # one write: the response's record and the close_notify alert (two records)
        assert sends[-1] >= len(RESPONSE) + 2 * 22, sends
