"""
STARTTLS over real loopback connections: the app-driven startTLS, the
starttls: endpoints of every dialect against each other, the injection rule
in both directions, servers that do not offer the upgrade, the line mixin
with Twisted's own mail protocols, and the wrong-mode diagnostics.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, serverFromString
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator, ISSLTransport
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.internet.testing import StringTransport
from twisted.internet.threads import deferToThread
from twisted.mail import imap4, smtp
from twisted.protocols.basic import LineOnlyReceiver, LineReceiver
from zope.interface import implementer

import securesock
from securesock import (
    DescriptionError,
    StartTLSError,
    StartTLSInjectionError,
    StartTLSLineMixin,
    TLSDetails,
    TLSHandshakeError,
    TLSUpgrade,
)
from securesock._material import loadCertificates
from securesock.dialects import NEGOTIATED, commandOf

from . import rawclients
from .conftest import PKI
from .logcapture import LogLines
from .peers import Collect, listen
from .rawclients import clientHello
from .starttlspeers import (
    Counting,
    LogCapture,
    clientDescription,
    connectStartTLS,
    listenStartTLS,
    rawSession,
    scriptedServer,
    serverDescription,
    sleep,
)
from .test_dialects import GO_AHEAD, INJECTED, NOT_OFFERED, UPGRADES

# --- descriptions -----------------------------------------------------------


def test_starttls_needs_a_dialect(pki: PKI) -> None:
    with pytest.raises(DescriptionError, match="starttls: needs dialect=.*smtp, imap, pop3, ftp"):
        securesock.serverFromString(reactor, f"starttls:0:certificate={pki.server_pem}")


def test_dialect_only_with_starttls(pki: PKI) -> None:
    with pytest.raises(DescriptionError, match="dialect=smtp applies only to starttls: descriptions"):
        securesock.clientFromString(reactor, "tls:localhost:465:dialect=smtp")


def test_unknown_dialect(pki: PKI) -> None:
    with pytest.raises(
        DescriptionError, match=r"dialect='http': not a dialect securesock speaks; accepted: smtp"
    ):
        securesock.serverFromString(reactor, f"starttls:0:certificate={pki.server_pem}:dialect=http")


def test_starttls_server_still_needs_a_certificate() -> None:
    with pytest.raises(DescriptionError, match="a TLS server needs a certificate"):
        securesock.serverFromString(reactor, "starttls:587:dialect=smtp")


def test_starttls_server_reloads_its_certificate(pki: PKI, tmp_path: Path) -> None:
    # What twistd's SIGHUP calls on each listener, starttls: ones included.
    served = tmp_path / "site.pem"
    served.write_bytes(Path(pki.server_pem).read_bytes())
    served.chmod(0o600)
    endpoint = securesock.serverFromString(reactor, f"starttls:0:certificate={served}:dialect=smtp")
    assert endpoint.reload() is False
    served.write_bytes(Path(pki.rsa_pem).read_bytes())
    os.utime(served, (os.stat(served).st_atime, os.stat(served).st_mtime + 10))
    assert endpoint.reload() is True


def test_plugin_prefix_reaches_securesock(pki: PKI) -> None:
    endpoint = serverFromString(reactor, f"starttls:0:certificate={pki.server_pem}:dialect=smtp")
    assert isinstance(endpoint, securesock.StartTLSServerEndpoint)
    assert endpoint.options.dialect == "smtp"


def test_plugin_prefix_for_clients(pki: PKI) -> None:
    from twisted.internet.endpoints import clientFromString

    endpoint = clientFromString(reactor, f"starttls:localhost:587:trustRoots={pki.ca_pem}:dialect=pop3")
    assert isinstance(endpoint, securesock.StartTLSClientEndpoint)
    assert endpoint.options.dialect == "pop3" and endpoint.options.host == "localhost"


def test_url_form(pki: PKI) -> None:
    endpoint = securesock.clientFromString(
        reactor, f"starttls://127.0.0.1:587?dialect=imap&trustRoots={pki.ca_pem}"
    )
    assert isinstance(endpoint, securesock.StartTLSClientEndpoint)
    assert endpoint.options.dialect == "imap" and endpoint.options.port == 587


# --- app-driven startTLS ----------------------------------------------------


class UpgradingServer(StartTLSLineMixin, LineOnlyReceiver):
    """Answers STARTTLS with GO and upgrades; answers other lines in upper case, saying whether TLS is on."""

    def lineReceived(self, line: bytes) -> None:
        if line == b"STARTTLS":
            self.sendLine(b"GO")
            self.factory.details = self.upgradeToTLS(self.factory.upgrade)  # type: ignore[attr-defined]
            self.factory.details.addErrback(lambda f: f)  # type: ignore[attr-defined]
        else:
            secure = b"yes" if ISSLTransport.providedBy(self.transport) else b"no"
            self.sendLine(line.upper() + b" secure=" + secure)


class UpgradingClient(LineOnlyReceiver):
    def __init__(self, upgrade: TLSUpgrade) -> None:
        self.upgrade = upgrade
        self.details: Deferred[TLSDetails] | None = None
        self.answer: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        self.sendLine(b"STARTTLS")

    def lineReceived(self, line: bytes) -> None:
        if line == b"GO":
            self.details = securesock.startTLS(self.transport, self.upgrade)
            self.details.addErrback(self._failed)
            self.sendLine(b"hello")  # held by the TLS layer until the handshake is done
        elif not self.answer.called:
            self.answer.callback(line)

    def _failed(self, reason: Any) -> None:
        if not self.answer.called:
            self.answer.errback(reason)

    def connectionLost(self, reason: Any) -> None:
        if not self.answer.called:
            self.answer.errback(reason)


async def upgradeBothSides(pki: PKI, serverSpec: str, clientSpec: str) -> tuple[Any, UpgradingClient, Any]:
    factory = Factory.forProtocol(UpgradingServer)
    factory.upgrade = TLSUpgrade.forServer(serverSpec)  # type: ignore[attr-defined]
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    client = UpgradingClient(TLSUpgrade.forClient(clientSpec))
    await TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port).connect(
        Factory.forProtocol(lambda: client)
    )
    return port, client, factory


@pytest_twisted.ensureDeferred
async def test_startTLS_both_sides_reports_what_was_negotiated(pki: PKI) -> None:
    port, client, factory = await upgradeBothSides(
        pki,
        f"starttls:0:certificate={pki.server_pem}:alpn=h2:dialect=none",
        f"starttls:localhost:25:trustRoots={pki.ca_pem}:alpn=h2:dialect=none",
    )
    try:
        assert await client.answer == b"HELLO secure=yes"
        assert client.details is not None
        clientSide = await client.details
        serverSide = await factory.details
        assert clientSide.version == serverSide.version == "TLSv1.3"
        assert clientSide.cipher and clientSide.cipher == serverSide.cipher
        assert clientSide.alpn == serverSide.alpn == b"h2"
        assert clientSide.peerCertificate == loadCertificates(pki.server_pem, "certificate")[0]
        assert serverSide.peerCertificate is None
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_startTLS_client_verifies_the_server(pki: PKI) -> None:
    port, client, factory = await upgradeBothSides(
        pki,
        f"starttls:0:certificate={pki.stranger_pem}:dialect=none",
        f"tls:localhost:25:trustRoots={pki.ca_pem}",
    )
    try:
        with pytest.raises(TLSHandshakeError, match="did not verify"):
            await client.answer
        with pytest.raises(TLSHandshakeError, match="alert unknown ca"):  # the client's alert says why
            await factory.details
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_startTLS_checks_the_name(pki: PKI) -> None:
    port, client, factory = await upgradeBothSides(
        pki,
        f"starttls:0:certificate={pki.server_pem}:dialect=none",
        f"tls:mail.example.com:25:trustRoots={pki.ca_pem}",
    )
    try:
        with pytest.raises(TLSHandshakeError, match="not valid for 'mail.example.com'"):
            await client.answer
        with pytest.raises(TLSHandshakeError):
            await factory.details
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_startTLS_refuses_a_connection_that_is_already_tls(pki: PKI) -> None:
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}")
    try:
        collect = Collect()
        endpoint = securesock.clientFromString(
            reactor, f"tls:127.0.0.1:{port.getHost().port}:trustRoots={pki.ca_pem}"
        )
        await endpoint.connect(Factory.forProtocol(lambda: collect))
        upgrade = TLSUpgrade.forClient(f"tls:localhost:25:trustRoots={pki.ca_pem}")
        with pytest.raises(StartTLSError, match="is already TLS"):
            await securesock.startTLS(collect.transport, upgrade)
        await collect.done
    finally:
        await port.stopListening()


@pytest.mark.parametrize("pipelined", [b"hello\r\n", b"hel", b"\r\n"])
@pytest_twisted.ensureDeferred
async def test_upgradeToTLS_refuses_while_plaintext_is_buffered(pki: PKI, pipelined: bytes) -> None:
    # Whole line, part of a line, an empty line: anything received after STARTTLS is refused.
    factory = Factory.forProtocol(UpgradingServer)
    factory.upgrade = TLSUpgrade.forServer(  # type: ignore[attr-defined]
        f"starttls:0:certificate={pki.server_pem}:dialect=none"
    )
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    try:
        with LogCapture() as logs:
            answers = await deferToThread(rawSession, port.getHost().port, [b"STARTTLS\r\n" + pipelined])
        with pytest.raises(StartTLSInjectionError, match="before TLS started"):
            await factory.details  # type: ignore[attr-defined]
        assert b"secure=" not in b"".join(answers)  # the pipelined line was never answered
        assert answers[-1] == b""
        assert f"{len(pipelined)} plaintext bytes" in logs.text()
    finally:
        await port.stopListening()


def test_upgrade_from_a_foreign_description() -> None:
    with pytest.raises(DescriptionError, match="not a securesock description"):
        TLSUpgrade.forServer("tcp:25")


# --- starttls: endpoints, every dialect, both sides ours ---------------------


@pytest.mark.parametrize("dialect", NEGOTIATED)
@pytest_twisted.ensureDeferred
async def test_dialect_client_and_server(pki: PKI, dialect: str) -> None:
    application = Counting()
    port = await listenStartTLS(pki, dialect, application)
    try:
        collect = await connectStartTLS(pki, port.getHost().port, dialect)
        # connect() fired after the handshake: the application never saw plaintext.
        assert ISSLTransport.providedBy(collect.transport)
        assert await collect.done == b"HELLO alpn=none\n"
        assert len(application.built) == 1
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_dialect_client_verifies(pki: PKI) -> None:
    port = await listenStartTLS(pki, "smtp")
    try:
        with pytest.raises(TLSHandshakeError, match="did not verify"):
            endpoint = securesock.clientFromString(
                reactor,
                f"starttls:127.0.0.1:{port.getHost().port}:trustRoots={pki.path('other-ca.pem')}:dialect=smtp",
            )
            await endpoint.connect(Factory.forProtocol(Collect))
    finally:
        await port.stopListening()


@pytest.mark.parametrize("dialect", ["smtp", "postgres"])
@pytest_twisted.ensureDeferred
async def test_applications_are_built_only_after_the_handshake(pki: PKI, dialect: str) -> None:
    # A failed handshake (the client does not trust the server) builds no protocol on either
    # side: factories that count or track what they build never see such a connection.
    serverApplication = Counting()
    port = await listenStartTLS(pki, dialect, serverApplication)
    clientApplication = Counting(Collect)
    try:
        endpoint = securesock.clientFromString(
            reactor,
            f"starttls:127.0.0.1:{port.getHost().port}:trustRoots={pki.path('other-ca.pem')}:dialect={dialect}",
        )
        with LogCapture() as logs:
            with pytest.raises(TLSHandshakeError, match="did not verify"):
                await endpoint.connect(clientApplication)
            command = {"smtp": "STARTTLS", "postgres": "SSLRequest"}[dialect]  # the dialect's own word for it
            text = await _logged(logs, f"no TLS after {dialect} {command}: ")  # once the server sees it
        assert clientApplication.built == [] and serverApplication.built == []
        assert f"no TLS after {dialect} {command}: " in text
    finally:
        await port.stopListening()


def test_an_application_that_refuses_is_asked_once() -> None:
    # Data that came with the client's Finished reaches the gate after the refusal:
    # dropped, without asking the factory again.
    from securesock._starttls import _Gate

    asked: list[int] = []
    failures: list[Any] = []
    transport = StringTransport()
    gate = _Gate(transport, Protocol(), lambda: asked.append(1), "peer", "TLSv1.3")
    gate.done.addErrback(failures.append)
    gate.handshakeCompleted()
    gate.dataReceived(b"EHLO x\r\n")
    assert asked == [1] and transport.disconnecting
    assert failures[0].check(StartTLSError) and "the application refused the connection" in str(
        failures[0].value
    )


@pytest_twisted.ensureDeferred
async def test_dialect_none_leaves_the_upgrade_to_the_application(pki: PKI) -> None:
    server = securesock.serverFromString(
        reactor, f"starttls:0:interface=127.0.0.1:certificate={pki.server_pem}:dialect=none"
    )
    factory = Factory.forProtocol(UpgradingServer)
    factory.upgrade = server.upgrade  # type: ignore[attr-defined]
    port = await server.listen(factory)
    try:
        endpoint = securesock.clientFromString(reactor, clientDescription(pki, port.getHost().port, "none"))
        client = UpgradingClient(endpoint.upgrade)  # type: ignore[attr-defined]
        await endpoint.connect(Factory.forProtocol(lambda: client))
        assert await client.answer == b"HELLO secure=yes"
    finally:
        await port.stopListening()


def stallAfterGo(port: int, seconds: float) -> float:
    """A client that asks for the upgrade and sends no ClientHello: the seconds until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=seconds + 10) as raw:
        raw.sendall(b"STARTTLS\r\n")
        started = time.monotonic()
        received = b""
        while b"GO" not in received:
            chunk = raw.recv(100)
            if not chunk:
                break
            received += chunk
        try:
            while raw.recv(100):
                pass
        except ConnectionResetError:  # abortConnection
            pass
        return time.monotonic() - started


@pytest_twisted.ensureDeferred
async def test_an_app_driven_upgrade_has_the_servers_handshake_deadline(pki: PKI) -> None:
    """handshakeTimeout= holds for securesock.startTLS as for a tls: server: a silent client holds nothing."""
    factory = Factory.forProtocol(UpgradingServer)
    factory.upgrade = TLSUpgrade.forServer(  # type: ignore[attr-defined]
        f"starttls:0:certificate={pki.server_pem}:dialect=none:handshakeTimeout=1"
    )
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    try:
        closedAfter = await deferToThread(stallAfterGo, port.getHost().port, 1)
        with pytest.raises(
            TLSHandshakeError,
            match=r"no complete TLS handshake within 1 s of the upgrade \(handshakeTimeout=1\)",
        ):
            await factory.details
    finally:
        await port.stopListening()
    assert 0.9 < closedAfter < 8


class RecordingServer(UpgradingServer):
    """Keeps every upgrade's Deferred, in order."""

    def lineReceived(self, line: bytes) -> None:
        super().lineReceived(line)
        if line == b"STARTTLS":
            self.factory.upgrades.append(self.factory.details)  # type: ignore[attr-defined]


async def upgradesReach(factory: Any, count: int) -> list[Deferred[TLSDetails]]:
    for _ in range(500):  # at most 10 s
        if len(factory.upgrades) >= count:
            break
        await deferLater(reactor, 0.02, lambda: None)
    upgrades: list[Deferred[TLSDetails]] = factory.upgrades
    assert len(upgrades) >= count
    return upgrades


@pytest_twisted.ensureDeferred
async def test_app_driven_upgrades_in_progress_are_capped_by_max_handshakes(pki: PKI) -> None:
    factory = Factory.forProtocol(RecordingServer)
    factory.upgrade = TLSUpgrade.forServer(  # type: ignore[attr-defined]
        f"starttls:0:certificate={pki.server_pem}:dialect=none:handshakeTimeout=2:maxHandshakes=1"
    )
    factory.upgrades = []  # type: ignore[attr-defined]
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)

    async def client() -> UpgradingClient:
        upgrading = UpgradingClient(TLSUpgrade.forClient(f"tls:localhost:25:trustRoots={pki.ca_pem}"))
        await TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port).connect(
            Factory.forProtocol(lambda: upgrading)
        )
        return upgrading

    try:
        stalled = deferToThread(stallAfterGo, port.getHost().port, 2)
        await upgradesReach(factory, 1)
        refused = await client()
        with pytest.raises(ConnectionLost):  # closed by the server before its handshake
            await refused.answer
        upgrades = await upgradesReach(factory, 2)
        with pytest.raises(StartTLSError, match=r"1 upgrades are in progress \(maxHandshakes=1\)"):
            await upgrades[1]
        with pytest.raises(TLSHandshakeError, match="handshakeTimeout=2"):
            await upgrades[0]
        await stalled
        served = await client()  # the stalled client's place was given back
        assert await served.answer == b"HELLO secure=yes"
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_an_app_driven_client_upgrade_gives_up_after_its_timeout(pki: PKI) -> None:
    """A server that says go ahead and never answers the ClientHello: timeout= ends the wait."""
    port = await scriptedServer(b"", [b"GO\r\n"])  # then silence
    client = UpgradingClient(TLSUpgrade.forClient(f"tls:localhost:25:trustRoots={pki.ca_pem}:timeout=1"))
    try:
        await TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port).connect(
            Factory.forProtocol(lambda: client)
        )
        started = time.monotonic()
        with pytest.raises(TLSHandshakeError, match=r"within 1 s of the upgrade \(timeout=1\)"):
            await client.answer
        assert time.monotonic() - started < 8
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_client_gives_up_after_its_timeout(pki: PKI) -> None:
    port = await scriptedServer(b"", [])  # says nothing, ever
    try:
        with pytest.raises(StartTLSError, match="no TLS session within 0.5 seconds"):
            await connectStartTLS(pki, port.getHost().port, "smtp", timeout=0.5)
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_server_drops_a_client_that_never_upgrades(pki: PKI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("securesock._starttls.SERVER_UPGRADE_TIMEOUT", 0.5)
    application = Counting()
    port = await listenStartTLS(pki, "smtp", application)
    try:
        with LogCapture() as logs:
            answers = await deferToThread(rawSession, port.getHost().port, [b"EHLO x\r\n"])
        assert answers[-1] == b"" and application.built == []
        assert "no TLS session within 0.5 seconds" in logs.text()
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_port_probe_is_logged_at_debug_level_only(pki: PKI, logLines: LogLines) -> None:
    """Connect and leave without a byte (a health check): not news, as on a tls: server."""
    port = await listenStartTLS(pki, "smtp", Counting())
    try:

        def probe() -> int:
            with socket.create_connection(("127.0.0.1", port.getHost().port), timeout=10) as raw:
                raw.recv(100)  # the greeting
                return int(raw.getsockname()[1])

        local = await deferToThread(probe)
        for _ in range(100):  # the debug line comes once the server saw the close
            if any(f"127.0.0.1:{local}:" in text for _, _, text in logLines.events):
                break
            await sleep(0.02)
        debug = [text for level, _, text in logLines.events if f"127.0.0.1:{local}:" in text]
        assert debug and "closed the connection during the plaintext smtp exchange" in debug[0]
        assert logLines.about(local) == []  # nothing above debug
    finally:
        await port.stopListening()


@implementer(IOpenSSLServerConnectionCreator)
class _BrokenCreator:
    def serverConnectionForTLS(self, tlsProtocol: Any) -> Any:
        raise RuntimeError("no TLS connection today")


@pytest_twisted.ensureDeferred
async def test_server_closes_when_tls_cannot_start(pki: PKI) -> None:
    # Not left open, half-upgraded and with its deadline stopped.
    endpoint = securesock.serverFromString(reactor, serverDescription(pki, "smtp"))
    endpoint.upgrade = TLSUpgrade(_BrokenCreator(), False, "TLSv1.2")
    application = Counting()
    port = await endpoint.listen(application)
    try:
        with LogCapture() as logs:
            answers = await deferToThread(
                rawSession, port.getHost().port, [b"EHLO x\r\n", b"STARTTLS\r\n"], 5
            )
        assert answers[-1] == b"" and application.built == []
        assert "no TLS after smtp STARTTLS: cannot start TLS with" in logs.text()
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_server_applies_handshake_timeout_after_the_upgrade(pki: PKI) -> None:
    application = Counting()
    port = await listenStartTLS(pki, "smtp", application, ":handshakeTimeout=0.5")
    try:
        with LogCapture() as logs:
            # EHLO, STARTTLS, then no ClientHello: closed by handshakeTimeout (not the 300 s of the exchange).
            answers = await deferToThread(
                rawSession, port.getHost().port, [b"EHLO x\r\n", b"STARTTLS\r\n", b""]
            )
        assert answers[2] == b"220 2.0.0 Ready to start TLS\r\n"
        assert answers[-1] == b"" and application.built == []
        assert (
            "no complete TLS handshake within 0.5 s of the smtp upgrade (handshakeTimeout=0.5)" in logs.text()
        )
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_server_caps_connections_not_yet_secured(pki: PKI) -> None:
    port = await listenStartTLS(pki, "smtp", Counting(), ":maxHandshakes=1")
    number = port.getHost().port

    def greeting(raw: Any) -> bytes:
        return bytes(raw.recv(1024))

    try:
        with LogCapture() as logs:
            first = await deferToThread(rawclients.connect, "127.0.0.1", number)
            try:
                assert (await deferToThread(greeting, first)).startswith(b"220 ")
                # A second plaintext connection while the first holds the only place: closed at once.
                assert await deferToThread(rawSession, number, []) == [b"", b""]
            finally:
                first.close()
            for _ in range(50):  # the server sees the first one leave
                answers = await deferToThread(rawSession, number, [b"QUIT\r\n"])
                if answers[0]:
                    break
            assert answers[0].startswith(b"220 ") and answers[1] == b"221 2.0.0 Bye\r\n"
        assert "maxHandshakes=1 reached" in logs.text()
    finally:
        await port.stopListening()


# --- injection and stripping, client side: a server we script ---------------


@pytest.mark.parametrize("dialect", NEGOTIATED)
@pytest_twisted.ensureDeferred
async def test_client_aborts_when_the_server_injects_after_its_go_ahead(pki: PKI, dialect: str) -> None:
    answers = list(GO_AHEAD[dialect])
    answers[-1] += INJECTED[dialect]
    greeting = answers.pop(0) if dialect in ("smtp", "imap", "pop3", "ftp") else b""
    port = await scriptedServer(greeting, answers)
    try:
        with pytest.raises(StartTLSInjectionError, match="before TLS started"):
            await connectStartTLS(pki, port.getHost().port, dialect)
    finally:
        await port.stopListening()


@pytest.mark.parametrize("dialect", NEGOTIATED)
@pytest_twisted.ensureDeferred
async def test_client_refuses_a_server_that_does_not_offer_the_upgrade(pki: PKI, dialect: str) -> None:
    answers, words = NOT_OFFERED[dialect]
    answers = list(answers)
    greeting = answers.pop(0) if dialect in ("smtp", "imap", "pop3", "ftp") else b""
    port = await scriptedServer(greeting, answers)
    try:
        with pytest.raises(StartTLSError, match=words.replace("(", r"\(").replace(")", r"\)")) as caught:
            await connectStartTLS(pki, port.getHost().port, dialect)
        assert not isinstance(caught.value, StartTLSInjectionError)
    finally:
        await port.stopListening()


# --- injection, server side: a client that pipelines after the upgrade ------


@pytest.mark.parametrize("dialect", NEGOTIATED)
@pytest_twisted.ensureDeferred
async def test_server_closes_when_a_command_is_pipelined_after_the_upgrade(pki: PKI, dialect: str) -> None:
    application = Counting()
    port = await listenStartTLS(pki, dialect, application)
    before, command, pipelined = UPGRADES[dialect]
    try:
        with LogCapture() as logs:
            answers = await deferToThread(rawSession, port.getHost().port, [*before, command + pipelined])
        # Closed, without the go-ahead and without an answer to the pipelined command.
        assert answers[-1] == b""
        assert answers[-2] == b""
        assert application.built == []
        assert "closed without processing them" in logs.text()
    finally:
        await port.stopListening()


@pytest.mark.parametrize(
    ("dialect", "before", "command", "pipelined", "shown"),
    [
        ("imap", [], b"a1 STARTTLS\r\n", b"a2 LOGIN alice s3cr3t-pw\r\n", "'a2 LOGIN' and more"),
        ("pop3", [], b"STLS\r\n", b"USER alice\r\nPASS s3cr3t-pw\r\n", "'USER' and more"),
        (
            "smtp",
            [b"EHLO x\r\n"],
            b"STARTTLS\r\n",
            b"AUTH PLAIN AGFsaWNlAHMzY3IzdC1wdw==\r\n",
            "'AUTH' and more",
        ),
    ],
)
@pytest_twisted.ensureDeferred
async def test_pipelined_credentials_stay_out_of_the_log(
    pki: PKI, dialect: str, before: list[bytes], command: bytes, pipelined: bytes, shown: str
) -> None:
    # A client that sends its password right after the upgrade command, in plaintext: the
    # server closes, and its log names the command only, never what followed it.
    port = await listenStartTLS(pki, dialect)
    try:
        with LogCapture() as logs:
            answers = await deferToThread(rawSession, port.getHost().port, [*before, command + pipelined])
        assert answers[-1] == b""
        assert f"{len(pipelined)} bytes (starting {shown}) arrived after" in logs.text()
        assert "s3cr3t" not in logs.text() and "AGFsaWNl" not in logs.text() and "alice" not in logs.text()
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_server_answers_the_protocols_refusal_before_tls(pki: PKI) -> None:
    port = await listenStartTLS(pki, "smtp")
    try:
        answers = await deferToThread(
            rawSession, port.getHost().port, [b"EHLO x\r\n", b"MAIL FROM:<a@b.test>\r\n", b"QUIT\r\n"]
        )
        assert answers[0].startswith(b"220 localhost ESMTP")
        assert answers[1] == b"250-localhost\r\n250 STARTTLS\r\n"
        assert answers[2] == b"530 5.7.0 Must issue a STARTTLS command first\r\n"
        assert answers[3:] == [b"221 2.0.0 Bye\r\n", b""]
    finally:
        await port.stopListening()


@pytest.mark.parametrize("dialect", NEGOTIATED)
@pytest_twisted.ensureDeferred
async def test_server_closes_on_plaintext_sent_after_the_go_ahead(pki: PKI, dialect: str) -> None:
    # The same command, sent in its own segment after the go-ahead arrived: the TLS layer
    # gets plaintext where the ClientHello belongs, and nothing of it reaches the application.
    application = Counting()
    port = await listenStartTLS(pki, dialect, application)
    before, command, pipelined = UPGRADES[dialect]
    try:
        with LogCapture() as logs:
            answers = await deferToThread(rawSession, port.getHost().port, [*before, command, pipelined])
        assert answers[-1] == b"" and answers[-2] == b""  # closed, no answer to the plaintext
        assert answers[-3] != b""  # the go-ahead came
        assert application.built == []
        assert "plaintext bytes" in logs.text() and "where its TLS handshake should be" in logs.text()
    finally:
        await port.stopListening()


@pytest.mark.parametrize("dialect", NEGOTIATED)
@pytest_twisted.ensureDeferred
async def test_client_aborts_on_plaintext_sent_after_the_go_ahead(pki: PKI, dialect: str) -> None:
    # The injected reply in its own segment: the server sends it when the ClientHello arrives.
    answers = [*GO_AHEAD[dialect], INJECTED[dialect]]
    greeting = answers.pop(0) if dialect in ("smtp", "imap", "pop3", "ftp") else b""
    port = await scriptedServer(greeting, answers)
    try:
        with pytest.raises(StartTLSInjectionError) as caught:
            await connectStartTLS(pki, port.getHost().port, dialect)
        injected = INJECTED[dialect]
        assert (
            f"sent {len(injected)} plaintext bytes (starting {commandOf(injected)}) after the upgrade"
            in str(caught.value)
        )
    finally:
        await port.stopListening()


@pytest.mark.parametrize("dialect", NEGOTIATED)
@pytest_twisted.ensureDeferred
async def test_starttls_client_on_an_implicit_tls_port_is_told_what_to_write(pki: PKI, dialect: str) -> None:
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}")
    try:
        with pytest.raises(StartTLSError) as caught:
            await connectStartTLS(pki, port.getHost().port, dialect, timeout=1)
        message = str(caught.value)
        assert "a port that speaks TLS from the first byte" in message
        assert "connect with tls:HOST:PORT" in message
    finally:
        await port.stopListening()


@pytest.mark.parametrize("dialect", NEGOTIATED)
@pytest_twisted.ensureDeferred
async def test_starttls_server_logs_a_client_that_starts_tls_at_once(pki: PKI, dialect: str) -> None:
    application = Counting()
    port = await listenStartTLS(pki, dialect, application)
    try:
        with LogCapture() as logs:
            answers = await deferToThread(rawSession, port.getHost().port, [clientHello()])
        assert answers[-1] == b"" and application.built == []
        assert "the client started TLS at once (implicit TLS" in logs.text()
        assert f"this port speaks STARTTLS (starttls:...:dialect={dialect})" in logs.text()
    finally:
        await port.stopListening()


# --- the line mixin with Twisted's mail protocols ---------------------------


class CountingESMTP(smtp.ESMTP):
    """Twisted's ESMTP server, counting the RSETs it answered."""

    def do_RSET(self, rest: bytes) -> None:
        self.factory.resets += 1  # type: ignore[attr-defined]
        super().do_RSET(rest)


class SafeESMTP(StartTLSLineMixin, CountingESMTP):
    pass


class SafeSender(StartTLSLineMixin, smtp.ESMTPSender):
    pass


async def esmtpServer(pki: PKI, protocol: type[smtp.ESMTP]) -> tuple[Any, Any]:
    upgrade = TLSUpgrade.forServer(f"starttls:0:certificate={pki.server_pem}:dialect=none")
    factory = Factory()
    factory.protocol = lambda: protocol(contextFactory=upgrade.creator)  # type: ignore[assignment,misc]
    factory.resets = 0  # type: ignore[attr-defined]
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    return port, factory


@pytest_twisted.ensureDeferred
async def test_twisted_esmtp_alone_processes_a_pipelined_command(pki: PKI) -> None:
    # The upstream behaviour the mixin exists for (CVE-2011-0411 class).
    port, factory = await esmtpServer(pki, CountingESMTP)
    try:
        await deferToThread(rawSession, port.getHost().port, [b"EHLO x\r\n", b"STARTTLS\r\nRSET\r\n"], 3)
        assert factory.resets == 1
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_mixin_closes_instead(pki: PKI) -> None:
    port, factory = await esmtpServer(pki, SafeESMTP)
    try:
        with LogCapture() as logs:
            answers = await deferToThread(
                rawSession, port.getHost().port, [b"EHLO x\r\n", b"STARTTLS\r\nRSET\r\n"]
            )
        assert factory.resets == 0
        assert answers[-1] == b""
        assert (
            "6 plaintext bytes (starting 'RSET') arrived after 'STARTTLS' before TLS started" in logs.text()
        )
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_mixin_stays_on_after_an_over_long_line(pki: PKI) -> None:
    """Twisted's SMTP answers "500 Line too long" and goes on: the pipelined RSET must still be refused."""
    port, factory = await esmtpServer(pki, SafeESMTP)
    try:
        with LogCapture() as logs:
            answers = await deferToThread(
                rawSession,
                port.getHost().port,
                [b"EHLO x\r\n", b"x" * (SafeESMTP.MAX_LENGTH + 600), b"STARTTLS\r\nRSET\r\n"],
            )
        assert answers[2].startswith(b"500 Line too long"), answers
        assert factory.resets == 0
        assert answers[-1] == b""
        assert "arrived after 'STARTTLS' before TLS started" in logs.text()
    finally:
        await port.stopListening()


class Literal(LineReceiver):
    """Reads "RAW n" and then n raw bytes, as IMAP reads a literal."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []
        self.exceeded: list[int] = []

    def lineReceived(self, line: bytes) -> None:
        self.seen.append(line)
        if line.startswith(b"RAW "):
            self.wanted = int(line[4:])
            self.setRawMode()

    def rawDataReceived(self, data: bytes) -> None:
        taken = data[: self.wanted]
        self.wanted -= len(taken)
        self.seen.append(b"raw:%d" % len(taken))
        if self.wanted == 0:
            self.setLineMode(data[len(taken) :])

    def lineLengthExceeded(self, line: bytes) -> None:
        self.exceeded.append(len(line))


class SafeLiteral(StartTLSLineMixin, Literal):
    pass


@pytest.mark.parametrize("protocol", [Literal, SafeLiteral])
@pytest.mark.parametrize("chunks", [1, 7, 4096], ids=lambda n: f"{n}-byte-chunks" if n > 1 else "bytewise")
def test_lines_after_raw_bytes_keep_their_order(protocol: type[Literal], chunks: int) -> None:
    """LineReceiver.setLineMode(rest) hands back bytes that came before the lines still waiting."""
    big = protocol.MAX_LENGTH + 10  # raw bytes are no line: no lineLengthExceeded for them
    data = b"RAW 3\r\nabcLINE1\r\nLINE2\r\nRAW %d\r\n" % big + b"z" * big + b"LINE3\r\n"
    receiver = protocol()
    receiver.makeConnection(StringTransport())
    for start in range(0, len(data), chunks):
        receiver.dataReceived(data[start : start + chunks])
    assert b"".join(receiver.seen).count(b"raw:") >= 2
    lines = [item for item in receiver.seen if not item.startswith(b"raw:")]
    assert lines == [b"RAW 3", b"LINE1", b"LINE2", b"RAW %d" % big, b"LINE3"]
    assert sum(int(item[4:]) for item in receiver.seen if item.startswith(b"raw:")) == 3 + big
    assert receiver.exceeded == []


class Quitting(LineReceiver):
    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def lineReceived(self, line: bytes) -> None:
        self.lines.append(line)
        if line == b"QUIT":
            self.transport.loseConnection()  # type: ignore[union-attr]


class SafeQuitting(StartTLSLineMixin, Quitting):
    pass


@pytest.mark.parametrize("protocol", [Quitting, SafeQuitting])
def test_lines_after_one_that_closes_are_not_processed(protocol: type[Quitting]) -> None:
    receiver = protocol()
    receiver.makeConnection(StringTransport())
    receiver.dataReceived(b"NOOP\r\nQUIT\r\nRSET\r\n")
    assert receiver.lines == [b"NOOP", b"QUIT"]


@pytest_twisted.ensureDeferred
async def test_mixin_lets_a_proper_upgrade_through(pki: PKI) -> None:
    port, factory = await esmtpServer(pki, SafeESMTP)
    try:
        endpoint = securesock.clientFromString(reactor, clientDescription(pki, port.getHost().port, "smtp"))
        collect = Collect()  # writes "hello": Twisted's ESMTP answers 500
        await endpoint.connect(Factory.forProtocol(lambda: collect))
        collect.transport.loseConnection()  # type: ignore[union-attr]
        await collect.done
        assert ISSLTransport.providedBy(collect.transport)
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_mixin_protects_twisteds_smtp_client(pki: PKI) -> None:
    answers = [b"250-mx\r\n250 STARTTLS\r\n", b"220 go ahead\r\n250 injected\r\n"]
    port = await scriptedServer(b"220 mx ESMTP\r\n", answers)
    upgrade = TLSUpgrade.forClient(f"tls:localhost:25:trustRoots={pki.ca_pem}")
    sent: Deferred[Any] = Deferred()
    factory = smtp.ESMTPSenderFactory(
        None,
        None,
        "a@example.test",
        ["b@example.test"],
        _Message(),
        sent,
        contextFactory=upgrade.creator,
        retries=0,
    )
    factory.protocol = SafeSender
    try:
        with LogCapture() as logs:
            # Twisted's senders report through ClientFactory hooks: connect with connectTCP.
            reactor.connectTCP("127.0.0.1", port.getHost().port, factory)  # type: ignore[attr-defined]
            with pytest.raises(smtp.SMTPConnectError):
                await sent
        assert (
            "14 plaintext bytes (starting '250 injected') arrived after '220 go ahead' before TLS started"
            in logs.text()
        )
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_twisteds_smtp_client_with_the_mixin_sends_over_tls(pki: PKI) -> None:
    from .interop.test_starttls_python import Mailbox, esmtpFactory

    mailbox = Mailbox()
    port = await listenStartTLS(pki, "smtp", esmtpFactory(mailbox))
    upgrade = TLSUpgrade.forClient(f"tls:localhost:25:trustRoots={pki.ca_pem}")
    sent: Deferred[Any] = Deferred()
    factory = smtp.ESMTPSenderFactory(
        None,
        None,
        "a@example.test",
        ["b@example.test"],
        _Message(b"Subject: x\r\n\r\nmixin\r\n"),
        sent,
        contextFactory=upgrade.creator,
        retries=0,
        requireAuthentication=False,
    )
    factory.protocol = SafeSender
    try:
        reactor.connectTCP("127.0.0.1", port.getHost().port, factory)  # type: ignore[attr-defined]
        accepted, _ = await sent
        assert accepted == 1 and b"mixin" in mailbox.messages[0]
    finally:
        await port.stopListening()


class CountingIMAP4(imap4.IMAP4Server):
    """Twisted's IMAP server, counting the NOOPs it answered."""

    def do_NOOP(self, tag: bytes) -> None:
        self.factory.noops += 1  # type: ignore[attr-defined]
        super().do_NOOP(tag)

    unauth_NOOP = (do_NOOP,)
    auth_NOOP = (do_NOOP,)


class SafeIMAP4(StartTLSLineMixin, CountingIMAP4):
    pass


async def imapServer(pki: PKI, protocol: type[imap4.IMAP4Server]) -> tuple[Any, Any]:
    upgrade = TLSUpgrade.forServer(f"starttls:0:certificate={pki.server_pem}:dialect=none")
    factory = Factory()
    factory.protocol = lambda: protocol(contextFactory=upgrade.creator)  # type: ignore[assignment,misc]
    factory.noops = 0  # type: ignore[attr-defined]
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    return port, factory


@pytest_twisted.ensureDeferred
async def test_twisted_imap4_alone_processes_a_pipelined_command(pki: PKI) -> None:
    # The same upstream flaw in IMAP4Server's STARTTLS (a LineReceiver).
    port, factory = await imapServer(pki, CountingIMAP4)
    try:
        await deferToThread(rawSession, port.getHost().port, [b"a1 STARTTLS\r\na2 NOOP\r\n"], 3)
        assert factory.noops == 1
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_mixin_closes_twisted_imap4_instead(pki: PKI) -> None:
    port, factory = await imapServer(pki, SafeIMAP4)
    try:
        with LogCapture() as logs:
            answers = await deferToThread(rawSession, port.getHost().port, [b"a1 STARTTLS\r\na2 NOOP\r\n"])
        assert factory.noops == 0
        assert answers[-1] == b""
        assert (
            "9 plaintext bytes (starting 'a2 NOOP') arrived after 'a1 STARTTLS' before TLS started"
            in logs.text()
        )
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_imaplib_through_twisted_imap4_with_the_mixin(pki: PKI) -> None:
    import imaplib
    import ssl

    port, factory = await imapServer(pki, SafeIMAP4)

    def session() -> tuple[str, str]:
        client = imaplib.IMAP4("127.0.0.1", port.getHost().port, timeout=10)
        try:
            client.starttls(ssl_context=ssl.create_default_context(cafile=pki.ca_pem))
            return client.sock.version() or "", client.noop()[0]  # type: ignore[attr-defined]
        finally:
            client.logout()

    try:
        version, noop = await deferToThread(session)
        assert (version, noop) == ("TLSv1.3", "OK") and factory.noops == 1
    finally:
        await port.stopListening()


class _Message:
    def __init__(self, data: bytes = b"") -> None:
        self.data = data

    def read(self, size: int = -1) -> bytes:
        data, self.data = self.data, b""
        return data


# --- wrong mode -------------------------------------------------------------


@pytest.mark.parametrize(
    ("dialect", "words"),
    [
        (
            "smtp",
            "looks like an SMTP server's greeting. This port probably expects STARTTLS: connect with starttls:HOST:PORT:dialect=smtp",
        ),
        (
            "imap",
            "looks like an IMAP server's greeting. This port probably expects STARTTLS: connect with starttls:HOST:PORT:dialect=imap",
        ),
        (
            "pop3",
            "looks like a POP3 server's greeting. This port probably expects STARTTLS: connect with starttls:HOST:PORT:dialect=pop3",
        ),
        (
            "ftp",
            "looks like an FTP server's greeting. This port probably expects STARTTLS: connect with starttls:HOST:PORT:dialect=ftp",
        ),
    ],
)
@pytest_twisted.ensureDeferred
async def test_tls_client_on_a_starttls_port_is_told_what_to_write(
    pki: PKI, dialect: str, words: str
) -> None:
    port = await listenStartTLS(pki, dialect)
    try:
        endpoint = securesock.clientFromString(
            reactor, f"tls:127.0.0.1:{port.getHost().port}:trustRoots={pki.ca_pem}"
        )
        with pytest.raises(TLSHandshakeError) as caught:
            await endpoint.connect(Factory.forProtocol(Collect))
        message = str(caught.value)
        assert f"127.0.0.1:{port.getHost().port} answered in plaintext, not TLS: it sent '" in message
        assert words in message
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_tls_server_answers_plain_http_with_400(pki: PKI) -> None:
    application = Counting()
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}", application)
    try:
        with LogCapture() as logs:
            answers = await deferToThread(
                rawSession, port.getHost().port, [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"]
            )
        assert answers[1].startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert answers[1].endswith(
            b"a plain HTTP request was sent to a port that speaks TLS (use https://).\n"
        )
        assert answers[-1] == b""
        assert "sent a plain HTTP request ('GET / HTTP/1.1') to this TLS port" in logs.text()
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_tls_server_logs_other_plaintext(pki: PKI) -> None:
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}")
    try:
        with LogCapture() as logs:
            answers = await deferToThread(rawSession, port.getHost().port, [b"a1 CAPABILITY\r\n"])
        assert answers[1:] == [b"", b""]
        assert (
            "sent plaintext ('a1 CAPABILITY'), which looks like an IMAP client's tagged command"
            in logs.text()
        )
        assert "listen with starttls:...:dialect=imap" in logs.text()
    finally:
        await port.stopListening()


async def _logged(logs: LogCapture, fragment: str) -> str:
    """The captured log once it holds C{fragment} (at most 5 s)."""
    for _ in range(100):
        if fragment in logs.text():
            break
        await sleep(0.05)
    return logs.text()


def _popUpgrade(port: int, cafile: str) -> str:
    """poplib's STLS with a CA that did not issue the server's certificate: the client's error."""
    import poplib
    import ssl

    client = poplib.POP3("127.0.0.1", port, timeout=10)
    try:
        client.stls(ssl.create_default_context(cafile=cafile))
    except ssl.SSLError as e:
        return str(e)
    finally:
        try:
            client.close()
        except OSError:
            pass  # poplib already closed the socket the handshake failed on
    return "upgraded"


@pytest_twisted.ensureDeferred
async def test_a_failed_upgrade_is_logged_with_the_dialects_own_command(pki: PKI) -> None:
    """poplib's STLS, then a handshake the client gives up (it does not trust the server): 'STLS', not 'STARTTLS'."""
    port = await listenStartTLS(pki, "pop3")
    try:
        with LogCapture() as logs:
            error = await deferToThread(_popUpgrade, port.getHost().port, pki.path("other-ca.pem"))
            assert "CERTIFICATE_VERIFY_FAILED" in error
            text = await _logged(logs, "no TLS after")
        assert "no TLS after pop3 STLS: " in text and "STARTTLS" not in text
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_client_leaving_before_any_upgrade_is_not_said_to_have_asked_for_one(pki: PKI) -> None:
    port = await listenStartTLS(pki, "imap")
    try:
        with LogCapture() as logs:
            answers = await deferToThread(rawSession, port.getHost().port, [], 5)
            text = await _logged(logs, "no TLS")
        assert answers[0].startswith(b"* OK")  # greeted, then the client left
        assert (
            "no TLS: 127.0.0.1:" in text
            and "closed the connection during the plaintext imap exchange" in text
        )
        assert "STARTTLS:" not in text and "no TLS after" not in text
    finally:
        await port.stopListening()
