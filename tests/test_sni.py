"""
SNI: certificate=a,b answers each client with the certificate it asks for,
the first to clients that send no name; sniStrict=yes refuses unknown names
with an unrecognized_name alert.  Checked with Python's ssl module and
openssl s_client, and for Twisted's tls:DIRECTORY:PORT form.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from securesock._reload import Renewal

from .conftest import requireTool
from .peers import listen, run
from .starttlspeers import LogCapture, sleep
from .storekit import StoreKit, peerCertificate, sha1


@pytest.fixture
def kit(tmp_path: Path) -> StoreKit:
    kit = StoreKit(tmp_path / "store")
    kit.addCA("root-ca.pem")
    return kit


async def subject(port: int, kit: StoreKit, name: str | None) -> str:
    certificate, _, _ = await deferToThread(peerCertificate, port, kit.caFile, name)
    return str(certificate.subject.rfc4514_string())


async def sClient(port: int, kit: StoreKit, *args: str) -> str:
    requireTool("openssl")
    result = await run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", kit.caFile, *args],
        input=b"",
        timeout=20,
    )
    return (result.stdout + result.stderr).decode(errors="replace")


async def sClientTalking(port: int, kit: StoreKit, *args: str) -> str:
    """s_client that sends a line and reads to the end: a TLS 1.3 session's tickets come after the handshake."""
    requireTool("openssl")
    result = await run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", kit.caFile, "-ign_eof", *args],
        input=b"hello\n",
        timeout=20,
    )
    return (result.stdout + result.stderr).decode(errors="replace")


@pytest_twisted.ensureDeferred
async def test_several_names_python_ssl(kit: StoreKit) -> None:
    kit.add("a.pem", ["a.example"], commonName="A")
    kit.add("b.pem", ["b.example", "www.b.example"], commonName="B")
    kit.add("wild.pem", ["*.wild.example"], commonName="W")
    port = await listen(f"tls:0:interface=127.0.0.1:certificate=a.example,b,wild:store={kit.root}")
    number = port.getHost().port
    try:
        assert await subject(number, kit, "a.example") == "CN=A"
        assert await subject(number, kit, "b.example") == "CN=B"
        assert await subject(number, kit, "WWW.B.example") == "CN=B"
        assert await subject(number, kit, "x.wild.example") == "CN=W"
        assert await subject(number, kit, None) == "CN=A"  # no SNI: the first
        with pytest.raises(ssl.SSLCertVerificationError):  # unknown: the first, which does not fit
            await subject(number, kit, "c.example")
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_several_names_openssl_s_client(kit: StoreKit) -> None:
    kit.add("a.pem", ["a.example"], commonName="A")
    kit.add("b.pem", ["b.example"], commonName="B")
    port = await listen(f"tls:0:interface=127.0.0.1:certificate=a,b:store={kit.root}")
    number = port.getHost().port
    try:
        for name, expected in (("a.example", "CN=A"), ("b.example", "CN=B")):
            output = await sClient(number, kit, "-servername", name, "-verify_hostname", name)
            assert f"subject={expected.replace('=', ' = ')}" in output or f"subject={expected}" in output
            assert "Verify return code: 0 (ok)" in output
        output = await sClient(number, kit, "-noservername")
        assert "CN = A" in output or "CN=A" in output
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_strict_refuses_unknown_names(kit: StoreKit) -> None:
    kit.add("a.pem", ["a.example"], commonName="A")
    kit.add("b.pem", ["b.example"], commonName="B")
    port = await listen(f"tls:0:interface=127.0.0.1:certificate=a,b:sniStrict=yes:store={kit.root}")
    number = port.getHost().port
    try:
        with LogCapture() as logs:
            with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
                await subject(number, kit, "c.example")
            for _ in range(100):  # logged when the server sees the connection end
                if "handshake failed" in logs.text():
                    break
                await sleep(0.02)
        # The reason, in the one line of the failed handshake (not OpenSSL's "callback failed").
        assert (
            "the client asked for the server name c.example, which no certificate serves (sniStrict=yes)"
            in (logs.text())
        )
        output = await sClient(number, kit, "-servername", "c.example")
        assert "unrecognized name" in output and "alert number 112" in output
        assert await subject(number, kit, "b.example") == "CN=B"
        assert await subject(number, kit, None) == "CN=A"  # no name at all: still the first
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_several_thumbprints(kit: StoreKit) -> None:
    a = kit.add("a.pem", ["a.example"], commonName="A")
    b = kit.add("b.pem", ["b.example"], commonName="B")
    port = await listen(
        f"tls:0:interface=127.0.0.1:certificateHash={sha1(b.certificate)},{sha1(a.certificate)}:store={kit.root}"
    )
    number = port.getHost().port
    try:
        assert await subject(number, kit, "a.example") == "CN=A"
        assert await subject(number, kit, None) == "CN=B"
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_twisted_directory_form_serves_every_entry(
    kit: StoreKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tls:DIRECTORY:PORT, as Twisted's own tls: server; new files are served without a restart."""
    monkeypatch.setattr(Renewal, "interval", 0.0)
    kit.add("a.pem", ["a.example"], commonName="A")
    kit.add("b.pem", ["b.example"], commonName="B")
    kit.add("nokey.pem", ["nokey.example"], key=False)
    port: Any = await listen(f"tls:{kit.root}:0:interface=127.0.0.1")
    number = port.getHost().port
    try:
        assert await subject(number, kit, "a.example") == "CN=A"
        assert await subject(number, kit, "b.example") == "CN=B"
        kit.add("c.pem", ["c.example"], commonName="C")
        assert await subject(number, kit, "c.example") == "CN=C"
    finally:
        await port.stopListening()


def test_directory_form_parsing() -> None:
    from securesock import DescriptionError
    from securesock._description import parseServer

    options: Any = parseServer("tls:/etc/certs:8443:10:127.0.0.1")
    assert (options.port, options.backlog, options.interface) == (8443, 10, "127.0.0.1")
    assert options.policy.store == "/etc/certs" and options.policy.identity.everyEntry
    named: Any = parseServer("tls:/etc/certs:8443:certificate=a.example,b.example")
    assert named.policy.store == "/etc/certs" and not named.policy.identity.everyEntry
    with pytest.raises(DescriptionError, match="already names the certificate store"):
        parseServer("tls:/etc/certs:8443:store=/other")
    with pytest.raises(DescriptionError, match="port='eighty'"):
        parseServer("tls:eighty:certificate=a")


def test_directory_without_usable_certificates(kit: StoreKit) -> None:
    from twisted.internet import reactor

    import securesock

    kit.add("nokey.pem", ["nokey.example"], key=False)
    with pytest.raises(securesock.CertificateError, match="holds no currently valid certificate"):
        securesock.serverFromString(reactor, f"tls:{kit.root}:0")
    with pytest.raises(securesock.CertificateError, match="is not a directory"):
        securesock.serverFromString(reactor, f"tls:{kit.root / 'missing'}:0")


async def sessionSaved(port: int, kit: StoreKit, path: Path, *args: str) -> str:
    return await sClient(port, kit, "-tls1_2", "-sess_out", str(path), *args)


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("strict", ["no", "yes"])
async def test_a_tls_1_2_session_is_not_resumed_for_a_name_another_certificate_serves(
    kit: StoreKit, tmp_path: Path, strict: str
) -> None:
    """
    RFC 6066, section 3: openssl s_client offers a session made for b.example
    while asking for a.example (or an unknown name): refused, and the log says
    why.  Asking again for b.example, or for another name of the same
    certificate, resumes; sessions by id (-no_ticket) are checked alike.
    """
    kit.add("a.pem", ["a.example"], commonName="A")
    kit.add("b.pem", ["b.example", "www.b.example"], commonName="B")
    port = await listen(f"tls:0:interface=127.0.0.1:certificate=a,b:sniStrict={strict}:store={kit.root}")
    number = port.getHost().port
    try:
        for ticket in ([], ["-no_ticket"]):
            for other in ("a.example", "unknown.example"):
                session = tmp_path / f"b-{other}-{len(ticket)}.session"
                first = await sessionSaved(number, kit, session, "-servername", "b.example", *ticket)
                assert "CN = B" in first or "CN=B" in first
                for same in ("b.example", "www.b.example"):  # the same certificate: resumed
                    output = await sClient(
                        number, kit, "-tls1_2", "-sess_in", str(session), "-servername", same, *ticket
                    )
                    assert "Reused, TLSv1.2" in output
                with LogCapture() as logs:
                    output = await sClient(
                        number, kit, "-tls1_2", "-sess_in", str(session), "-servername", other, *ticket
                    )
                    for _ in range(100):  # logged when the server sees the connection end
                        if "handshake failed" in logs.text():
                            break
                        await sleep(0.02)
                assert "Reused" not in output and "unrecognized name" in output
                assert (
                    f"the client asked for the server name {other} resuming a TLS 1.2 session made for "
                    "the server name b.example, which another certificate serves" in logs.text()
                )
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("strict", ["no", "yes"])
async def test_a_tls_1_3_session_is_not_resumed_for_a_name_another_certificate_serves(
    kit: StoreKit, tmp_path: Path, strict: str
) -> None:
    """
    RFC 8446, 4.6.1: OpenSSL ties no name to a TLS 1.3 session and accepts it
    before the SNI callback; the session's own name (read from the session)
    decides: a session made for b.example offered for a.example is refused,
    as under TLS 1.2, instead of resuming a.example's connection on
    b.example's authentication; for b.example or www.b.example it resumes.
    """
    kit.add("a.pem", ["a.example"], commonName="A")
    kit.add("b.pem", ["b.example", "www.b.example"], commonName="B")
    port = await listen(f"tls:0:interface=127.0.0.1:certificate=a,b:sniStrict={strict}:store={kit.root}")
    number = port.getHost().port

    async def tls13(*args: str) -> str:
        return await sClientTalking(number, kit, "-tls1_3", *args)

    try:
        for other in ("a.example", "unknown.example"):
            session = tmp_path / f"b-{other}.session"
            first = await tls13("-servername", "b.example", "-sess_out", str(session))
            assert "CN = B" in first or "CN=B" in first
            for same in ("b.example", "www.b.example"):  # the same certificate: resumed
                output = await tls13("-sess_in", str(session), "-servername", same)
                assert "Reused, TLSv1.3" in output, output
            with LogCapture() as logs:
                output = await tls13("-sess_in", str(session), "-servername", other)
                for _ in range(100):  # logged when the server sees the connection end
                    if "handshake failed" in logs.text():
                        break
                    await sleep(0.02)
            assert "Reused" not in output and "unrecognized name" in output, output
            assert (
                f"the client asked for the server name {other} resuming a TLS 1.3 session made for "
                "the server name b.example, which another certificate serves; refused (RFC 8446, 4.6.1)"
                in logs.text()
            )
    finally:
        await port.stopListening()


def test_the_session_name_is_read_from_its_der_form() -> None:
    from securesock._clienthello import Unreadable
    from securesock._sessionname import hostnameOf

    name = b"b.example"
    hostname = bytes([0xA6, len(name) + 2, 0x04, len(name)]) + name
    before = bytes([0x02, 0x01, 0x01, 0xA4, 0x03, 0x04, 0x01, 0x00])  # version, [4] sid_ctx
    body = before + hostname
    assert hostnameOf(bytes([0x30, len(body)]) + body) == name
    assert hostnameOf(bytes([0x30, len(before)]) + before) is None  # made without SNI
    long = bytes([0x30, 0x81, len(body)]) + body  # a long-form length
    assert hostnameOf(long) == name
    assert isinstance(hostnameOf(bytes([0x30, len(body) + 5]) + body), Unreadable)  # cut short
    assert isinstance(hostnameOf(b"\x04\x00"), Unreadable)  # not a SEQUENCE


@pytest_twisted.ensureDeferred
async def test_a_certificate_for_an_ip_address_is_served_to_clients_of_that_address(kit: StoreKit) -> None:
    """
    RFC 6066 clients send no SNI for an address (Python's ssl, curl): they get
    the certificate whose IP subjectAltName is the address they connected
    to, not the first one, and verify it; a client that sends the address
    as SNI anyway (openssl s_client -servername) gets it too, also with
    sniStrict=yes.  Names still choose by name.
    """
    kit.add("a.pem", ["a.example"], commonName="A")
    kit.add("ip.pem", ["127.0.0.1"], commonName="IP")
    port = await listen(f"tls:0:interface=127.0.0.1:certificate=a,ip:sniStrict=yes:store={kit.root}")
    number = port.getHost().port
    try:
        assert await subject(number, kit, "127.0.0.1") == "CN=IP"  # verified by Python: the IP SAN matched
        assert await subject(number, kit, "a.example") == "CN=A"
        output = await sClient(number, kit, "-servername", "127.0.0.1")
        assert "CN = IP" in output and "alert" not in output, output
    finally:
        await port.stopListening()


def test_addresses_are_keyed_as_clients_reach_them() -> None:
    from securesock._creators import _address

    assert _address("::ffff:127.0.0.1") == "127.0.0.1"  # a dual-stack listener's IPv4 client
    assert _address("0:0::1") == "::1" and _address("fe80::1%eth0") == "fe80::1"
    assert _address("a.example") is None


def test_a_certificate_an_earlier_one_hides_is_warned_of_at_start(pki: Any, logLines: Any) -> None:
    """Two certificates for the same names (ECDSA then RSA): the second is never served; the start says so."""
    from twisted.internet import reactor

    import securesock

    securesock.serverFromString(reactor, f"tls:0:certificate={pki.server_pem},{pki.rsa_pem}")
    [warning] = logLines.matching("is never served")
    assert f"from {pki.rsa_pem} is never served: every name it has" in warning
    assert f"is served by {pki.server_pem}" in warning and "first certificate listed" in warning
    securesock.serverFromString(reactor, f"tls:0:certificate={pki.server_pem}")
    assert len(logLines.matching("is never served")) == 1


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
async def test_sessions_follow_the_certificate_an_address_chose(
    kit: StoreKit, tmp_path: Path, version: str
) -> None:
    """
    Without SNI the address decides (the IP certificate): a session made so
    resumes for a name of that certificate and is refused for a name of
    another; one made for that other name is refused without SNI.
    """
    kit.add("a.pem", ["a.example"], commonName="A")
    kit.add("ip.pem", ["127.0.0.1", "localhost"], commonName="IP")
    port = await listen(f"tls:0:interface=127.0.0.1:certificate=a,ip:store={kit.root}")
    number = port.getHost().port

    async def client(*args: str) -> str:
        return await sClientTalking(number, kit, version, *args)

    try:
        byAddress = tmp_path / "address.session"
        assert "CN = IP" in await client("-noservername", "-sess_out", str(byAddress))
        assert "Reused" in await client("-noservername", "-sess_in", str(byAddress))
        assert "Reused" in await client("-servername", "localhost", "-sess_in", str(byAddress))
        refused = await client("-servername", "a.example", "-sess_in", str(byAddress))
        assert "Reused" not in refused and "unrecognized name" in refused, refused
        byName = tmp_path / "a.session"
        assert "CN = A" in await client("-servername", "a.example", "-sess_out", str(byName))
        refused = await client("-noservername", "-sess_in", str(byName))
        assert "Reused" not in refused and "unrecognized name" in refused, refused
    finally:
        await port.stopListening()
