"""
Real handshakes on loopback between securesock endpoints, Python's ssl
module and each other.
"""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.protocol import Factory
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure

import securesock
from securesock import TLSHandshakeError

from .conftest import HAVE_IPV6, PASSPHRASE, PKI, writeSelfSigned
from .peers import Collect, listen


@pytest.fixture(autouse=True)
def _quietLegacyWarnings() -> object:
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "ssl.TLSVersion.TLSv1", DeprecationWarning)
        yield


def pythonClient(
    host: str,
    port: int,
    cafile: str,
    *,
    version: ssl.TLSVersion | None = None,
    alpn: list[str] | None = None,
    cert: str | None = None,
    servername: str = "localhost",
) -> tuple[str, str, str | None]:
    """A blocking client from Python's ssl module: (version, reply, alpn)."""
    context = ssl.create_default_context(cafile=cafile)
    if version is not None:
        context.minimum_version = context.maximum_version = version
        if version < ssl.TLSVersion.TLSv1_2:
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
    if alpn:
        context.set_alpn_protocols(alpn)
    if cert:
        context.load_cert_chain(cert)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as raw:
        raw.settimeout(10)
        raw.connect((host, port))
        with context.wrap_socket(raw, server_hostname=servername) as tls:
            tls.sendall(b"hello\n")
            reply = b""
            for _ in range(100):
                chunk = tls.recv(4096)
                if not chunk:
                    break
                reply += chunk
            return tls.version() or "", reply.decode(), tls.selected_alpn_protocol()


async def clientReply(description: str) -> bytes:
    endpoint = securesock.clientFromString(reactor, description)
    protocol = Collect()
    await endpoint.connect(Factory.forProtocol(lambda: protocol))
    return await protocol.done


@pytest_twisted.ensureDeferred
async def test_ipv4_default_protocols(pki: PKI) -> None:
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}")
    try:
        version, reply, alpn = await deferToThread(pythonClient, "127.0.0.1", port.getHost().port, pki.ca_pem)
        assert version == "TLSv1.3"
        assert reply == "HELLO alpn=none\n"
    finally:
        await port.stopListening()


@pytest.mark.skipif(not HAVE_IPV6, reason="no IPv6 loopback on this machine")
@pytest_twisted.ensureDeferred
async def test_ipv6_url_form(pki: PKI) -> None:
    port = await listen(f"tls://[::1]:0?certificate={pki.server_pem}")
    try:
        version, reply, _ = await deferToThread(pythonClient, "::1", port.getHost().port, pki.ca_pem)
        assert version == "TLSv1.3" and reply.startswith("HELLO")
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_default_listens_on_both_families(pki: PKI) -> None:
    port = await listen(f"tls:0:certificate={pki.server_pem}")
    try:
        _, reply, _ = await deferToThread(pythonClient, "127.0.0.1", port.getHost().port, pki.ca_pem)
        assert reply.startswith("HELLO")
        if HAVE_IPV6:
            _, reply, _ = await deferToThread(pythonClient, "::1", port.getHost().port, pki.ca_pem)
            assert reply.startswith("HELLO")
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_host_name_interface_resolved_at_listen(pki: PKI) -> None:
    port = await listen(f"tls:0:interface=localhost:certificate={pki.server_pem}")
    try:
        _, reply, _ = await deferToThread(pythonClient, "127.0.0.1", port.getHost().port, pki.ca_pem)
        assert reply.startswith("HELLO")
    finally:
        await port.stopListening()


def _resolving(monkeypatch: pytest.MonkeyPatch, name: str, addresses: list[str]) -> None:
    """Make C{name} resolve to C{addresses} (IPv4) for getaddrinfo."""
    real = socket.getaddrinfo

    def getaddrinfo(host: str, port: int, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
        if host != name:
            return real(host, port, *args, **kwargs)  # type: ignore[arg-type]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest_twisted.ensureDeferred
async def test_host_name_addresses_share_the_port_zero_picked(monkeypatch: pytest.MonkeyPatch) -> None:
    from securesock._endpoints import _HostNameServerEndpoint

    _resolving(monkeypatch, "two.invalid", ["127.0.0.1", "127.0.0.2"])
    port = await _HostNameServerEndpoint(reactor, "two.invalid", 0, 50).listen(Factory())
    try:
        numbers = [p.getHost().port for p in port.ports]  # type: ignore[attr-defined]
        assert len(numbers) == 2 and numbers[0] != 0 and numbers[0] == numbers[1]
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_host_name_address_that_fails_leaves_none_listening(monkeypatch: pytest.MonkeyPatch) -> None:
    from twisted.internet.error import CannotListenError

    from securesock._endpoints import _HostNameServerEndpoint

    _resolving(monkeypatch, "two.invalid", ["127.0.0.1", "192.0.2.1"])  # TEST-NET-1: not ours
    factory = Factory()
    with pytest.raises(CannotListenError):
        await _HostNameServerEndpoint(reactor, "two.invalid", 0, 50).listen(factory)
    assert factory.numPorts == 0  # the port on 127.0.0.1 was stopped


@pytest_twisted.ensureDeferred
async def test_host_name_that_does_not_resolve_is_named() -> None:
    from twisted.internet.error import CannotListenError

    from securesock._endpoints import _HostNameServerEndpoint

    factory = Factory()
    with pytest.raises(CannotListenError) as caught:
        await _HostNameServerEndpoint(reactor, "no-such-name.invalid", 8443, 50).listen(factory)
    assert "interface=no-such-name.invalid does not resolve" in str(caught.value)
    assert factory.numPorts == 0


def test_host_name_resolved_before_the_reactor_runs_fails_at_once() -> None:
    """
    twistd starts its services before the reactor runs: a failure known at
    once makes twistd exit (as with Twisted's tcp:), instead of running
    without the port.
    """
    from twisted.internet.error import CannotListenError
    from twisted.internet.testing import MemoryReactor

    from securesock._endpoints import _HostNameServerEndpoint

    notRunning = MemoryReactor()
    assert not notRunning.running
    failures: list[Failure] = []
    _HostNameServerEndpoint(notRunning, "no-such-name.invalid", 8443, 50).listen(Factory()).addErrback(
        failures.append
    )
    assert len(failures) == 1 and failures[0].check(CannotListenError)
    port = _HostNameServerEndpoint(notRunning, "localhost", 8443, 50).listen(Factory())
    listened: list[object] = []
    port.addCallback(listened.append)
    assert listened and notRunning.tcpServers  # resolved and listened without the loop


@pytest_twisted.ensureDeferred
async def test_alpn_offered_to_factory_without_alpn(pki: PKI) -> None:
    """Twisted 26.4+ fails this handshake; we continue without ALPN."""
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}")
    try:
        _, reply, alpn = await deferToThread(
            pythonClient, "127.0.0.1", port.getHost().port, pki.ca_pem, alpn=["h2", "http/1.1"]
        )
        assert alpn is None and reply == "HELLO alpn=none\n"
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_alpn_configured(pki: PKI) -> None:
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}:alpn=http/1.1,h2")
    try:
        _, reply, alpn = await deferToThread(
            pythonClient, "127.0.0.1", port.getHost().port, pki.ca_pem, alpn=["h2", "http/1.1"]
        )
        assert alpn == "http/1.1" and reply == "HELLO alpn=http/1.1\n"
    finally:
        await port.stopListening()


@pytest.mark.parametrize(
    "protocols, offered, accepted",
    [
        ("TLS1_2", ssl.TLSVersion.TLSv1_2, True),
        ("TLS1_2", ssl.TLSVersion.TLSv1_3, False),
        ("TLS1_3", ssl.TLSVersion.TLSv1_3, True),
        ("TLS1_3", ssl.TLSVersion.TLSv1_2, False),
        ("TLS1+TLS1_2", ssl.TLSVersion.TLSv1, True),
        ("TLS1+TLS1_2", ssl.TLSVersion.TLSv1_1, False),
        ("TLS1+TLS1_2", ssl.TLSVersion.TLSv1_2, True),
        ("ProtocolTLS1_1", ssl.TLSVersion.TLSv1_1, True),
        ("TLSv1.2+TLSv1.3", ssl.TLSVersion.TLSv1_1, False),
    ],
)
@pytest_twisted.ensureDeferred
async def test_protocol_sets_honoured_exactly(
    pki: PKI, protocols: str, offered: ssl.TLSVersion, accepted: bool
) -> None:
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}:protocols={protocols}")
    try:
        if accepted:
            version, reply, _ = await deferToThread(
                pythonClient, "127.0.0.1", port.getHost().port, pki.ca_pem, version=offered
            )
            assert version == offered.name.replace("_", ".")
            assert reply.startswith("HELLO")
        else:
            with pytest.raises(ssl.SSLError):
                await deferToThread(
                    pythonClient, "127.0.0.1", port.getHost().port, pki.ca_pem, version=offered
                )
    finally:
        await port.stopListening()


@pytest.mark.parametrize(
    "prefix, version",
    [("tlsv1.0", "TLSv1"), ("tlsv1.1", "TLSv1.1"), ("tlsv1.2", "TLSv1.2"), ("tlsv1.3", "TLSv1.3")],
)
@pytest_twisted.ensureDeferred
async def test_version_pinned_prefixes(pki: PKI, prefix: str, version: str) -> None:
    port = await listen(f"{prefix}:0:interface=127.0.0.1:certificate={pki.server_pem}")
    try:
        reply = await clientReply(
            f"{prefix}:127.0.0.1:{port.getHost().port}:trustRoots={pki.ca_pem}:hostname=localhost"
        )
        assert reply == b"HELLO alpn=none\n"
        got, _, _ = await deferToThread(
            pythonClient,
            "127.0.0.1",
            port.getHost().port,
            pki.ca_pem,
            version=getattr(ssl.TLSVersion, version.replace(".", "_")),
        )
        assert got == version
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_client_endpoint_fires_after_verified_handshake(pki: PKI) -> None:
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}:alpn=h2")
    try:
        endpoint = securesock.clientFromString(
            reactor, f"tls:localhost:{port.getHost().port}:trustRoots={pki.ca_pem}:alpn=h2,http/1.1"
        )
        protocol = Collect()
        connected = await endpoint.connect(Factory.forProtocol(lambda: protocol))
        assert connected is protocol
        assert protocol.transport.negotiatedProtocol == b"h2"
        assert protocol.transport.getPeerCertificate() is not None
        assert await protocol.done == b"HELLO alpn=h2\n"
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_client_refuses_unknown_ca(pki: PKI) -> None:
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.stranger_pem}")
    try:
        with pytest.raises(TLSHandshakeError, match="issuer is not in the trust roots"):
            await clientReply(f"tls:localhost:{port.getHost().port}:trustRoots={pki.ca_pem}")
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_client_refuses_wrong_name(pki: PKI) -> None:
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}")
    try:
        with pytest.raises(TLSHandshakeError, match="is not valid for 'example.com'"):
            await clientReply(
                f"tls:127.0.0.1:{port.getHost().port}:trustRoots={pki.ca_pem}:hostname=example.com"
            )
        # the IP literal is in the certificate: verified without SNI
        assert (
            await clientReply(f"tls:127.0.0.1:{port.getHost().port}:trustRoots={pki.ca_pem}")
            == b"HELLO alpn=none\n"
        )
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_pins(pki: PKI) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    with open(pki.stranger_pem, "rb") as f:
        digest = x509.load_pem_x509_certificate(f.read()).fingerprint(hashes.SHA256()).hex()
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.stranger_pem}")
    try:
        where = f"tls:localhost:{port.getHost().port}"
        # pin without CA verification (PHP's peer_fingerprint with verify_peer off)
        assert await clientReply(f"{where}:verify=no:pin=sha256:{digest}") == b"HELLO alpn=none\n"
        with pytest.raises(TLSHandshakeError, match="matches none of pin="):
            await clientReply(f"{where}:verify=no:pin=sha256:{'00' * 32}")
        # pin with CA verification: the CA check still applies
        with pytest.raises(TLSHandshakeError, match="did not verify"):
            await clientReply(f"{where}:trustRoots={pki.ca_pem}:pin=sha256:{digest}")
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_client_protocol_mismatch_is_explained(pki: PKI) -> None:
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}:protocols=TLS1_3")
    try:
        with pytest.raises(TLSHandshakeError, match="TLS1_2"):
            await clientReply(f"tls:localhost:{port.getHost().port}:trustRoots={pki.ca_pem}:protocols=TLS1_2")
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_mutual_tls(pki: PKI) -> None:
    port = await listen(
        f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}:verifyClient=require:caCerts={pki.cadir}"
    )
    try:
        where = f"tls:localhost:{port.getHost().port}:trustRoots={pki.ca_pem}"
        assert await clientReply(f"{where}:certificate={pki.client_pem}") == b"HELLO alpn=none\n"
        with pytest.raises((TLSHandshakeError, ssl.SSLError, ConnectionError)):
            await deferToThread(pythonClient, "127.0.0.1", port.getHost().port, pki.ca_pem)
        with pytest.raises((TLSHandshakeError, ssl.SSLError, ConnectionError)):
            await deferToThread(
                pythonClient, "127.0.0.1", port.getHost().port, pki.ca_pem, cert=pki.stranger_pem
            )
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_optional_client_certificate(pki: PKI) -> None:
    port = await listen(
        f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}:verifyClient=optional:caCerts={pki.ca_pem}"
    )
    try:
        _, reply, _ = await deferToThread(pythonClient, "127.0.0.1", port.getHost().port, pki.ca_pem)
        assert reply.startswith("HELLO")
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_identity_variants(pki: PKI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECURESOCK_TEST_PASS", PASSPHRASE.decode())
    for identity in (
        f"privateKey={pki.server_key}:certKey={pki.server_crt}",
        f"certificate={pki.server_crt}:privateKey={pki.encrypted_key}:passphrase=env:SECURESOCK_TEST_PASS",
        f"certificate={pki.server_crt}:privateKey={pki.encrypted_key}:passphrase=file:{pki.passphrase_txt}",
        f"certificate={pki.server_p12}:passphrase=env:SECURESOCK_TEST_PASS",
        f"certificate={pki.chained_crt}:privateKey={pki.chained_key}:extraCertChain={pki.intermediate_pem}",
        f"certificate={pki.chained_pem}",
    ):
        port = await listen(f"tls:0:interface=127.0.0.1:{identity}")
        try:
            _, reply, _ = await deferToThread(pythonClient, "127.0.0.1", port.getHost().port, pki.ca_pem)
            assert reply.startswith("HELLO"), identity
        finally:
            await port.stopListening()


@pytest.mark.parametrize(
    ("server", "client"),
    [
        (
            "tls://?endpoint=unix:{path}&certificate={cert}&port=0",
            "tls://localhost:1?endpoint=unix:{path}&trustRoots={ca}",
        ),
        # with endpoint= the port may be left out; host is still the name verified
        (
            "tls:endpoint=unix\\:{path}:certificate={cert}",
            "tls:host=localhost:endpoint=unix\\:{path}:trustRoots={ca}",
        ),
    ],
)
@pytest_twisted.ensureDeferred
async def test_endpoint_option_wraps_unix_socket(
    pki: PKI, tmp_path: os.PathLike[str], server: str, client: str
) -> None:
    names = {"path": os.path.join(str(tmp_path), "tls.sock"), "cert": pki.server_pem, "ca": pki.ca_pem}
    port = await listen(server.format(**names))
    try:
        reply = await clientReply(client.format(**names))
        assert reply == b"HELLO alpn=none\n"
    finally:
        await port.stopListening()


def test_systemd_socket_not_passed_is_explained(pki: PKI) -> None:
    from twisted.internet import reactor

    with pytest.raises(securesock.DescriptionError) as caught:
        securesock.serverFromString(
            reactor, f"tls:endpoint=systemd\\:domain=INET\\:index=7:certificate={pki.server_pem}"
        )
    assert "systemd passed this process no such socket" in str(caught.value)
    assert caught.value.option == "endpoint"


@pytest_twisted.ensureDeferred
async def test_verify_no_connects_and_warns(pki: PKI) -> None:
    from twisted.logger import globalLogPublisher

    seen: list[str] = []

    def observer(event: dict) -> None:  # type: ignore[type-arg]
        if "verify=no" in str(event.get("log_format", "")):
            seen.append(event["log_format"])

    globalLogPublisher.addObserver(observer)
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.stranger_pem}")
    try:
        where = f"tls:localhost:{port.getHost().port}:verify=no"
        assert await clientReply(where) == b"HELLO alpn=none\n"
        assert await clientReply(where) == b"HELLO alpn=none\n"
        assert len(seen) == 2
    finally:
        globalLogPublisher.removeObserver(observer)
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_no_delay_set_on_accepted_connections(pki: PKI) -> None:
    from twisted.internet.protocol import Protocol

    seen: list[bool] = []

    class Probe(Protocol):
        def connectionMade(self) -> None:
            seen.append(bool(self.transport.getTcpNoDelay()))
            self.transport.loseConnection()

    for option, expected in (("", True), (":noDelay=no", False)):
        port = await listen(
            f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}{option}", Factory.forProtocol(Probe)
        )
        try:
            # The probe closes at once, so the client may or may not see an error.
            await deferToThread(pythonClient, "127.0.0.1", port.getHost().port, pki.ca_pem)
        except (ssl.SSLError, OSError):
            pass
        finally:
            await port.stopListening()
        assert seen == [True, False][: len(seen)] and seen[-1] is expected


def test_certificate_openssl_refuses_is_a_certificate_error(tmp_path: os.PathLike[str]) -> None:
    """An RSA-1024 certificate: OpenSSL's security level refuses it; the user hears why, not an SSL.Error."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    path = writeSelfSigned(Path(tmp_path) / "weak.pem", key, hashes.SHA256())
    with pytest.raises(securesock.CertificateError) as caught:
        securesock.serverFromString(reactor, f"tls:0:certificate={path}")
    assert "OpenSSL refuses the certificate from" in str(caught.value)
    assert "ee key too small" in str(caught.value)
    assert caught.value.option == "certificate"


def test_twisted_directory_form_with_a_host_name_is_explained() -> None:
    """tls:HOST:PORT given to serverFromString is Twisted's tls:DIRECTORY:PORT: say so, and what to write."""
    with pytest.raises(securesock.CertificateError) as caught:
        securesock.serverFromString(reactor, "tls:no-such-directory.example:443")
    message = str(caught.value)
    assert "read as Twisted's tls:DIRECTORY:PORT form" in message
    assert "'no-such-directory.example' is not a directory" in message
    assert "tls:443:certificate=FILE-OR-NAME" in message and "clientFromString" in message


@pytest_twisted.ensureDeferred
async def test_client_gives_up_on_a_server_that_never_answers_the_handshake(pki: PKI) -> None:
    """
    A server that accepts TCP and says nothing (a plaintext service waiting
    for its client to speak first) fails the connection after timeout=,
    instead of leaving connect() waiting forever.
    """
    import time

    from twisted.internet.protocol import Protocol

    silent = await securesock.serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
        Factory.forProtocol(Protocol)
    )
    number = silent.getHost().port
    endpoint = securesock.clientFromString(
        reactor, f"tls:127.0.0.1:{number}:trustRoots={pki.ca_pem}:timeout=0.5"
    )
    started = time.monotonic()
    try:
        with pytest.raises(TLSHandshakeError) as raised:
            await endpoint.connect(Factory.forProtocol(Protocol))
    finally:
        await silent.stopListening()
    elapsed = time.monotonic() - started
    assert 0.4 < elapsed < 5, elapsed
    assert str(raised.value) == (
        f"127.0.0.1:{number} accepted the connection but did not complete the TLS "
        "handshake within 0.5 s (timeout=0.5): it may not speak TLS on this port, or it waits for the "
        "client to speak first in plaintext"
    )


@pytest_twisted.ensureDeferred
async def test_the_handshake_deadline_is_cancelled_once_connected(pki: PKI) -> None:
    """A connection made well within timeout= outlives it."""
    from twisted.internet.protocol import Protocol
    from twisted.internet.task import deferLater

    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}")
    try:
        endpoint = securesock.clientFromString(
            reactor, f"tls:localhost:{port.getHost().port}:trustRoots={pki.ca_pem}:timeout=0.3"
        )
        protocol = await endpoint.connect(Factory.forProtocol(Protocol))
        await deferLater(reactor, 0.6, lambda: None)
        assert protocol.transport.connected  # type: ignore[union-attr]
        protocol.transport.loseConnection()  # type: ignore[union-attr]
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_tls_1_2_client_meeting_a_tls_1_0_server_hears_about_versions(pki: PKI) -> None:
    """
    The server picks TLS 1.0, finds none of the client's TLS 1.2 suites usable there and
    answers handshake_failure before any ServerHello: the versions may be at fault, not a
    client certificate.
    """
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}:protocols=TLS1")
    try:
        with pytest.raises(TLSHandshakeError) as raised:
            await clientReply(f"tls:localhost:{port.getHost().port}:trustRoots={pki.ca_pem}:protocols=TLS1_2")
    finally:
        await port.stopListening()
    message = str(raised.value)
    assert "handshake failure" in message, message
    assert message.endswith(
        "(no cipher suite or key type in common, or the peer accepts none of the versions we offered (TLS1_2))"
    )
    assert "client certificate" not in message


@pytest_twisted.ensureDeferred
async def test_a_missing_client_certificate_under_tls_1_2_is_still_named(pki: PKI) -> None:
    """handshake_failure after the ServerHello: the server wanted a client certificate."""
    port = await listen(
        f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}:verifyClient=require:caCerts={pki.ca_pem}"
    )
    try:
        with pytest.raises(TLSHandshakeError) as raised:
            await clientReply(f"tls:localhost:{port.getHost().port}:trustRoots={pki.ca_pem}:protocols=TLS1_2")
    finally:
        await port.stopListening()
    message = str(raised.value)
    assert message.endswith(
        "(no cipher suite or key type in common, or the server requires a client certificate and got none)"
    ), message


@pytest_twisted.ensureDeferred
async def test_an_sslv2_format_client_hello_is_named_in_the_log(pki: PKI, logLines: object) -> None:
    """A very old client's SSL 2.0-format hello (offering TLS 1.0) is not called plaintext."""
    import time

    from twisted.internet.task import deferLater

    from . import rawclients
    from .logcapture import LogLines
    from .test_wrongmode import sslv2FormatHello

    assert isinstance(logLines, LogLines)
    port = await listen(
        f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}:protocols=TLS1+TLS1_2+TLS1_3"
    )

    def send() -> tuple[int, bytes]:
        with rawclients.connect("127.0.0.1", port.getHost().port, sslv2FormatHello(b"\x03\x01")) as raw:
            raw.settimeout(5)
            return raw.getsockname()[1], raw.recv(100)

    try:
        local, answer = await deferToThread(send)
        deadline = time.monotonic() + 5
        while not logLines.about(local) and time.monotonic() < deadline:
            await deferLater(reactor, 0.02, lambda: None)
    finally:
        await port.stopListening()
    assert answer == b""  # closed, nothing sent
    lines = logLines.about(local)
    assert len(lines) == 1, lines
    assert "sent an SSL 2.0-format (SSLv2-compatible) ClientHello offering up to TLS 1.0" in lines[0]
    assert "plain TCP" not in lines[0]


def test_handshake_failure_when_the_server_hello_is_not_known(pki: PKI) -> None:
    """
    STARTTLS upgrades keep no server bytes: a real TLS 1.2 client's failure
    against a TLS 1.0-only server (in memory) names every possible cause.
    """
    from OpenSSL import SSL

    from securesock._context import INTERMEDIATE_CIPHERS
    from securesock._handshake import handshakeError
    from securesock._rehearsal import moveAll

    def context(version: int, ciphers: bytes) -> SSL.Context:
        made = SSL.Context(SSL.TLS_METHOD)
        made.set_min_proto_version(version)
        made.set_max_proto_version(version)
        made.set_cipher_list(ciphers)
        return made

    serving = context(SSL.TLS1_VERSION, b"ALL:@SECLEVEL=0")
    serving.use_certificate_chain_file(pki.server_pem)
    serving.use_privatekey_file(pki.server_pem)
    server = SSL.Connection(serving, None)
    server.set_accept_state()
    client = SSL.Connection(context(SSL.TLS1_2_VERSION, INTERMEDIATE_CIPHERS.encode()), None)
    client.set_connect_state()
    failure = None
    for _ in range(4):
        for connection in (client, server):
            try:
                connection.do_handshake()
            except SSL.WantReadError:
                pass
            except SSL.Error as e:
                if connection is client:
                    failure = Failure(e)
        if failure is not None:
            break
        moveAll(client, server)
        moveAll(server, client)
    assert failure is not None
    message = str(handshakeError(failure, "mail.example:25", "TLS1_2"))
    assert message == (
        "TLS handshake with mail.example:25 failed: tls alert handshake failure (no cipher suite or key type "
        "in common, the peer accepts none of the versions we offered (TLS1_2), or the server requires a "
        "client certificate and got none)"
    )
