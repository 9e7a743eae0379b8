"""
securesock against OpenSSL's own command-line peers, programs we did not
write: C{openssl s_client} against our servers (versions, holes, ALPN, IPv4
and IPv6), and our client endpoint against C{openssl s_server}.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThread

import securesock
from securesock import ProtocolUnavailableError, TLSHandshakeError
from securesock._protocols import opensslBuild

from ..conftest import HAVE_IPV6, PKI, requireTool
from ..peers import Background, listen, run

pytestmark = pytest.mark.interop

VERSION_FLAGS = {"TLSv1": "-tls1", "TLSv1.1": "-tls1_1", "TLSv1.2": "-tls1_2", "TLSv1.3": "-tls1_3"}
LEGACY = ("-cipher", "DEFAULT:@SECLEVEL=0")  # OpenSSL 3 clients refuse TLS 1.0/1.1 above level 0


async def sClient(
    pki: PKI,
    port: int,
    *extra: str,
    host: str = "127.0.0.1",
    brief: bool = True,
    data: bytes = b"hello\n",
) -> subprocess.CompletedProcess[bytes]:
    """openssl s_client with the flags that make its exit status mean something."""
    openssl = requireTool("openssl")
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    args = [openssl, "s_client", "-connect", address, "-verify_return_error"]
    args += ["-CAfile", pki.ca_pem, "-servername", "localhost", "-verify_hostname", "localhost"]
    args += ["-ign_eof", *(["-brief"] if brief else []), *extra]
    return await run(args, input=data, timeout=20)


def negotiated(result: subprocess.CompletedProcess[bytes]) -> str | None:
    """The 'Protocol version:' line of s_client -brief, or None."""
    found = re.search(r"^Protocol version: (\S+)$", result.stderr.decode(errors="replace"), re.M)
    return found.group(1) if found else None


def assertSession(result: subprocess.CompletedProcess[bytes], version: str, reply: str) -> None:
    err = result.stderr.decode(errors="replace")
    assert result.returncode == 0, err
    assert "Verification: OK" in err, err
    assert negotiated(result) == version, err
    assert result.stdout.decode() == reply


def assertRefused(result: subprocess.CompletedProcess[bytes]) -> None:
    err = result.stderr.decode(errors="replace")
    assert result.returncode != 0, err
    assert negotiated(result) is None, err
    assert "CONNECTION ESTABLISHED" not in err and "New, TLS" not in err, err
    assert b"HELLO" not in result.stdout


def versionArgs(version: str) -> Sequence[str]:
    return (VERSION_FLAGS[version], *(LEGACY if version in ("TLSv1", "TLSv1.1") else ()))


@pytest_twisted.ensureDeferred
async def test_ipv4_default(pki: PKI) -> None:
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}")
    try:
        assertSession(await sClient(pki, port.getHost().port), "TLSv1.3", "HELLO alpn=none\n")
    finally:
        await port.stopListening()


@pytest.mark.skipif(not HAVE_IPV6, reason="no IPv6 loopback on this machine")
@pytest.mark.parametrize(
    "form", ["tls://[::1]:0?certificate={cert}", r"tls:0:interface=\:\:1:certificate={cert}"]
)
@pytest_twisted.ensureDeferred
async def test_ipv6(pki: PKI, form: str) -> None:
    port = await listen(form.format(cert=pki.server_pem))
    try:
        assert port.getHost().host == "::1"
        result = await sClient(pki, port.getHost().port, host="::1")
        assertSession(result, "TLSv1.3", "HELLO alpn=none\n")
        result = await sClient(pki, port.getHost().port, "-tls1_2", host="::1")
        assertSession(result, "TLSv1.2", "HELLO alpn=none\n")
    finally:
        await port.stopListening()


ALL = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")


@pytest.mark.parametrize(
    "description, accepted",
    [
        ("tls:0:{where}", ("TLSv1.2", "TLSv1.3")),
        ("tls:0:{where}:protocols=TLS1_2+TLS1_3", ("TLSv1.2", "TLSv1.3")),
        ("tls:0:{where}:protocols=TLS1+TLS1_2", ("TLSv1", "TLSv1.2")),
        ("tls:0:{where}:protocols=TLS1", ("TLSv1",)),
        ("tls:0:{where}:protocols=ProtocolTLS1_1", ("TLSv1.1",)),
        ("tls:0:{where}:protocols=TLSv1.2", ("TLSv1.2",)),
        ("tls:0:{where}:protocols=tls1_3", ("TLSv1.3",)),
        ("tls:0:{where}:protocols=TLS1+TLS1_1+TLS1_2+TLS1_3", ALL),
        ("tlsv1.0:0:{where}", ("TLSv1",)),
        ("tlsv1.1:0:{where}", ("TLSv1.1",)),
        ("tlsv1.2:0:{where}", ("TLSv1.2",)),
        ("tlsv1.3:0:{where}", ("TLSv1.3",)),
    ],
)
@pytest_twisted.ensureDeferred
async def test_protocol_flags(pki: PKI, description: str, accepted: tuple[str, ...]) -> None:
    """Each version s_client can pin is accepted exactly when the flags name it."""
    where = f"interface=127.0.0.1:certificate={pki.server_pem}"
    port = await listen(description.format(where=where))
    try:
        for version in ALL:
            result = await sClient(pki, port.getHost().port, *versionArgs(version))
            if version in accepted:
                assertSession(result, version, "HELLO alpn=none\n")
            else:
                assertRefused(result)
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_hole_is_kept(pki: PKI) -> None:
    """
    A client offering TLS 1.0 and 1.1: TLS1+TLS1_1+TLS1_2 picks 1.1, while
    TLS1+TLS1_2 (1.1 is a hole, not merely above the minimum) answers 1.0 with
    RFC 8446's downgrade marker, which the client, able to do 1.1, rejects.
    """
    holed = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}:protocols=TLS1+TLS1_2")
    whole = await listen(
        f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}:protocols=TLS1+TLS1_1+TLS1_2"
    )
    try:
        offer = ("-no_tls1_2", "-no_tls1_3", *LEGACY)
        assertSession(await sClient(pki, whole.getHost().port, *offer), "TLSv1.1", "HELLO alpn=none\n")
        result = await sClient(pki, holed.getHost().port, *offer)
        assertRefused(result)
        assert "inappropriate fallback" in result.stderr.decode(errors="replace")
        # and offering everything, the highest allowed version wins
        assertSession(await sClient(pki, holed.getHost().port, *LEGACY), "TLSv1.2", "HELLO alpn=none\n")
    finally:
        await holed.stopListening()
        await whole.stopListening()


@pytest.mark.parametrize(
    "description, version",
    [
        ("tls:0:certificate={cert}:protocols=SSL3", "SSL3"),
        ("tls:0:certificate={cert}:protocols=SSL3+TLS1_2", "SSL3"),
        ("sslv3:0:certificate={cert}", "SSL3"),
        ("sslv2:0:certificate={cert}", "SSL2"),
        ("tls:0:certificate={cert}:protocols=SSL2", "SSL2"),
        ("tls:0:certificate={cert}:sslmethod=SSLv3_METHOD", "SSL3"),
    ],
)
def test_unavailable_versions_are_refused(pki: PKI, description: str, version: str) -> None:
    with pytest.raises(ProtocolUnavailableError) as caught:
        securesock.serverFromString(reactor, description.format(cert=pki.server_pem))
    message = str(caught.value)
    assert version in message
    assert {"SSL3": "SSLv3", "SSL2": "SSLv2"}[version] in message
    assert opensslBuild() in message
    assert caught.value.option == ("sslmethod" if "sslmethod=" in description else "protocols")


@pytest.mark.parametrize("prefix, version", [("sslv3", "SSL3"), ("sslv2", "SSL2")])
def test_unavailable_versions_refused_for_clients(pki: PKI, prefix: str, version: str) -> None:
    with pytest.raises(ProtocolUnavailableError, match=f"{version}.*{re.escape(opensslBuild())}"):
        securesock.clientFromString(reactor, f"{prefix}:localhost:443:trustRoots={pki.ca_pem}")


# -brief does not print the ALPN result: these two read s_client's full report.


@pytest_twisted.ensureDeferred
async def test_alpn_offer_to_factory_without_alpn(pki: PKI) -> None:
    """The pitfall: a client offering ALPN to a server that has none must still connect."""
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}")
    try:
        result = await sClient(pki, port.getHost().port, "-alpn", "h2,http/1.1", brief=False)
        err = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
        assert result.returncode == 0, err
        assert "No ALPN negotiated" in err
        assert "HELLO alpn=none\n" in result.stdout.decode()
    finally:
        await port.stopListening()


@pytest.mark.parametrize(
    "alpn, offer, chosen",
    [("h2", "h2,http/1.1", "h2"), ("http/1.1,h2", "h2,http/1.1", "http/1.1"), ("http/1.1", "h2", None)],
)
@pytest_twisted.ensureDeferred
async def test_alpn_configured(pki: PKI, alpn: str, offer: str, chosen: str | None) -> None:
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}:alpn={alpn}")
    try:
        result = await sClient(pki, port.getHost().port, "-alpn", offer, brief=False)
        out = result.stdout.decode(errors="replace")
        assert result.returncode == 0, result.stderr.decode(errors="replace")
        if chosen is None:  # no overlap: no ALPN, as nginx does, rather than a failed handshake
            assert "No ALPN negotiated" in out
        else:
            assert f"ALPN protocol: {chosen}\n" in out
        assert f"HELLO alpn={chosen or 'none'}\n" in out
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_s_client_certificate(pki: PKI) -> None:
    port = await listen(
        f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}:verifyClient=require:caCerts={pki.ca_pem}"
    )
    try:
        mine = ("-cert", pki.client_pem, "-key", pki.client_pem)
        assertSession(await sClient(pki, port.getHost().port, *mine), "TLSv1.3", "HELLO alpn=none\n")
        assertSession(
            await sClient(pki, port.getHost().port, "-tls1_2", *mine), "TLSv1.2", "HELLO alpn=none\n"
        )
        # TLS 1.2: the server refuses during the handshake
        assertRefused(await sClient(pki, port.getHost().port, "-tls1_2"))
        # TLS 1.3: the client's handshake ends first, then the server's alert arrives
        result = await sClient(pki, port.getHost().port)
        assert b"HELLO" not in result.stdout
        assert "certificate required" in result.stderr.decode(errors="replace")
    finally:
        await port.stopListening()


# --- our client endpoint against openssl s_server ---------------------------


class HTTPGet(Protocol):
    """Sends an HTTP/1.0 request for / and collects the reply until the server closes."""

    def __init__(self) -> None:
        self.received = b""
        self.done: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(b"GET / HTTP/1.0\r\n\r\n")

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        self.done.callback(self.received)


async def sServer(pki: PKI, tmp_path: Path, *extra: str, host: str = "127.0.0.1") -> tuple[Background, int]:
    """openssl s_server -www on a port it picks; returns it and the port."""
    openssl = requireTool("openssl")
    accept = f"[{host}]:0" if ":" in host else f"{host}:0"
    server = Background(
        [openssl, "s_server", "-accept", accept, "-www", *extra],
        output=str(tmp_path / f"s_server-{len(list(tmp_path.iterdir()))}.log"),
    )
    try:
        found = await deferToThread(server.waitFor, r"^ACCEPT .*:(\d+)$", 10)
    except BaseException:
        server.stop()
        raise
    return server, int(found.group(1))


async def fetch(description: str) -> str:
    endpoint = securesock.clientFromString(reactor, description)
    protocol = HTTPGet()
    await endpoint.connect(Factory.forProtocol(lambda: protocol))
    return (await protocol.done).decode("utf-8", "replace")


def identity(pki: PKI, name: str = "server_pem") -> tuple[str, ...]:
    path = getattr(pki, name)
    return ("-cert", path, "-key", path)


@pytest.mark.parametrize(
    "flags, protocols, version",
    [((), "", "TLSv1.3"), (("-tls1_2",), "", "TLSv1.2"), ((), ":protocols=TLS1_2", "TLSv1.2")],
)
@pytest_twisted.ensureDeferred
async def test_client_against_s_server(
    pki: PKI, tmp_path: Path, flags: tuple[str, ...], protocols: str, version: str
) -> None:
    server, port = await sServer(pki, tmp_path, *identity(pki), *flags)
    try:
        page = await fetch(f"tls:localhost:{port}:trustRoots={pki.ca_pem}{protocols}")
        assert page.startswith("HTTP/1.0 200 ok"), page
        assert re.search(rf"^\s*Protocol\s*: {re.escape(version)}$", page, re.M), page
        assert f"New, {version}, Cipher is" in page
        assert "no client certificate available" in page
    finally:
        server.stop()


@pytest.mark.skipif(not HAVE_IPV6, reason="no IPv6 loopback on this machine")
@pytest_twisted.ensureDeferred
async def test_client_against_s_server_ipv6(pki: PKI, tmp_path: Path) -> None:
    server, port = await sServer(pki, tmp_path, *identity(pki), host="::1")
    try:
        # the certificate holds the IP address ::1: verified by address, without SNI
        page = await fetch(f"tls://[::1]:{port}?trustRoots={pki.ca_pem}")
        assert "Protocol  : TLSv1.3" in page, page
        page = await fetch(rf"tls:host=\:\:1:port={port}:trustRoots={pki.ca_pem}:hostname=localhost")
        assert "Protocol  : TLSv1.3" in page, page
    finally:
        server.stop()


@pytest_twisted.ensureDeferred
async def test_client_refuses_stranger_s_server(pki: PKI, tmp_path: Path) -> None:
    server, port = await sServer(pki, tmp_path, *identity(pki, "stranger_pem"))
    try:
        with pytest.raises(TLSHandshakeError) as caught:
            await fetch(f"tls:localhost:{port}:trustRoots={pki.ca_pem}")
        message = str(caught.value)
        assert "the certificate of localhost did not verify" in message
        assert "the issuer is not in the trust roots" in message
        # the server saw no request: the client sent nothing before verification
        assert "GET /" not in server.text()
    finally:
        server.stop()


@pytest.mark.parametrize(
    "serverFlag, clientProtocols",
    [("-tls1_3", "TLS1_2"), ("-tls1_2", "TLS1_3"), ("-tls1_2", "TLS1+TLS1_1")],
)
@pytest_twisted.ensureDeferred
async def test_client_version_mismatch_with_s_server(
    pki: PKI, tmp_path: Path, serverFlag: str, clientProtocols: str
) -> None:
    server, port = await sServer(pki, tmp_path, *identity(pki), serverFlag)
    try:
        with pytest.raises(TLSHandshakeError) as caught:
            await fetch(f"tls:localhost:{port}:trustRoots={pki.ca_pem}:protocols={clientProtocols}")
        message = str(caught.value)
        assert f"we offered {clientProtocols}" in message
        assert "version" in message
    finally:
        server.stop()


@pytest_twisted.ensureDeferred
async def test_client_certificate_seen_by_s_server(pki: PKI, tmp_path: Path) -> None:
    server, port = await sServer(pki, tmp_path, *identity(pki), "-Verify", "1", "-CAfile", pki.ca_pem)
    try:
        where = f"tls:localhost:{port}:trustRoots={pki.ca_pem}"
        for protocols in ("TLS1_3", "TLS1_2"):
            page = await fetch(f"{where}:certificate={pki.client_pem}:protocols={protocols}")
            assert "Client certificate" in page, page
            assert re.search(r"Subject: ?CN ?= ?test client", page), page
            assert "no client certificate available" not in page
        # without one, s_server (-Verify: required) serves nothing
        with pytest.raises(TLSHandshakeError, match="requires a client certificate and got none"):
            await fetch(f"{where}:protocols=TLS1_2")
        try:
            page = await fetch(where)  # TLS 1.3: refused after our side of the handshake
        except TLSHandshakeError:
            page = ""
        assert "200 ok" not in page and "Client certificate" not in page
    finally:
        server.stop()
