"""
Renewal: a running server serves the new certificate once its file changes
(proved by real handshakes that see the new hash), keeps open connections
on the old one, keeps sessions resumable, and keeps serving the old
certificate while the new files are unusable.
"""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from cryptography import x509
from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

import securesock
from securesock._reload import Renewal

from .logcapture import LogLines
from .peers import listen
from .storekit import StoreKit, peerCertificate, sha1


class Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)


@pytest.fixture
def kit(tmp_path: Path) -> StoreKit:
    return StoreKit(tmp_path / "store")


@pytest.fixture
def immediate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Look at the files on every connection, so tests need not wait a second."""
    monkeypatch.setattr(Renewal, "interval", 0.0)


async def served(port: int, kit: StoreKit, **options: Any) -> tuple[str, bool, ssl.SSLSession | None]:
    certificate, reused, session = await deferToThread(
        peerCertificate, port, kit.caFile, "localhost", **options
    )
    return sha1(certificate), reused, session


def openConnection(port: int, cafile: str) -> tuple[ssl.SSLSocket, str]:
    context = ssl.create_default_context(cafile=cafile)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    tls = context.wrap_socket(raw, server_hostname="localhost")
    der = tls.getpeercert(binary_form=True)
    assert der is not None
    from cryptography import x509

    return tls, sha1(x509.load_der_x509_certificate(der))


def echo(tls: ssl.SSLSocket, data: bytes) -> bytes:
    tls.sendall(data)
    received = b""
    for _ in range(50):
        received += tls.recv(4096)
        if received.endswith(b"\n"):
            break
    return received


@pytest_twisted.ensureDeferred
async def test_renewed_file_is_served_without_restart_open_connection_untouched(kit: StoreKit) -> None:
    """The real one-second check: a new handshake sees the new hash, the open connection keeps working."""
    old = kit.add("site.pem", ["localhost"])
    port = await listen(
        f"tls:0:interface=127.0.0.1:certificate={kit.root / 'site.pem'}", Factory.forProtocol(Echo)
    )
    number = port.getHost().port
    tls = None
    try:
        tls, openHash = await deferToThread(openConnection, number, kit.caFile)
        assert openHash == sha1(old.certificate)
        assert await deferToThread(echo, tls, b"before\n") == b"before\n"
        new = kit.add("site.pem", ["localhost"])  # renewed in place: new key, new certificate
        await deferLater(reactor, Renewal.interval + 0.2, lambda: None)
        certificate, _, _ = await deferToThread(peerCertificate, number, kit.caFile, exchange=False)
        assert sha1(certificate) == sha1(new.certificate) != sha1(old.certificate)
        assert await deferToThread(echo, tls, b"after renewal\n") == b"after renewal\n"
    finally:
        if tls is not None:
            tls.close()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_checks_at_most_once_per_interval(kit: StoreKit) -> None:
    kit.add("site.pem", ["localhost"])
    endpoint: Any = securesock.serverFromString(reactor, f"tls:0:certificate={kit.root / 'site.pem'}")
    renewal = endpoint.renewal
    start = time.monotonic() + 10  # past the first check's due time
    now = [start]
    renewal.clock = lambda: now[0]
    checks = []
    renewal.check = lambda: checks.append(now[0] - start) or False
    for step in (0.0, 0.3, 0.6, 0.9, 1.05, 1.5, 2.2):
        now[0] = start + step
        endpoint.creator.serverConnectionForTLS(None)
    assert checks == pytest.approx([0.0, 1.05, 2.2])


@pytest_twisted.ensureDeferred
async def test_store_entry_renewed(kit: StoreKit, immediate: None) -> None:
    kit.addCA("root-ca.pem")
    old = kit.add("web.pem", ["localhost"])
    port = await listen(f"tls:0:interface=127.0.0.1:certificate=web:store={kit.root}")
    number = port.getHost().port
    try:
        assert (await served(number, kit))[0] == sha1(old.certificate)
        new = kit.add("web.pem", ["localhost"])
        assert (await served(number, kit))[0] == sha1(new.certificate)
    finally:
        await port.stopListening()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
@pytest_twisted.ensureDeferred
async def test_sessions_resume_across_a_renewal(
    kit: StoreKit, immediate: None, version: ssl.TLSVersion
) -> None:
    old = kit.add("site.pem", ["localhost"])
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={kit.root / 'site.pem'}")
    number = port.getHost().port
    context = ssl.create_default_context(cafile=kit.caFile)
    context.minimum_version = context.maximum_version = version
    try:
        first, reused, session = await served(number, kit, context=context)
        assert first == sha1(old.certificate) and not reused and session is not None
        new = kit.add("site.pem", ["localhost"])
        _, reused, _ = await served(number, kit, context=context, session=session)
        assert reused, "the session made before the renewal was not resumed"
        fresh, reused, session = await served(number, kit, context=context)
        assert fresh == sha1(new.certificate) and not reused
        # a session made on the renewed certificate's context resumes too
        _, reused, _ = await served(number, kit, context=context, session=session)
        assert reused, "a session made after the renewal was not resumed"
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_unusable_renewal_keeps_the_old_certificate(kit: StoreKit, immediate: None) -> None:
    old = kit.add("site.pem", ["localhost"], split=True)
    warnings: list[str] = []

    def observe(event: dict[str, Any]) -> None:
        if event.get("log_level") is not None and event["log_level"].name == "warn":
            warnings.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    port = await listen(
        f"tls:0:interface=127.0.0.1:certificate={kit.root / 'site.crt'}:privateKey={kit.root / 'site.key'}"
    )
    number = port.getHost().port
    try:
        new = kit.leaf(["localhost"])
        from securesock._devca import certificatePEM, keyPEM

        (kit.root / "site.crt").write_bytes(certificatePEM(new.certificate))  # key not written yet
        assert (await served(number, kit))[0] == sha1(old.certificate)
        assert any(
            "its files changed but cannot be used" in w and "still serving the previous certificate" in w
            for w in warnings
        )
        (kit.root / "site.key").write_bytes(keyPEM(new.key))
        assert (await served(number, kit))[0] == sha1(new.certificate)
        (kit.root / "site.crt").write_bytes(b"garbage")
        assert (await served(number, kit))[0] == sha1(new.certificate)
    finally:
        globalLogPublisher.removeObserver(observe)
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_file_that_cannot_be_read_is_not_called_changed(
    kit: StoreKit, immediate: None, logLines: LogLines
) -> None:
    """A key file gone (or out of reach of the --uid user) has not changed: the warning says it cannot be read."""
    old = kit.add("site.pem", ["localhost"], split=True)
    key = kit.root / "site.key"
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={kit.root / 'site.crt'}:privateKey={key}")
    number = port.getHost().port
    try:
        key.rename(kit.root / "site.key.moved")
        assert (await served(number, kit))[0] == sha1(old.certificate)
        [warning] = logLines.matching("still serving the previous certificate", level=LogLevel.warn)
        assert "its files cannot be read now" in warning and "changed" not in warning, warning
        assert "still serving the previous certificate" in warning
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_renewal_openssl_refuses_keeps_the_old_certificate(
    kit: StoreKit, immediate: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A renewed certificate OpenSSL itself refuses (RSA-1024: 'ee key too small') fails no connection."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    from securesock import _devca

    old = kit.add("site.pem", ["localhost"])
    warnings: list[str] = []

    def observe(event: dict[str, Any]) -> None:
        if event.get("log_level") is not None and event["log_level"].name == "warn":
            warnings.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={kit.root / 'site.pem'}")
    number = port.getHost().port
    try:
        with monkeypatch.context() as patch:
            patch.setattr(_devca, "newKey", lambda keyType="ec": rsa.generate_private_key(65537, 1024))
            kit.add("site.pem", ["localhost"])
        assert (await served(number, kit))[0] == sha1(old.certificate)
        assert any("still serving the previous certificate" in w and "key too small" in w for w in warnings)
        new = kit.add("site.pem", ["localhost"])
        assert (await served(number, kit))[0] == sha1(new.certificate)
    finally:
        globalLogPublisher.removeObserver(observe)
        await port.stopListening()


def test_sni_table_encodes_names_as_clients_send_them(kit: StoreKit) -> None:
    """Non-ASCII names are keyed by the A-labels clients send (IDNA 2008, like our client); unencodable ones are left out."""
    import idna

    kit.add("straße.pem", ["localhost"])
    kit.add("é" * 70 + ".pem", ["b.example"])  # a label too long for IDNA: no client can ask for it
    endpoint: Any = securesock.serverFromString(
        reactor, f"tls:0:certificate=straße,{'é' * 70}:store={kit.root}"
    )
    served = endpoint.creator.chooser.served
    assert set(served.byName) == {b"localhost", idna.encode("straße", uts46=True), b"b.example"}
    assert idna.encode("straße", uts46=True) == b"xn--strae-oqa"  # not IDNA 2003's 'strasse'


@pytest_twisted.ensureDeferred
async def test_each_sni_certificate_renews_on_its_own(kit: StoreKit, immediate: None) -> None:
    kit.addCA("root-ca.pem")
    a = kit.add("a.pem", ["localhost"], commonName="A")
    kit.add("b.pem", ["b.example"], commonName="B")
    port = await listen(f"tls:0:interface=127.0.0.1:certificate=a,b:store={kit.root}")
    number = port.getHost().port
    try:
        b2 = kit.add("b.pem", ["b.example"], commonName="B2")
        certificate, _, _ = await deferToThread(peerCertificate, number, kit.caFile, "b.example")
        assert sha1(certificate) == sha1(b2.certificate)
        assert (await served(number, kit))[0] == sha1(a.certificate)
    finally:
        await port.stopListening()


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
@pytest_twisted.ensureDeferred
async def test_openssl_s_client_sees_the_renewal_and_resumes(
    kit: StoreKit, immediate: None, tmp_path: Path, version: str
) -> None:
    """openssl s_client: a session saved before the renewal is resumed after it; a new one sees the new hash."""
    from .conftest import requireTool
    from .peers import run

    openssl = requireTool("openssl")
    kit.addCA("root-ca.pem")
    old = kit.add("web.pem", ["localhost"])
    port = await listen(f"tls:0:interface=127.0.0.1:certificate=web:store={kit.root}")
    session = tmp_path / "session.pem"
    base = [openssl, "s_client", "-connect", f"127.0.0.1:{port.getHost().port}", "-servername", "localhost"]
    base += [
        "-CAfile",
        kit.caFile,
        "-verify_hostname",
        "localhost",
        "-verify_return_error",
        version,
        "-ign_eof",
    ]

    async def handshake(*extra: str) -> tuple[str, str]:
        done = await run([*base, *extra], input=b"hello\n", timeout=20)
        output = done.stdout.decode(errors="replace")
        assert done.returncode == 0, output + done.stderr.decode(errors="replace")
        pem = output[
            output.index("-----BEGIN CERTIFICATE-----") : output.index("-----END CERTIFICATE-----") + 25
        ]
        return sha1(x509.load_pem_x509_certificate(pem.encode())), output

    try:
        first, output = await handshake("-sess_out", str(session))
        assert first == sha1(old.certificate) and "\nNew, TLSv1." in output
        new = kit.add("web.pem", ["localhost"])
        _, output = await handshake("-sess_in", str(session))
        assert "\nReused, TLSv1." in output, "the session from before the renewal was not resumed"
        renewed, output = await handshake()
        assert renewed == sha1(new.certificate) != first and "\nNew, TLSv1." in output
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_renewal_by_atomic_rename_and_by_symlink(kit: StoreKit, immediate: None) -> None:
    """The ways deploy tools renew: write elsewhere and rename over the file, or repoint a symlink."""
    import os

    from securesock._devca import certificatePEM, keyPEM

    kit.addCA("root-ca.pem")
    first = kit.leaf(["localhost"])
    releases = kit.root.parent / "releases"
    releases.mkdir()
    (releases / "one.pem").write_bytes(certificatePEM(first.certificate) + keyPEM(first.key))
    (kit.root / "web.pem").symlink_to(releases / "one.pem")
    port = await listen(f"tls:0:interface=127.0.0.1:certificate=web:store={kit.root}")
    number = port.getHost().port
    try:
        assert (await served(number, kit))[0] == sha1(first.certificate)
        second = kit.leaf(["localhost"])
        (releases / "two.pem").write_bytes(certificatePEM(second.certificate) + keyPEM(second.key))
        (kit.root / "next").symlink_to(releases / "two.pem")
        os.replace(kit.root / "next", kit.root / "web.pem")  # repoint the symlink atomically
        assert (await served(number, kit))[0] == sha1(second.certificate)
        third = kit.leaf(["localhost"])
        (releases / "three.tmp").write_bytes(certificatePEM(third.certificate) + keyPEM(third.key))
        os.replace(releases / "three.tmp", releases / "two.pem")  # rename over the target
        assert (await served(number, kit))[0] == sha1(third.certificate)
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_renewed_entry_chosen_by_thumbprint_is_served_and_the_stale_thumbprint_warned(
    kit: StoreKit, immediate: None, logLines: LogLines
) -> None:
    """certificateHash= names one certificate: after its entry is renewed the new one is served (the old
    would expire), with a warning that the description must name the new thumbprint to start again."""
    from securesock._hashes import spaced
    from securesock._material import fingerprint

    old = kit.add("site.pem", ["localhost"])
    thumbprint = spaced(fingerprint(old.certificate, "sha1"))
    port = await listen(f"tls:0:interface=127.0.0.1:certificateHash={thumbprint}:store={kit.root}")
    number = port.getHost().port
    try:
        assert (await served(number, kit))[0] == sha1(old.certificate)
        assert not logLines.matching("no longer matches")
        new = kit.add("site.pem", ["localhost"])
        assert (await served(number, kit))[0] == sha1(new.certificate)
        [warning] = logLines.matching("no longer matches")
        assert f"certificateHash={thumbprint}: the store entry was renewed" in warning
        assert f"change it to certificateHash={spaced(fingerprint(new.certificate, 'sha1'))}" in warning
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_the_same_certificate_written_again_is_not_called_renewed(
    kit: StoreKit, immediate: None, logLines: LogLines
) -> None:
    """A deploy that rewrites the same file (a new modification time, the same certificate) says so."""
    issued = kit.add("site.pem", ["localhost"])
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={kit.root / 'site.pem'}")
    number = port.getHost().port
    try:
        time.sleep(0.01)
        kit.write("site.pem", issued)  # the same certificate and key, written anew
        assert (await served(number, kit))[0] == sha1(issued.certificate)
        assert logLines.matching("re-read, the same certificate"), logLines.events
        assert not logLines.matching("renewed: now serving")
    finally:
        await port.stopListening()
