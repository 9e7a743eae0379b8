"""
Session resumption, proved by the peers themselves: the second handshake
of each test must be reported resumed (C{Reused} by openssl, C{session_reused}
by Python's ssl and by pyOpenSSL on our own client), the first must not.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThread

import securesock

from .conftest import PKI, requireTool
from .peers import Background, listen

VERSION_FLAGS = {"TLSv1.2": "-tls1_2", "TLSv1.3": "-tls1_3"}
TIMEOUT = 20  # seconds for any one connection


def sessionReused(connection: Any) -> bool:
    """Whether a connection resumed, as an application asks securesock (TLSDetails.resumed)."""
    return securesock.TLSDetails.fromConnection(connection).resumed


async def sClient(pki: PKI, port: int, report: Path, *extra: str) -> str:
    """
    openssl s_client sending one line; its whole report.  The report (it
    prints the server's certificate, which the session's key-leak scan
    would read as key material) goes to a file, not through the scan.
    """
    openssl = requireTool("openssl")
    args = [openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-verify_return_error"]
    args += ["-CAfile", pki.ca_pem, "-servername", "localhost", "-verify_hostname", "localhost"]
    args += ["-ign_eof", *extra]

    def client() -> int:
        with open(report, "wb") as sink:
            return subprocess.run(
                args, input=b"hello\n", stdout=sink, stderr=subprocess.STDOUT, timeout=20
            ).returncode

    status = await deferToThread(client)
    text = report.read_text(errors="replace")
    assert status == 0, text
    assert "HELLO" in text, text
    return text


def sessionLine(report: str) -> str:
    """s_client's 'New, TLSv1.3, Cipher is ...' or 'Reused, ...' line."""
    found = re.search(r"^(New|Reused), (TLSv1\.[23]),", report, re.M)
    assert found is not None, report
    return f"{found.group(1)} {found.group(2)}"


@pytest.mark.interop
@pytest.mark.parametrize(
    "version, tickets",
    [("TLSv1.2", False), ("TLSv1.2", True), ("TLSv1.3", True)],
    ids=["tls12-session-cache", "tls12-ticket", "tls13-ticket"],
)
@pytest_twisted.ensureDeferred
async def test_server_resumes_openssl_client(pki: PKI, tmp_path: Path, version: str, tickets: bool) -> None:
    """TLS 1.2 by session id (server cache) or ticket, TLS 1.3 by ticket: on by default."""
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}")
    session = str(tmp_path / "session.pem")
    flags = [VERSION_FLAGS[version], *([] if tickets else ["-no_ticket"])]
    try:
        first = await sClient(pki, port.getHost().port, tmp_path / "first.txt", *flags, "-sess_out", session)
        second = await sClient(pki, port.getHost().port, tmp_path / "second.txt", *flags, "-sess_in", session)
    finally:
        await port.stopListening()
    assert sessionLine(first) == f"New {version}"
    assert sessionLine(second) == f"Reused {version}"
    if not tickets:  # resumed from the server's cache, by session id: no ticket was issued
        assert "TLS session ticket:" not in first, first


def pythonResumes(port: int, cafile: str, version: ssl.TLSVersion) -> list[bool]:
    """Two connections of Python's ssl module, the second offering the first's session."""
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = context.maximum_version = version
    reused = []
    session = None
    for _ in range(2):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
                tls.sendall(b"hello\n")
                assert tls.recv(4096).startswith(b"HELLO")  # the tickets of TLS 1.3 arrive with it
                reused.append(tls.session_reused)
                session = tls.session
    return reused


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=str)
@pytest_twisted.ensureDeferred
async def test_server_resumes_python_client(pki: PKI, version: ssl.TLSVersion) -> None:
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.rsa_pem}")
    try:
        reused = await deferToThread(pythonResumes, port.getHost().port, pki.ca_pem, version)
    finally:
        await port.stopListening()
    assert reused == [False, True]


def raggedPythonClient(port: int, cafile: str, tickets: bool, count: int = 3) -> list[bool]:
    """
    Python's ssl client under TLS 1.2, closing each connection without a
    close_notify (SSLSocket.close does not send one), offering the last session.
    """
    context = ssl.create_default_context(cafile=cafile)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    if not tickets:
        context.options |= ssl.OP_NO_TICKET  # session ids: the server's cache must keep the session
    reused = []
    session = None
    for _ in range(count):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            tls = context.wrap_socket(raw, server_hostname="localhost", session=session)
            tls.sendall(b"hello\n")
            assert tls.recv(4096).startswith(b"HELLO")
            reused.append(tls.session_reused)
            session = tls.session
            tls.close()
    return reused


@pytest.mark.parametrize("tickets", [False, True], ids=["session-ids", "tickets"])
@pytest_twisted.ensureDeferred
async def test_server_resumes_clients_that_leave_without_close_notify(pki: PKI, tickets: bool) -> None:
    """TLS 1.1 and later allow it (RFC 5246, 7.2.1); OpenSSL drops such a session unless told."""

    class Answer(Protocol):
        """Answers and leaves the connection open: the client is the one to leave."""

        def dataReceived(self, data: bytes) -> None:
            self.transport.write(data.upper())  # type: ignore[union-attr]

    port = await listen(
        f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}", Factory.forProtocol(Answer)
    )
    try:
        reused = await deferToThread(raggedPythonClient, port.getHost().port, pki.ca_pem, tickets)
    finally:
        await port.stopListening()
    assert reused == [False, True, True]


def raggedPythonServer(
    listener: socket.socket, certificate: str, count: int, version: ssl.TLSVersion
) -> list[bool]:
    """A server of Python's ssl closing each connection without a close_notify."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = context.maximum_version = version
    if version < ssl.TLSVersion.TLSv1_2:
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.load_cert_chain(certificate)
    listener.settimeout(TIMEOUT)
    reused = []
    for _ in range(count):
        raw, _ = listener.accept()
        with raw:
            raw.settimeout(TIMEOUT)
            tls = context.wrap_socket(raw, server_side=True)
            tls.recv(4096)
            tls.sendall(b"HELLO\n")
            reused.append(tls.session_reused)
            tls.close()
    return reused


@pytest.mark.parametrize(
    "protocols, version, resumed",
    [
        ("TLS1_2", ssl.TLSVersion.TLSv1_2, [False, True, True]),
        # RFC 2246, 7.2.1: not after a TLS 1.0 connection that ended so.
        ("TLS1", ssl.TLSVersion.TLSv1, [False, False, False]),
    ],
)
@pytest_twisted.ensureDeferred
async def test_client_endpoint_resumes_after_servers_that_leave_without_close_notify(
    pki: PKI, protocols: str, version: ssl.TLSVersion, resumed: list[bool]
) -> None:
    """Under TLS 1.1 and later every connection after the first resumes, not every other one."""
    from securesock._protocols import canSpeak

    if not canSpeak(securesock.TLSVersion[protocols]):
        pytest.skip(f"the linked OpenSSL cannot speak {protocols}")
    listener = socket.create_server(("127.0.0.1", 0))
    with listener:
        served = deferToThread(raggedPythonServer, listener, pki.server_pem, 3, version)
        endpoint = securesock.clientFromString(
            reactor,
            f"tls:localhost:{listener.getsockname()[1]}:trustRoots={pki.ca_pem}:protocols={protocols}",
        )
        reused = []
        handles = []  # kept, as an application may: OpenSSL frees them (and judges their sessions) later
        for _ in range(3):
            protocol = Report()
            await endpoint.connect(Factory.forProtocol(lambda p=protocol: p)).addTimeout(TIMEOUT, reactor)
            handles.append(protocol.transport.getHandle())  # type: ignore[union-attr]
            assert await protocol.done.addTimeout(TIMEOUT, reactor) == b"HELLO\n"
            reused.append(protocol.reused)
        assert await served == resumed
    assert reused == resumed


class Report(Protocol):
    """Sends a line, records whether its TLS session was resumed, collects the reply."""

    def __init__(self) -> None:
        self.received = b""
        self.reused: bool | None = None
        self.done: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        self.reused = sessionReused(self.transport.getHandle())  # type: ignore[union-attr]
        self.transport.write(b"hello\n")  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        self.done.callback(self.received)


class ServerSide(Protocol):
    """A server application that records whether each connection was resumed."""

    seen: list[bool]

    def dataReceived(self, data: bytes) -> None:
        # Servers' applications connect before the handshake: look once data has come.
        self.seen.append(sessionReused(self.transport.getHandle()))  # type: ignore[union-attr]
        self.transport.write(data.upper())  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]


async def connectTwice(endpoint: Any) -> list[bool | None]:
    reused = []
    for _ in range(2):
        protocol = Report()
        await endpoint.connect(Factory.forProtocol(lambda p=protocol: p)).addTimeout(TIMEOUT, reactor)
        await protocol.done.addTimeout(TIMEOUT, reactor)
        reused.append(protocol.reused)
    return reused


@pytest.mark.parametrize("protocols", ["TLS1_2", "TLS1_3"])
@pytest_twisted.ensureDeferred
async def test_client_endpoint_resumes_when_reused(pki: PKI, protocols: str) -> None:
    """Our client against our server: both ends say the second handshake was resumed."""
    seen: list[bool] = []
    factory = Factory.forProtocol(ServerSide)
    factory.protocol = type("Seen", (ServerSide,), {"seen": seen})
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}", factory)
    try:
        endpoint = securesock.clientFromString(
            reactor, f"tls:localhost:{port.getHost().port}:trustRoots={pki.ca_pem}:protocols={protocols}"
        )
        reused = await connectTwice(endpoint)
        # A new endpoint object starts without a session.
        fresh = await connectTwice(
            securesock.clientFromString(
                reactor, f"tls:localhost:{port.getHost().port}:trustRoots={pki.ca_pem}:protocols={protocols}"
            )
        )
    finally:
        await port.stopListening()
    assert reused == [False, True]
    assert fresh == [False, True]
    assert seen == [False, True, False, True]


@pytest.mark.interop
@pytest.mark.parametrize("flags, version", [(("-tls1_2",), "TLSv1.2"), ((), "TLSv1.3")])
@pytest_twisted.ensureDeferred
async def test_client_endpoint_resumes_with_s_server(
    pki: PKI, tmp_path: Path, flags: tuple[str, ...], version: str
) -> None:
    """openssl s_server -www says 'Reused' on the page of the second request."""
    openssl = requireTool("openssl")
    server = Background(
        [openssl, "s_server", "-accept", "127.0.0.1:0", "-www", "-cert", pki.server_pem, *flags],
        output=str(tmp_path / "s_server.log"),
    )
    try:
        found = await deferToThread(server.waitFor, r"^ACCEPT .*:(\d+)$", 10)
        endpoint = securesock.clientFromString(
            reactor, f"tls:localhost:{found.group(1)}:trustRoots={pki.ca_pem}"
        )
        pages = []
        for _ in range(2):
            protocol = Report()
            protocol.connectionMade = lambda p=protocol: p.transport.write(b"GET / HTTP/1.0\r\n\r\n")  # type: ignore[method-assign]
            await endpoint.connect(Factory.forProtocol(lambda p=protocol: p)).addTimeout(TIMEOUT, reactor)
            pages.append((await protocol.done.addTimeout(TIMEOUT, reactor)).decode(errors="replace"))
    finally:
        server.stop()
    assert f"New, {version}, Cipher is" in pages[0], pages[0]
    assert f"Reused, {version}, Cipher is" in pages[1], pages[1]


@pytest_twisted.ensureDeferred
async def test_client_does_not_resume_across_server_names(pki: PKI) -> None:
    """Sessions are kept per (host, port, SNI): another name gets a full handshake."""
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}")
    number = port.getHost().port
    try:
        first = securesock.clientFromString(reactor, f"tls:localhost:{number}:trustRoots={pki.ca_pem}")
        assert await connectTwice(first) == [False, True]
        creator = first.creator  # type: ignore[attr-defined]
        assert list(creator._sessions) == [("localhost", number, b"localhost")]
        other = securesock.clientFromString(reactor, f"tls:127.0.0.1:{number}:trustRoots={pki.ca_pem}")
        other.creator._sessions.update(creator._sessions)  # type: ignore[attr-defined]  # offer nothing that fits
        reused = await connectTwice(other)
    finally:
        await port.stopListening()
    assert reused == [False, True]


_FORKED = textwrap.dedent(
    """
    import os, sys
    from twisted.internet import reactor
    from twisted.internet.protocol import Factory
    import securesock
    sys.path.insert(0, sys.argv[2])
    from tests.peers import Shout

    endpoint = securesock.serverFromString(reactor, sys.argv[1])  # the context: built before the fork
    child = os.fork()
    def ready(port):
        who = "child" if child == 0 else "parent"
        os.write(1, f"PORT {who} {port.getHost().port} {os.getpid()}\\n".encode())  # one write: no interleaving
    endpoint.listen(Factory.forProtocol(Shout)).addCallback(ready)
    reactor.callLater(60, reactor.stop)
    reactor.run()
    """
)


@pytest.mark.interop
@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
@pytest_twisted.ensureDeferred
async def test_processes_forked_after_the_context_share_tickets(
    pki: PKI, tmp_path: Path, version: str
) -> None:
    """
    A ticket issued by one process is accepted by its sibling when the
    endpoint (its context, with its ticket keys) was built before the fork.
    """
    root = str(Path(__file__).resolve().parent.parent)
    pids: list[int] = []
    server = Background(
        [sys.executable, "-c", _FORKED, f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}", root],
        output=str(tmp_path / "forked.log"),
    )
    try:
        await deferToThread(server.waitFor, r"(PORT (child|parent) [\s\S]*){2}", 20)
        found = re.findall(r"PORT (child|parent) (\d+) (\d+)", server.text())
        ports = {who: number for who, number, _ in found}
        pids = [int(pid) for who, _, pid in found if who == "child"]
        session = str(tmp_path / "session.pem")
        flag = VERSION_FLAGS[version]
        first = await sClient(pki, int(ports["parent"]), tmp_path / "first.txt", flag, "-sess_out", session)
        second = await sClient(pki, int(ports["child"]), tmp_path / "second.txt", flag, "-sess_in", session)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        server.stop()
    assert sessionLine(first) == f"New {version}"
    assert sessionLine(second) == f"Reused {version}"
