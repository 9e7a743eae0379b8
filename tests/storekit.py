"""
Certificate stores for tests: a root CA, an intermediate, and leaves written
the ways users keep them (PEM bundles, .crt+.key pairs, PKCS#12).
"""

from __future__ import annotations

import datetime
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, NoEncryption, pkcs12

from securesock._devca import Issued, certificatePEM, issue, keyPEM, makeAuthority
from securesock._hashes import spaced

NOW = datetime.datetime.now(datetime.timezone.utc)


def sha1(certificate: x509.Certificate) -> str:
    """The spaced WinDev form."""
    return spaced(certificate.fingerprint(hashes.SHA1()))


def sha256(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex()


@dataclass
class StoreKit:
    """A store directory under C{root}, with a root CA and an intermediate kept outside it."""

    root: Path
    ca: Issued = field(default_factory=lambda: makeAuthority("kit root CA"))
    intermediate: Issued | None = None
    outside: Path | None = None

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.intermediate = makeAuthority("kit intermediate CA", issuer=self.ca)
        self.outside = self.root.parent / (self.root.name + "-outside")
        self.outside.mkdir(exist_ok=True)
        (self.outside / "ca.pem").write_bytes(certificatePEM(self.ca.certificate))

    @property
    def caFile(self) -> str:
        return str(self.outside / "ca.pem")

    def addCA(self, filename: str = "root-ca.pem", intermediate: bool = False) -> None:
        authority = self.intermediate if intermediate else self.ca
        assert authority is not None
        (self.root / filename).write_bytes(certificatePEM(authority.certificate))

    def leaf(
        self,
        names: list[str],
        *,
        commonName: str | None = None,
        days: int = 365,
        notBefore: datetime.datetime | None = None,
        underIntermediate: bool = False,
    ) -> Issued:
        authority = self.intermediate if underIntermediate else self.ca
        assert authority is not None
        return issue(authority, names, commonName=commonName, days=days, notBefore=notBefore)

    def add(
        self,
        filename: str,
        names: list[str],
        *,
        key: bool = True,
        split: bool = False,
        passphrase: bytes | None = None,
        **leafOptions: object,
    ) -> Issued:
        """A leaf in C{filename}: a PEM bundle, or (split) C{stem.crt} + C{stem.key}."""
        issued = self.leaf(names, **leafOptions)  # type: ignore[arg-type]
        self.write(filename, issued, key=key, split=split, passphrase=passphrase)
        return issued

    def write(
        self,
        filename: str,
        issued: Issued,
        *,
        key: bool = True,
        split: bool = False,
        passphrase: bytes | None = None,
    ) -> None:
        path = self.root / filename
        if split:
            path.with_suffix(".crt").write_bytes(certificatePEM(issued.certificate))
            if key:
                keyPath = path.with_suffix(".key")
                keyPath.write_bytes(keyPEM(issued.key, passphrase))
                keyPath.chmod(0o600)
            return
        path.write_bytes(
            certificatePEM(issued.certificate) + (keyPEM(issued.key, passphrase) if key else b"")
        )
        path.chmod(0o600)

    def addP12(
        self, filename: str, friendlyName: bytes | None, passphrase: bytes | None, names: list[str]
    ) -> Issued:
        issued = self.leaf(names)
        encryption = BestAvailableEncryption(passphrase) if passphrase else NoEncryption()
        (self.root / filename).write_bytes(
            pkcs12.serialize_key_and_certificates(
                friendlyName,
                issued.key,  # type: ignore[arg-type]
                issued.certificate,
                None,
                encryption,
            )
        )
        return issued


def peerCertificate(
    port: int,
    cafile: str,
    servername: str | None = "localhost",
    *,
    version: ssl.TLSVersion | None = None,
    session: ssl.SSLSession | None = None,
    context: ssl.SSLContext | None = None,
    exchange: bool = True,
) -> tuple[x509.Certificate, bool, ssl.SSLSession | None]:
    """
    Handshake with Python's ssl module: (server leaf, session reused,
    session).  With C{exchange}, send a line and read until the server
    closes (so TLS 1.3 session tickets arrive).
    """
    if context is None:
        context = ssl.create_default_context(cafile=cafile)
        if version is not None:
            context.minimum_version = context.maximum_version = version
    if servername is None:
        context.check_hostname = False
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=servername, session=session) as tls:
            der = tls.getpeercert(binary_form=True)
            assert der is not None
            reused = tls.session_reused
            if not exchange:
                return x509.load_der_x509_certificate(der), reused, None
            tls.sendall(b"hello\n")
            for _ in range(100):  # read to the end, so TLS 1.3 tickets arrive
                if not tls.recv(4096):
                    break
            return x509.load_der_x509_certificate(der), reused, tls.session
