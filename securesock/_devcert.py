"""
The development certificate ``twistd securesock`` serves when no ``--listen``
is given: ``localhost`` (with 127.0.0.1 and ::1) in the certificate store,
signed by the store's development CA, made on first use and renewed when it
is about to expire.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from ._devca import certificatePEM, issue, keyPEM
from ._devstore import storeAuthority, writeNew
from ._errors import CertificateError
from ._store import defaultStorePath

__all__ = ["developmentCertificate", "DEVELOPMENT_NAME"]

DEVELOPMENT_NAME = "localhost"
_NAMES = ["localhost", "127.0.0.1", "::1"]
_RENEW_BEFORE = datetime.timedelta(days=14)


def _stillGood(path: Path, authority: x509.Certificate) -> bool:
    """Not about to expire, and signed by the CA clients are told to trust (it may have been remade)."""
    try:
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
        certificate.verify_directly_issued_by(authority)
    except (OSError, ValueError, TypeError, InvalidSignature):
        return False
    return certificate.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc) > _RENEW_BEFORE


def developmentCertificate(store: str | None = None) -> tuple[str, str]:
    """
    The development certificate file (certificate and key) and the CA file
    that clients trust, creating either when missing.
    """
    directory = store or defaultStorePath()
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)  # as 'securesock store' makes it
        authority, caFile, _ = storeAuthority(directory)
        target = Path(directory) / f"{DEVELOPMENT_NAME}.pem"
        if not _stillGood(target, authority.certificate):
            leaf = issue(authority, _NAMES, commonName=DEVELOPMENT_NAME, days=365)
            fresh = target.with_name(target.name + ".new")  # not a store suffix: never indexed
            fresh.unlink(missing_ok=True)
            writeNew(fresh, certificatePEM(leaf.certificate) + keyPEM(leaf.key), 0o600)
            os.replace(fresh, target)
    except OSError as e:  # a HOME that is not writable, a store path through a file
        raise CertificateError(
            f"the certificate store {directory!r} cannot hold the development certificate "
            f"({e.strerror or e}: {e.filename or directory!r}); set SECURESOCK_STORE to a "
            "writable directory, or give --listen with a certificate",
            option="store",
            value=directory,
        ) from None
    return str(target), str(caFile)
