"""
Certificate material from files: identities (certificate, key, chain) and
trust roots.

Everything is read once, when the endpoint is built, so a missing file, a
key that does not fit its certificate or an encrypted key without a
passphrase is reported before anything listens.  Messages name files and
options, never key bytes or passphrases.
"""

from __future__ import annotations

import datetime
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12
from twisted.logger import Logger

from ._errors import CertificateError
from ._options import TWISTED_SSL_DEFAULT_KEY, IdentitySpec, Passphrase

__all__ = [
    "Identity",
    "loadIdentity",
    "loadCertificates",
    "readPassphrase",
    "describeCertificate",
    "fingerprint",
    "checkReadableFile",
    "looksLikePKCS12",
    "MAX_FILE_SIZE",
]

log = Logger()

_PEM_KEY = re.compile(
    rb"-----BEGIN (?P<kind>[A-Z0-9 ]*)PRIVATE KEY-----.*?-----END (?P=kind)PRIVATE KEY-----",
    re.DOTALL,
)
_PEM_CERT = b"-----BEGIN CERTIFICATE-----"
_EXPIRY_WARNING = datetime.timedelta(days=14)


@dataclass(frozen=True)
class Identity:
    """A certificate with its private key and the chain sent after it."""

    certificate: x509.Certificate
    key: PrivateKeyTypes
    chain: tuple[x509.Certificate, ...]
    source: str  # where it came from, for messages

    def __repr__(self) -> str:  # never show the key
        return f"<Identity {describeCertificate(self.certificate)} from {self.source}>"


def fingerprint(certificate: x509.Certificate, algorithm: str = "sha256") -> bytes:
    """The digest of the DER certificate, as PHP and browsers show it."""
    return certificate.fingerprint(hashes.SHA1() if algorithm == "sha1" else hashes.SHA256())


def describeCertificate(certificate: x509.Certificate) -> str:
    """A short human description: the subject and SHA-1 thumbprint."""
    return f"{certificate.subject.rfc4514_string() or '(empty subject)'} [sha1 {fingerprint(certificate, 'sha1').hex()}]"


MAX_FILE_SIZE = 10 * 1024 * 1024  # a certificate, key or CA bundle is KBs; a few MB at most


def _refusal(prefix: str, path: str, option: str, shown: str | None, message: str) -> CertificateError:
    return CertificateError(f"{prefix}{message}", option=option, value=path if shown is None else None)


def _openRegular(path: str, option: str, what: str, shown: str | None, start: str) -> int:
    """
    A descriptor of C{path}, opened for reading, if it is a regular file of at
    most L{MAX_FILE_SIZE} bytes (by its size, before a byte is read); else the
    error L{_read} gives.
    """
    try:
        # O_NONBLOCK: opening a FIFO nobody writes to returns at once, so fstat can refuse it.
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except IsADirectoryError:
        raise _refusal(start, path, option, shown, f" is a directory; {what} must be a file") from None
    except FileNotFoundError:
        raise _refusal(
            start,
            path,
            option,
            shown,
            f": no such file (looked in {os.getcwd()!r} for relative paths); give the path of {what}",
        ) from None
    except OSError as e:
        raise _refusal(start, path, option, shown, f" cannot be read: {e.strerror}") from None
    try:
        status = os.fstat(descriptor)
    except OSError as e:
        os.close(descriptor)
        raise _refusal(start, path, option, shown, f" cannot be read: {e.strerror}") from None
    mode = status.st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        if stat.S_ISDIR(mode):
            raise _refusal(start, path, option, shown, f" is a directory; {what} must be a file")
        kind = _FILE_KINDS.get(stat.S_IFMT(mode), "not a regular file")
        raise _refusal(start, path, option, shown, f" is {kind}, not a regular file; give the path of {what}")
    if status.st_size > MAX_FILE_SIZE:
        os.close(descriptor)
        raise _tooLarge(start, path, option, shown, what)
    return descriptor


def _tooLarge(start: str, path: str, option: str, shown: str | None, what: str) -> CertificateError:
    return _refusal(
        start,
        path,
        option,
        shown,
        f" is larger than {MAX_FILE_SIZE // (1024 * 1024)} MiB, too large for {what} "
        "(certificate and key files are a few KB): is it the right file?",
    )


def _read(
    path: str,
    option: str,
    what: str,
    shown: str | None = None,
    *,
    prefix: str | None = None,
) -> bytes:
    """
    The file's bytes; C{shown}: how messages name it, if not by C{path};
    C{prefix}: how messages start (C{option=NAMED}, or C{--passphrase ...} for
    the command line).  Only a regular file is read, and at most
    L{MAX_FILE_SIZE} bytes of it: a FIFO would block for ever and
    C{/dev/zero} fill the memory.  (A pipe would not do for a passphrase
    either: it is read again for each file and each renewal.)
    """
    named = repr(path) if shown is None else shown
    start = f"{option}={named}" if prefix is None else prefix
    descriptor = _openRegular(path, option, what, shown, start)
    with os.fdopen(descriptor, "rb") as f:
        try:
            data = f.read(MAX_FILE_SIZE + 1)
        except OSError as e:
            raise _refusal(start, path, option, shown, f" cannot be read: {e.strerror}") from None
    if len(data) > MAX_FILE_SIZE:  # grown since it was opened
        raise _tooLarge(start, path, option, shown, what)
    return data


_FILE_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}  # (a FIFO may also be a pipe: /dev/fd/N, the shell's <(...))


def checkReadableFile(path: str, option: str, what: str) -> None:
    """
    Refuse, as L{_read} would, a path that is not a regular file of a sane
    size, before a library (OpenSSL's C{load_tmp_dh}) reads it unbounded:
    by its type and size, without reading it.
    """
    os.close(_openRegular(path, option, what, None, f"{option}={path!r}"))


def readPassphrase(passphrase: Passphrase | None, *, spelled: str = "passphrase=") -> bytes | None:
    """
    Fetch a passphrase from the environment or a file.  C{spelled}: how
    messages write the option (C{"--passphrase "} on the command line).
    """
    if passphrase is None:
        return None
    if passphrase.source == "env":
        value = os.environ.get(passphrase.reference)
        if value is None:
            name = passphrase.shownReference
            hidden = (
                ""
                if name == passphrase.reference
                else " (its name is not shown: it does not look like a variable's name, and may "
                "be the passphrase itself; put that in a variable and give the variable's name)"
            )
            raise CertificateError(
                f"{spelled}{passphrase}: the environment variable {name} is not set{hidden}",
                option="passphrase",
            )
        # The bytes as set: a byte that is not UTF-8 (kept as a surrogate) would make
        # encode("utf-8") fail, and its error would quote part of the passphrase.
        return os.fsencode(value)
    shown = (
        None
        if passphrase.shownReference == passphrase.reference
        else "file:(not shown: it holds no '/' or '.', so it may be the passphrase itself)"
    )
    content = _read(
        passphrase.reference,
        "passphrase",
        "a file holding the passphrase",
        shown,
        # file:PATH: a quoted path after passphrase= would be hidden as if typed literally
        prefix=f"{spelled}{passphrase if shown is None else shown}",
    )
    lines = content.splitlines()
    return lines[0] if lines else b""  # an empty one opens PKCS#12 files made without a password


def _warnIfReadable(path: str) -> None:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warn(
            "private key file {path} can be read by group or others (mode {mode}); chmod 600 it",
            path=path,
            mode=oct(stat.S_IMODE(mode)),
        )


def _loadKeys(data: bytes, path: str, option: str, passphrase: Passphrase | None) -> list[PrivateKeyTypes]:
    blocks = [match.group(0) for match in _PEM_KEY.finditer(data)]
    secret = readPassphrase(passphrase) if blocks else None  # once per file, not once per key
    return [_loadKey(block, path, option, passphrase, secret) for block in blocks]


def _loadKey(
    block: bytes, path: str, option: str, passphrase: Passphrase | None, secret: bytes | None
) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(block, secret)
    except TypeError as e:
        if secret is None:
            raise CertificateError(
                f"the private key in {path!r} ({option}=) is encrypted: add "
                "passphrase=env:VARIABLE or passphrase=file:PATH",
                option="passphrase",
            ) from None
        if "not encrypted" in str(e):
            return serialization.load_pem_private_key(block, None)
        if not secret:
            raise CertificateError(
                f"passphrase={passphrase} gave an empty passphrase (an empty file or first line, "
                f"or an empty variable), and the private key in {path!r} ({option}=) is encrypted: "
                "put its passphrase there",
                option="passphrase",
            ) from None
        raise CertificateError(
            f"the private key in {path!r} ({option}=) cannot be opened", option=option
        ) from None
    except ValueError:
        if secret is not None:
            raise CertificateError(
                f"passphrase={passphrase} does not decrypt the private key in {path!r}",
                option="passphrase",
            ) from None
        raise CertificateError(
            f"{option}={path!r}: the private key in it is damaged or of an unsupported type",
            option=option,
            value=path,
        ) from None


def _loadCertificatesFromData(data: bytes, path: str, option: str) -> list[x509.Certificate]:
    try:
        if _PEM_CERT in data:
            return list(x509.load_pem_x509_certificates(data))
        if data.lstrip().startswith(b"-----BEGIN") or data[:1] != b"\x30":
            return []  # PEM without certificates, or not a DER structure at all
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise CertificateError(
            f"{option}={path!r}: a certificate in it cannot be read (damaged PEM or DER)",
            option=option,
            value=path,
        ) from None


def _isPKCS12(path: str, data: bytes) -> bool:
    return path.lower().endswith((".p12", ".pfx")) or (
        not data.lstrip().startswith(b"-----")
        and data[:1] == b"\x30"
        and _PEM_CERT not in data
        and _derIsNotCertificate(data)
    )


def _derIsNotCertificate(data: bytes) -> bool:
    try:
        x509.load_der_x509_certificate(data)
    except ValueError:
        return True
    return False


def looksLikePKCS12(data: bytes) -> bool:
    """
    Whether C{data} starts as a PKCS#12 file does (a DER or BER SEQUENCE
    whose first element is the version, INTEGER 3): known without a
    passphrase, so a damaged file or another format is not taken for an
    encrypted PKCS#12 file.
    """
    if len(data) < 5 or data[0] != 0x30:
        return False
    first = data[1]
    if first < 0x80:
        offset, length = 2, first
    elif first == 0x80:  # BER indefinite length (some Windows and Java tools)
        offset, length = 2, None
    else:
        size = first & 0x7F
        if size > 4 or len(data) < 2 + size:
            return False
        offset, length = 2 + size, int.from_bytes(data[2 : 2 + size], "big")
    if length is not None and offset + length > len(data):
        return False  # cut short
    return data[offset : offset + 3] == b"\x02\x01\x03"


def _loadPKCS12(data: bytes, path: str, option: str, passphrase: Passphrase | None) -> Identity:
    if not looksLikePKCS12(data):
        raise CertificateError(
            f"{option}={path!r} is not a PKCS#12 file (damaged, cut short, or another format; a PEM "
            "file is named .pem, .crt or .cer)",
            option=option,
            value=path,
        )
    secret = readPassphrase(passphrase)
    try:
        bundle = pkcs12.load_pkcs12(data, secret)
    except ValueError:
        if secret is None:
            raise CertificateError(
                f"{option}={path!r}: the PKCS#12 file cannot be opened without a passphrase "
                "(or is damaged): add passphrase=env:VARIABLE or passphrase=file:PATH",
                option="passphrase",
            ) from None
        raise CertificateError(
            f"passphrase={passphrase} does not open the PKCS#12 file {path!r} (or it is damaged)",
            option="passphrase",
        ) from None
    if bundle.cert is None or bundle.key is None:
        raise CertificateError(
            f"{option}={path!r}: the PKCS#12 file needs both a certificate and its private key",
            option=option,
            value=path,
        )
    return Identity(
        certificate=bundle.cert.certificate,
        key=bundle.key,
        chain=tuple(c.certificate for c in bundle.additional_certs),
        source=path,
    )


def _publicKeyBytes(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _orderChain(leaf: x509.Certificate, others: Iterable[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    """Leaf's issuer first, then its issuer, ...; unrelated extras last."""
    remaining = [c for c in others if c != leaf]
    unique: list[x509.Certificate] = []
    for c in remaining:
        if c not in unique:
            unique.append(c)
    ordered: list[x509.Certificate] = []
    current = leaf
    while True:
        issuer = next(
            (c for c in unique if c not in ordered and c.subject == current.issuer and c != current),
            None,
        )
        if issuer is None:
            break
        ordered.append(issuer)
        current = issuer
    return tuple(ordered + [c for c in unique if c not in ordered])


def checkValidity(certificate: x509.Certificate, source: str, option: str = "certificate") -> None:
    """Refuse certificates outside their validity period; warn near expiry."""
    now = datetime.datetime.now(datetime.timezone.utc)
    notBefore = certificate.not_valid_before_utc
    notAfter = certificate.not_valid_after_utc
    if now < notBefore:
        raise CertificateError(
            f"the certificate {describeCertificate(certificate)} from {source} is not valid "
            f"yet: valid from {notBefore:%Y-%m-%d %H:%M} UTC until {notAfter:%Y-%m-%d %H:%M} UTC",
            option=option,
        )
    if now > notAfter:
        raise CertificateError(
            f"the certificate {describeCertificate(certificate)} from {source} expired on "
            f"{notAfter:%Y-%m-%d %H:%M} UTC (valid from {notBefore:%Y-%m-%d %H:%M} UTC); renew it",
            option=option,
        )
    if notAfter - now < _EXPIRY_WARNING:
        log.warn(
            "certificate {certificate} from {source} expires on {notAfter} UTC",
            certificate=describeCertificate(certificate),
            source=source,
            notAfter=f"{notAfter:%Y-%m-%d %H:%M}",
        )


def loadIdentity(spec: IdentitySpec) -> Identity:
    """
    Load the identity named by C{certificate=}, C{privateKey=} (Twisted: the
    key, possibly with the certificate), C{extraCertChain=} and
    C{passphrase=}.

    @raise CertificateError: for every way the files can be wrong.
    """
    certPath = spec.certificate
    keyPath = spec.privateKey
    if certPath is None and keyPath is None:
        raise CertificateError("no certificate given: add certificate=FILE", option="certificate")
    certOption = "certificate" if certPath is not None else "privateKey"
    if certPath is not None:
        what = "a certificate"
    elif keyPath == TWISTED_SSL_DEFAULT_KEY:
        what = (
            "a PEM file with the certificate and its key (an ssl: server given neither certificate= "
            f"nor privateKey= reads {TWISTED_SSL_DEFAULT_KEY}, as Twisted's does): add certificate=FILE"
        )
    else:
        what = "a PEM file with the certificate and its key, or add certificate=FILE (certKey=)"
    certData = _read(certPath or keyPath, certOption, what)  # type: ignore[arg-type]
    source = certPath or keyPath  # type: ignore[assignment]
    assert source is not None

    if certPath is not None and _isPKCS12(certPath, certData):
        if keyPath is not None:
            raise CertificateError(
                f"certificate={certPath!r} is a PKCS#12 file, which carries its own key: remove privateKey=",
                option="privateKey",
            )
        identity = _loadPKCS12(certData, certPath, "certificate", spec.passphrase)
        _warnIfReadable(certPath)  # it holds the private key too
        extras = list(identity.chain)
    else:
        certificates = _loadCertificatesFromData(certData, source, certOption)
        if not certificates:
            raise CertificateError(
                f"{certOption}={source!r} holds no certificate (expected PEM "
                "'-----BEGIN CERTIFICATE-----' or PKCS#12)",
                option=certOption,
                value=source,
            )
        if keyPath is not None and keyPath != certPath:
            keyData = _read(keyPath, "privateKey", "a private key")
            keys = _loadKeys(keyData, keyPath, "privateKey", spec.passphrase)
            keySource = keyPath
            if not keys:
                raise CertificateError(
                    f"privateKey={keyPath!r} holds no PEM private key", option="privateKey", value=keyPath
                )
        else:
            keys = _loadKeys(certData, source, certOption, spec.passphrase)
            keySource = source
            if not keys:
                raise CertificateError(
                    f"{certOption}={source!r} has a certificate but no private key: add "
                    "privateKey=KEY.pem, or put the key in the same file",
                    option="privateKey",
                )
        _warnIfReadable(keySource)
        key = keys[0]
        wanted = _publicKeyBytes(key.public_key())
        leaf = next((c for c in certificates if _publicKeyBytes(c.public_key()) == wanted), None)
        if leaf is None:
            raise CertificateError(
                f"the private key in {keySource!r} does not match the certificate "
                f"{describeCertificate(certificates[0])} in {source!r}",
                option="privateKey",
            )
        identity = Identity(certificate=leaf, key=key, chain=(), source=source)
        extras = [c for c in certificates if c != leaf]

    if spec.extraCertChain is not None:
        chainData = _read(spec.extraCertChain, "extraCertChain", "a PEM file of intermediates")
        chain = _loadCertificatesFromData(chainData, spec.extraCertChain, "extraCertChain")
        if not chain:
            raise CertificateError(
                f"extraCertChain={spec.extraCertChain!r} holds no PEM certificate",
                option="extraCertChain",
                value=spec.extraCertChain,
            )
        extras.extend(chain)
    checkValidity(identity.certificate, identity.source)
    return Identity(
        certificate=identity.certificate,
        key=identity.key,
        chain=_orderChain(identity.certificate, extras),
        source=identity.source,
    )


_TRUST_SUFFIXES = (".pem", ".crt", ".cer")


def loadCertificates(path: str, option: str) -> list[x509.Certificate]:
    """
    CA certificates from a PEM/DER file or from the C{*.pem}, C{*.crt} and
    C{*.cer} files of a directory.
    """
    location = Path(path)
    if location.is_dir():
        found: list[x509.Certificate] = []
        for child in sorted(location.iterdir()):
            if child.suffix.lower() in _TRUST_SUFFIXES and child.is_file():
                data = _read(str(child), option, "a certificate")
                try:
                    found.extend(_loadCertificatesFromData(data, str(child), option))
                except CertificateError:
                    log.warn("skipping unreadable certificate {path}", path=str(child))
        if not found:
            raise CertificateError(
                f"{option}={path!r}: the directory holds no certificates "
                f"(looked at {', '.join('*' + s for s in _TRUST_SUFFIXES)})",
                option=option,
                value=path,
            )
        return found
    data = _read(path, option, "a PEM file or a directory of CA certificates")
    certificates = _loadCertificatesFromData(data, path, option)
    if not certificates:
        raise CertificateError(
            f"{option}={path!r} holds no certificate; accepted: a PEM file of CA certificates "
            "('-----BEGIN CERTIFICATE-----'), a directory of them (*.pem, *.crt, *.cer), "
            "or store for the certificate store's CAs",
            option=option,
            value=path,
        )
    return certificates
