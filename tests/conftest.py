"""
Shared test material: a small PKI written to disk once per session, and
helpers to run servers and external TLS peers on loopback only.
"""

from __future__ import annotations

import datetime
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12
from cryptography.x509.oid import NameOID

from securesock._devca import Issued, certificatePEM, issue, keyPEM, makeAuthority

PASSPHRASE = b"correct horse battery staple"
REQUIRE_INTEROP = os.environ.get("SECURESOCK_REQUIRE_INTEROP") == "1"


def _ipv6Loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


HAVE_IPV6 = _ipv6Loopback()


def requireTool(name: str) -> str:
    """The path of an external tool, or skip (fail under SECURESOCK_REQUIRE_INTEROP=1)."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian: see .ci/install)"
        if REQUIRE_INTEROP:
            pytest.fail(f"{message}, and SECURESOCK_REQUIRE_INTEROP=1 requires it")
        pytest.skip(message)
    return path


@dataclass(frozen=True)
class PKI:
    """Paths of the test certificates; see the pki fixture for what each is."""

    root: Path

    def __getattr__(self, name: str) -> str:
        return str(self.root / name.replace("_", "."))

    def path(self, name: str) -> str:
        return str(self.root / name)


def writeSelfSigned(path: Path, key: Any, algorithm: Any) -> str:
    """
    A self-signed certificate for localhost and its key, in one PEM file (mode
    0600), for keys the test PKI does not make (RSA-1024, Ed25519; their
    C{algorithm} is None).
    """
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, algorithm)
    )
    _write(path, certificatePEM(certificate) + keyPEM(key))
    return str(path)


def writeDHParameters(openssl: str, path: Path, group: str = "ffdhe2048") -> str:
    """PEM DH parameters of one of OpenSSL's named groups (instant, unlike generating new ones)."""
    subprocess.run(
        [
            openssl,
            "genpkey",
            "-genparam",
            "-algorithm",
            "DH",
            "-pkeyopt",
            f"group:{group}",
            "-out",
            str(path),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return str(path)


def _write(path: Path, data: bytes, mode: int = 0o600) -> None:
    path.write_bytes(data)
    path.chmod(mode)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    """
    ca.pem            root CA; server.pem (cert+key) for localhost, 127.0.0.1, ::1
    server.crt/.key   the same, split; encrypted.key: its key under PASSPHRASE
    chained.pem       leaf issued by intermediate.pem (under the root), key inside
    server.p12        PKCS#12 of the server identity (friendlyName "web"), PASSPHRASE
    client.pem        client certificate + key under the root
    other-ca.pem      an unrelated CA; stranger.pem: a leaf for localhost under it
    expired.pem, future.pem, rsa.pem (RSA-2048 leaf)
    """
    root = tmp_path_factory.mktemp("pki")
    ca = makeAuthority("securesock test root")
    names = ["localhost", "127.0.0.1", "::1"]
    server = issue(ca, names)
    intermediate = makeAuthority("securesock test intermediate", issuer=ca)
    chained = issue(intermediate, names, commonName="chained.localhost")
    client = issue(ca, ["client.localhost"], commonName="test client")
    other = makeAuthority("unrelated CA")
    stranger = issue(other, names)
    now = datetime.datetime.now(datetime.timezone.utc)
    expired = issue(ca, names, notBefore=now - datetime.timedelta(days=30), days=10)
    future = issue(ca, names, notBefore=now + datetime.timedelta(days=10), days=10)
    rsaLeaf = issue(ca, names, keyType="rsa")

    def bundle(name: str, issued: Issued, *chain: Issued) -> None:
        _write(
            root / name,
            certificatePEM(issued.certificate, *(c.certificate for c in chain)) + keyPEM(issued.key),
        )

    _write(root / "ca.pem", certificatePEM(ca.certificate), 0o644)
    _write(root / "other-ca.pem", certificatePEM(other.certificate), 0o644)
    bundle("server.pem", server)
    _write(root / "server.crt", certificatePEM(server.certificate), 0o644)
    _write(root / "server.key", keyPEM(server.key))
    _write(root / "encrypted.key", keyPEM(server.key, PASSPHRASE))
    _write(root / "passphrase.txt", PASSPHRASE + b"\n")
    _write(root / "intermediate.pem", certificatePEM(intermediate.certificate), 0o644)
    _write(root / "chained.crt", certificatePEM(chained.certificate), 0o644)
    _write(root / "chained.key", keyPEM(chained.key))
    bundle("chained.pem", chained, intermediate)
    bundle("client.pem", client)
    bundle("stranger.pem", stranger)
    bundle("expired.pem", expired)
    bundle("future.pem", future)
    bundle("rsa.pem", rsaLeaf)
    _write(root / "other.key", keyPEM(client.key))
    _write(
        root / "server.p12",
        pkcs12.serialize_key_and_certificates(
            b"web",
            server.key,
            server.certificate,
            None,
            BestAvailableEncryption(PASSPHRASE),  # type: ignore[arg-type]
        ),
    )
    (root / "empty.pem").write_bytes(b"not a certificate\n")
    cadir = root / "cadir"
    cadir.mkdir()
    _write(cadir / "root.pem", certificatePEM(ca.certificate), 0o644)
    return PKI(root)


# Fails the session if anything logged or raised held key material or a passphrase.
pytest_plugins = ["tests.secrets_check", "tests.logcapture"]  # logcapture: the logLines fixture
