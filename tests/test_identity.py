"""
certificate=NAME and certificateHash= in descriptions: what they find, the
errors when they cannot, and real handshakes with store certificates
(intermediates sent automatically, mutual TLS, trustRoots=store).
"""

from __future__ import annotations

import datetime
import shutil
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.protocol import Factory
from twisted.internet.threads import deferToThread
from twisted.logger import globalLogPublisher

import securesock
from securesock import CertificateError, DescriptionError

from .conftest import PASSPHRASE, PKI
from .peers import Collect, listen
from .storekit import NOW, StoreKit, peerCertificate, sha1, sha256


@pytest.fixture
def kit(tmp_path: Path) -> StoreKit:
    kit = StoreKit(tmp_path / "store")
    kit.addCA("root-ca.pem")
    kit.addCA("intermediate.pem", intermediate=True)
    return kit


def build(description: str) -> Any:
    return securesock.serverFromString(reactor, description)


def failure(description: str, kind: type[Exception] = CertificateError) -> str:
    with pytest.raises(kind) as caught:
        build(description)
    text = str(caught.value)
    assert "PRIVATE KEY" not in text and PASSPHRASE.decode() not in text
    return text


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    from twisted.logger import formatEvent

    seen: list[str] = []

    def observe(event: dict[str, Any]) -> None:
        if event.get("log_level") is not None and event["log_level"].name == "warn":
            seen.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    yield seen
    globalLogPublisher.removeObserver(observe)


def served(description: str) -> Any:
    return build(description).identity.certificate


def test_each_kind_of_name(kit: StoreKit) -> None:
    web = kit.add("website.pem", ["www.example.com"], commonName="Example Site")
    p12 = kit.addP12("bundle.p12", b"friendly", None, ["p12.example.com"])
    store = f"store={kit.root}"
    assert served(f"tls:0:certificate=website:{store}") == web.certificate
    assert served(f"tls:0:certificate=Example Site:{store}") == web.certificate
    assert served(f"tls:0:certificate=WWW.EXAMPLE.COM:{store}") == web.certificate
    assert served(f"tls://:0?certificate=friendly&{store}") == p12.certificate
    assert served(f"tls:0:certificate=p12.example.com:{store}") == p12.certificate


def test_thumbprints_with_and_without_spaces(kit: StoreKit) -> None:
    web = kit.add("web.pem", ["web.example"])
    kit.add("other.pem", ["other.example"])
    spacedSHA1 = sha1(web.certificate)
    for value in (spacedSHA1, spacedSHA1.replace(" ", ""), spacedSHA1.upper(), sha256(web.certificate)):
        assert served(f"tls:0:certificateHash={value}:store={kit.root}") == web.certificate
    spacedSHA256 = " ".join(sha256(web.certificate)[i : i + 2] for i in range(0, 64, 2))
    assert served(f"tls:0:certificateHash={spacedSHA256}:store={kit.root}") == web.certificate


def test_mistyped_thumbprint(kit: StoreKit) -> None:
    web = kit.add("web.pem", ["web.example"])
    digits = sha1(web.certificate)
    mistyped = digits[:52] + "o" + digits[53:]
    text = failure(f"tls:0:certificateHash={mistyped}:store={kit.root}", DescriptionError)
    assert "character 53 is the letter 'o'" in text


def test_unknown_thumbprint_suggests_a_close_one(kit: StoreKit) -> None:
    web = kit.add("web.pem", ["web.example"])
    digits = sha1(web.certificate).replace(" ", "")
    typo = digits[:10] + ("0" if digits[10] != "0" else "1") + digits[11:]
    text = failure(f"tls:0:certificateHash={typo}:store={kit.root}")
    assert "no certificate in the store" in text and "SHA-1 thumbprint" in text
    assert f"close to: sha1 {sha1(web.certificate)}" in text


def test_no_match_lists_nearest_names(kit: StoreKit) -> None:
    kit.add("website.pem", ["www.example.com"])
    text = failure(f"tls:0:certificate=webiste:store={kit.root}")
    assert "certificate='webiste': no certificate in the store" in text
    assert "nearest names: website" in text


def test_ambiguity_lists_each_candidate_with_sha1_and_file(kit: StoreKit) -> None:
    first = kit.add("a.pem", ["shared.example"])
    second = kit.add("b.pem", ["shared.example"])
    text = failure(f"tls:0:certificate=shared.example:store={kit.root}")
    assert "2 certificates in the store" in text and "certificateHash=" in text
    for issued, name in ((first, "a.pem"), (second, "b.pem")):
        assert f"sha1 {sha1(issued.certificate)}" in text
        assert str(kit.root / name) in text
    # the thumbprint settles it
    assert served(f"tls:0:certificateHash={sha1(second.certificate)}:store={kit.root}") == second.certificate


def test_same_certificate_twice_is_not_ambiguous(kit: StoreKit) -> None:
    web = kit.add("web.pem", ["web.example"])
    kit.write("copy.pem", web)
    assert served(f"tls:0:certificate=web.example:store={kit.root}") == web.certificate


def test_missing_key(kit: StoreKit) -> None:
    kit.add("nokey.pem", ["nokey.example"], key=False)
    text = failure(f"tls:0:certificate=nokey:store={kit.root}")
    assert "has this certificate but not its private key" in text
    assert str(kit.root / "nokey.pem") in text
    text = failure(f"tls:0:certificateHash={sha1(kit.ca.certificate)}:store={kit.root}")
    assert "not its private key" in text


def test_expired_and_future_are_refused_with_dates(kit: StoreKit) -> None:
    old = kit.add("old.pem", ["old.example"], notBefore=NOW - datetime.timedelta(days=40), days=10)
    soon = kit.add("soon.pem", ["soon.example"], notBefore=NOW + datetime.timedelta(days=5), days=30)
    text = failure(f"tls:0:certificate=old:store={kit.root}")
    assert f"expired on {old.certificate.not_valid_after_utc:%Y-%m-%d}" in text
    text = failure(f"tls:0:certificate=soon:store={kit.root}")
    assert f"not valid yet: valid from {soon.certificate.not_valid_before_utc:%Y-%m-%d}" in text


def test_expiring_soon_warns(kit: StoreKit, warnings: list[str]) -> None:
    kit.add("short.pem", ["short.example"], days=5)
    assert served(f"tls:0:certificate=short:store={kit.root}") is not None
    assert any("expires on" in w and "short.pem" in w for w in warnings)


def test_pkcs12_friendly_name_and_passphrase(
    kit: StoreKit, pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(pki.server_p12, kit.root / "server.p12")
    monkeypatch.setenv("P12PASS", PASSPHRASE.decode())
    text = failure(f"tls:0:certificate=web:store={kit.root}")
    assert "1 encrypted PKCS#12 file(s) could not be searched: add passphrase=" in text
    monkeypatch.setenv("NOT_IT", "not the passphrase")
    text = failure(f"tls:0:certificate=web:passphrase=env:NOT_IT:store={kit.root}")
    assert (
        "1 encrypted PKCS#12 file(s) could not be searched: the passphrase= given does not open them" in text
    )
    assert "add passphrase=" not in text
    endpoint = build(f"tls:0:certificate=web:passphrase=env:P12PASS:store={kit.root}")
    assert endpoint.identity.source == str(kit.root / "server.p12")
    # Opened once, its names stay known; its key still needs the passphrase.
    text = failure(f"tls:0:certificate=web:store={kit.root}")
    assert "cannot be opened without a passphrase" in text


def test_the_stem_of_an_encrypted_pkcs12_names_it(
    kit: StoreKit, pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """certificate=server names server.p12 even while it is closed: the message says to open it."""
    shutil.copy(pki.server_p12, kit.root / "server.p12")
    text = failure(f"tls:0:certificate=SERVER:store={kit.root}")
    assert (
        f"certificate='SERVER' is the name of the encrypted PKCS#12 file {kit.root / 'server.p12'} (its stem)"
        in text
    )
    assert "add passphrase=env:NAME or passphrase=file:PATH to open it" in text
    monkeypatch.setenv("NOT_IT", "not the passphrase")
    text = failure(f"tls:0:certificate=server:passphrase=env:NOT_IT:store={kit.root}")
    assert "the passphrase= given does not open it (a wrong passphrase?)" in text
    monkeypatch.setenv("P12PASS", PASSPHRASE.decode())
    assert served(f"tls:0:certificate=server:passphrase=env:P12PASS:store={kit.root}") is not None


def test_encrypted_pem_key_needs_the_passphrase(kit: StoreKit, monkeypatch: pytest.MonkeyPatch) -> None:
    kit.add("locked.pem", ["locked.example"], passphrase=b"open sesame")
    text = failure(f"tls:0:certificate=locked:store={kit.root}")
    assert "certificate='locked' (store entry" in text and "is encrypted: add passphrase=" in text
    assert "(certificate=)" not in text  # the store's file, not an option the user wrote
    monkeypatch.setenv("KEYPASS", "open sesame")
    assert served(f"tls:0:certificate=locked:passphrase=env:KEYPASS:store={kit.root}") is not None


def test_file_paths_keep_their_meaning(kit: StoreKit, pki: PKI, monkeypatch: pytest.MonkeyPatch) -> None:
    kit.add("server.pem", ["store.example"])
    monkeypatch.setenv("SECURESOCK_STORE", str(kit.root))
    assert build(f"tls:0:certificate={pki.server_pem}").identity.source == pki.server_pem
    text = failure("tls:0:certificate=/nonexistent/site.pem")
    assert "certificate='/nonexistent/site.pem': no such file" in text
    assert "no such file" in failure("tls:0:certificate=missing.pem")
    monkeypatch.chdir(pki.root)  # a relative file name wins over a store name
    assert build("tls:0:certificate=server.pem").identity.source == "server.pem"


def test_default_store_from_environment(kit: StoreKit, monkeypatch: pytest.MonkeyPatch) -> None:
    web = kit.add("web.pem", ["web.example"])
    monkeypatch.setenv("SECURESOCK_STORE", str(kit.root))
    assert served("tls:0:certificate=web") == web.certificate
    monkeypatch.setenv("SECURESOCK_STORE", str(kit.root / "nowhere"))
    text = failure("tls:0:certificate=web")
    assert "the default store" in text and "is not a directory" in text


def test_client_presents_one_certificate(kit: StoreKit) -> None:
    kit.add("a.pem", ["a.example"])
    kit.add("b.pem", ["b.example"])
    with pytest.raises(CertificateError, match="a client presents one certificate"):
        securesock.clientFromString(reactor, f"tls:localhost:1:certificate=a,b:store={kit.root}")


def test_trust_store_without_authorities(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(CertificateError, match="holds no CA certificate"):
        securesock.clientFromString(reactor, f"tls:localhost:1:trustRoots=store:store={tmp_path / 'empty'}")


@pytest_twisted.ensureDeferred
async def test_store_intermediates_are_sent(kit: StoreKit) -> None:
    """Python's ssl trusts only the root: the handshake works only if the intermediate is sent."""
    leaf = kit.add("chained.pem", ["localhost"], underIntermediate=True)
    port = await listen(f"tls:0:interface=127.0.0.1:certificate=chained:store={kit.root}")
    try:
        got, _, _ = await deferToThread(peerCertificate, port.getHost().port, kit.caFile)
        assert got == leaf.certificate
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_without_the_intermediate_in_the_store_the_chain_is_incomplete(kit: StoreKit) -> None:
    kit.add("chained.pem", ["localhost"], underIntermediate=True)
    (kit.root / "intermediate.pem").unlink()
    port = await listen(f"tls:0:interface=127.0.0.1:certificate=chained:store={kit.root}")
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            await deferToThread(peerCertificate, port.getHost().port, kit.caFile)
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_mutual_tls_with_store_certificates_and_trust(kit: StoreKit) -> None:
    kit.add("server.pem", ["localhost"])
    kit.add("client.pem", ["client.example"], commonName="test client")
    store = f"store={kit.root}"
    port = await listen(
        f"tls:0:interface=127.0.0.1:certificate=server:verifyClient=require:caCerts=store:{store}"
    )
    try:
        description = (
            f"tls:127.0.0.1:{port.getHost().port}:hostname=localhost:trustRoots=store:"
            f"certificate=test client:{store}"
        )
        protocol = Collect()
        await securesock.clientFromString(reactor, description).connect(Factory.forProtocol(lambda: protocol))
        assert await protocol.done == b"HELLO alpn=none\n"
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_client_certificate_by_thumbprint_is_required(kit: StoreKit) -> None:
    kit.add("server.pem", ["localhost"])
    client = kit.add("client.pem", ["client.example"])
    store = f"store={kit.root}"
    port = await listen(
        f"tls:0:interface=127.0.0.1:certificate=server:verifyClient=require:caCerts=store:{store}"
    )
    try:
        base = f"tls:127.0.0.1:{port.getHost().port}:hostname=localhost:trustRoots=store:{store}"
        protocol = Collect()
        endpoint = securesock.clientFromString(reactor, f"{base}:certificateHash={sha1(client.certificate)}")
        await endpoint.connect(Factory.forProtocol(lambda: protocol))
        assert await protocol.done == b"HELLO alpn=none\n"
        # Without a client certificate the server refuses (TLS 1.3: after the client's handshake).
        protocol = Collect()
        connected = securesock.clientFromString(reactor, base).connect(Factory.forProtocol(lambda: protocol))
        try:
            await connected
        except securesock.TLSHandshakeError:
            return
        assert await protocol.done == b""
    finally:
        await port.stopListening()


def test_thumbprint_given_as_a_name_points_to_certificate_hash(kit: StoreKit) -> None:
    web = kit.add("web.pem", ["web.example"])
    text = failure(f"tls:0:certificate={sha1(web.certificate)}:store={kit.root}")
    assert "it looks like a thumbprint: give it as certificateHash= instead" in text


def test_pkcs12_friendly_name_with_passphrase_file_and_its_chain(kit: StoreKit, tmp_path: Path) -> None:
    """A PKCS#12 carrying the intermediate: found by friendlyName once passphrase=file: opens it."""
    from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12

    assert kit.intermediate is not None
    (kit.root / "intermediate.pem").unlink()  # the chain comes from the PKCS#12 alone
    leaf = kit.leaf(["p12.example"], underIntermediate=True)
    (kit.root / "bundle.pfx").write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"Friendly Bundle",
            leaf.key,  # type: ignore[arg-type]
            leaf.certificate,
            [kit.intermediate.certificate],
            BestAvailableEncryption(b"pfx secret"),
        )
    )
    secret = tmp_path / "pfx-pass.txt"
    secret.write_text("pfx secret\n")
    assert "could not be searched: add passphrase=" in failure(
        f"tls:0:certificate=Friendly Bundle:store={kit.root}"
    )
    endpoint = build(f"tls:0:certificate=Friendly Bundle:passphrase=file:{secret}:store={kit.root}")
    assert endpoint.identity.certificate == leaf.certificate
    assert endpoint.identity.chain == (kit.intermediate.certificate,)
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("not it\n")
    text = failure(f"tls:0:certificate=Friendly Bundle:passphrase=file:{wrong}:store={kit.root}")
    assert f"passphrase=file:{wrong} does not open the PKCS#12 file" in text


def test_default_store_is_the_xdg_data_directory(
    kit: StoreKit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No store= and no $SECURESOCK_STORE: $XDG_DATA_HOME/securesock/store, else ~/.local/share/..."""
    web = kit.add("web.pem", ["web.example"])
    monkeypatch.delenv("SECURESOCK_STORE", raising=False)
    data = tmp_path / "xdg"
    (data / "securesock").mkdir(parents=True)
    shutil.copytree(kit.root, data / "securesock" / "store")
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    assert served("tls:0:certificate=web") == web.certificate
    monkeypatch.delenv("XDG_DATA_HOME")
    home = tmp_path / "home"
    (home / ".local" / "share" / "securesock").mkdir(parents=True)
    shutil.copytree(kit.root, home / ".local" / "share" / "securesock" / "store")
    monkeypatch.setenv("HOME", str(home))
    assert served("tls:0:certificate=web.example") == web.certificate
    monkeypatch.setenv("SECURESOCK_STORE", str(tmp_path / "elsewhere"))  # wins over both
    assert str(tmp_path / "elsewhere") in failure("tls:0:certificate=web")


def test_index_is_built_once_per_process_and_rechecked_by_size_and_mtime(
    kit: StoreKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from securesock import _store

    kit.add("web.pem", ["web.example"])
    kit.add("api.pem", ["api.example"])
    assert served(f"tls:0:certificate=web:store={kit.root}") is not None  # indexes the store
    parsed: list[str] = []
    original = _store._parseFile

    def counting(path: str, *args: Any) -> Any:
        parsed.append(Path(path).name)
        return original(path, *args)

    monkeypatch.setattr(_store, "_parseFile", counting)
    for _ in range(3):
        served(f"tls:0:certificate=api:store={kit.root}")
    assert parsed == []  # the index of this process, re-checked without reading a file
    web = kit.root / "web.pem"
    stat = web.stat()
    os.utime(web, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))  # same bytes, new mtime
    served(f"tls:0:certificate=api:store={kit.root}")
    assert parsed == ["web.pem"]


@pytest_twisted.ensureDeferred
async def test_openssl_showcerts_sees_the_intermediate_from_the_store(kit: StoreKit) -> None:
    """openssl s_client, trusting only the root, verifies: leaf then intermediate sent, root not."""
    from .conftest import requireTool
    from .peers import run

    requireTool("openssl")
    kit.add("chained.pem", ["localhost"], underIntermediate=True)
    port = await listen(f"tls:0:interface=127.0.0.1:certificate=chained:store={kit.root}")
    try:
        result = await run(
            [
                "openssl", "s_client", "-connect", f"127.0.0.1:{port.getHost().port}",
                "-servername", "localhost", "-CAfile", kit.caFile, "-verify_hostname", "localhost",
                "-verify_return_error", "-showcerts",
            ],
            timeout=20,
        )  # fmt: skip
    finally:
        await port.stopListening()
    output = result.stdout.decode(errors="replace")
    assert result.returncode == 0, output + result.stderr.decode(errors="replace")
    assert "Verification: OK" in output
    chain = [line.strip() for line in output.splitlines() if line.lstrip()[:2] in ("0 ", "1 ", "2 ")]
    assert chain == ["0 s:CN = localhost", "1 s:CN = kit intermediate CA"]
    assert output.count("-----BEGIN CERTIFICATE-----") == 2


@pytest_twisted.ensureDeferred
async def test_caCerts_store_against_openssl_s_client_with_a_client_certificate(kit: StoreKit) -> None:
    """openssl s_client presents a certificate the store's CA issued: accepted; without one: refused."""
    from .conftest import requireTool
    from .peers import run

    openssl = requireTool("openssl")
    kit.add("server.pem", ["localhost"])
    kit.add("client.pem", ["client.example"], commonName="test client")
    port = await listen(
        f"tls:0:interface=127.0.0.1:certificate=server:verifyClient=require:caCerts=store:store={kit.root}"
    )
    base = [openssl, "s_client", "-connect", f"127.0.0.1:{port.getHost().port}", "-servername", "localhost"]
    base += ["-CAfile", kit.caFile, "-verify_return_error", "-tls1_3", "-ign_eof"]
    try:
        accepted = await run([*base, "-cert", str(kit.root / "client.pem")], input=b"hello\n", timeout=20)
        refused = await run(base, input=b"hello\n", timeout=20)
    finally:
        await port.stopListening()
    assert b"HELLO alpn=none" in accepted.stdout, accepted.stdout + accepted.stderr
    assert b"HELLO" not in refused.stdout
    assert b"alert certificate required" in refused.stderr, refused.stderr


@pytest_twisted.ensureDeferred
async def test_client_certificate_from_the_store_against_openssl_s_server(
    kit: StoreKit, tmp_path: Path
) -> None:
    """A securesock client presents certificate=NAME from the store to openssl s_server -Verify."""
    from twisted.internet.protocol import Protocol

    from .conftest import requireTool
    from .peers import Background

    openssl = requireTool("openssl")
    kit.add("server.pem", ["localhost"])
    kit.add("client.pem", ["client.example"], commonName="test client")
    server = Background(
        [openssl, "s_server", "-accept", "127.0.0.1:0", "-cert", str(kit.root / "server.pem")]
        + ["-Verify", "1", "-CAfile", kit.caFile, "-verify_return_error", "-www"],
        str(tmp_path / "s_server.out"),
    )

    class Get(Protocol):
        def __init__(self) -> None:
            self.received = b""
            self.done: Any = None

        def connectionMade(self) -> None:
            self.transport.write(b"GET / HTTP/1.0\r\n\r\n")  # type: ignore[union-attr]

        def dataReceived(self, data: bytes) -> None:
            self.received += data

        def connectionLost(self, reason: Any) -> None:
            self.done.callback(self.received)

    try:
        number = (await deferToThread(server.waitFor, r"^ACCEPT .*:(\d+)$")).group(1)
        from twisted.internet.defer import Deferred

        protocol = Get()
        protocol.done = Deferred()
        description = f"tls:127.0.0.1:{number}:hostname=localhost:trustRoots=store:certificate=test client:store={kit.root}"
        await securesock.clientFromString(reactor, description).connect(Factory.forProtocol(lambda: protocol))
        page = await protocol.done
        assert page.startswith(b"HTTP/1.0 200 ok"), page[:200]
        await deferToThread(server.waitFor, r"^depth=0 CN = test client$")
    finally:
        server.stop()


def test_an_expired_copy_beside_its_renewal_is_not_ambiguous(kit: StoreKit) -> None:
    """certbot-style: the old certificate stays beside the new one; the name picks the valid one."""
    kit.add("web-2025.pem", ["www.example.com"], notBefore=NOW - datetime.timedelta(days=100), days=90)
    renewed = kit.add("web-2026.pem", ["www.example.com"])
    assert served(f"tls:0:certificate=www.example.com:store={kit.root}") == renewed.certificate
    # two valid ones are still ambiguous, and the expired one is not listed among them
    other = kit.add("web-other.pem", ["www.example.com"])
    text = failure(f"tls:0:certificate=www.example.com:store={kit.root}")
    assert "2 certificates in the store" in text
    assert sha1(renewed.certificate) in text and sha1(other.certificate) in text
    assert "web-2025.pem" not in text
    # only expired ones: refused with the dates, not passed over
    for name in ("web-2026.pem", "web-other.pem"):
        (kit.root / name).unlink()
    assert "expired on" in failure(f"tls:0:certificate=www.example.com:store={kit.root}")


def test_of_copies_of_one_certificate_the_one_whose_key_opens_is_served(
    kit: StoreKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same certificate with an encrypted key (listed first) and with a plain one."""
    issued = kit.leaf(["copies.example"])
    kit.write("a-encrypted.pem", issued, passphrase=b"open sesame")
    kit.write("b-plain.pem", issued)
    plain, encrypted = str(kit.root / "b-plain.pem"), str(kit.root / "a-encrypted.pem")
    assert build(f"tls:0:certificate=copies.example:store={kit.root}").identity.source == plain
    hashed = f"tls:0:certificateHash={sha1(issued.certificate)}:store={kit.root}"
    assert build(hashed).identity.source == plain
    monkeypatch.setenv("KEYPASS", "open sesame")  # given for the encrypted copy: that one
    withPassphrase = f"tls:0:certificate=copies.example:passphrase=env:KEYPASS:store={kit.root}"
    assert build(withPassphrase).identity.source == encrypted
    assert served(f"tls:{kit.root}:0") is not None  # every entry: the plain copy, not a skipped one
