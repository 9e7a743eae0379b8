"""
Certificates for development and tests, made the way strict verifiers want
them: a non-critical subjectAltName, subject and authority key identifiers,
key usages and serverAuth/clientAuth extended usages.  (sslyze rejects
leaves with a critical SAN and a non-empty subject, and leaves without key
identifiers; trustme makes the former.)
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Issued", "newKey", "makeAuthority", "issue", "certificatePEM", "keyPEM"]


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key."""

    certificate: x509.Certificate
    key: CertificateIssuerPrivateKeyTypes

    def __repr__(self) -> str:  # never show the key
        return f"<Issued {self.certificate.subject.rfc4514_string()}>"


def newKey(keyType: str = "ec") -> CertificateIssuerPrivateKeyTypes:
    """A P-256 key (C{"ec"}) or an RSA-2048 key (C{"rsa"})."""
    if keyType == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def makeAuthority(
    commonName: str = "securesock development CA",
    *,
    issuer: Issued | None = None,
    days: int = 3650,
    keyType: str = "ec",
) -> Issued:
    """A CA certificate: self-signed, or an intermediate under C{issuer}."""
    key = newKey(keyType)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, commonName)])
    signer = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.certificate.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(hours=1))
        .not_valid_after(_now() + datetime.timedelta(days=days))
        .add_extension(
            x509.BasicConstraints(ca=True, path_length=None if issuer is None else 0), critical=True
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    return Issued(builder.sign(signer, hashes.SHA256()), key)


def _subjectAltNames(names: list[str]) -> list[x509.GeneralName]:
    result: list[x509.GeneralName] = []
    for name in names:
        try:
            result.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            result.append(x509.DNSName(name))
    return result


def issue(
    authority: Issued,
    names: list[str],
    *,
    commonName: str | None = None,
    days: int = 365,
    notBefore: datetime.datetime | None = None,
    keyType: str = "ec",
) -> Issued:
    """A leaf for C{names} (DNS names or IP addresses), usable by servers and clients."""
    key = newKey(keyType)
    start = notBefore or (_now() - datetime.timedelta(hours=1))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, commonName or names[0])])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=keyType == "rsa",
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(_subjectAltNames(names)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.key.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    return Issued(builder.sign(authority.key, hashes.SHA256()), key)


def certificatePEM(*certificates: x509.Certificate) -> bytes:
    """PEM text of one or more certificates."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def keyPEM(key: CertificateIssuerPrivateKeyTypes, passphrase: bytes | None = None) -> bytes:
    """PKCS#8 PEM of a key, encrypted when a passphrase is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
