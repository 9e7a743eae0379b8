"""
The certificate store's development CA, made on first use by ``securesock
store new`` and by ``twistd securesock`` without ``--listen``.  Its
certificate lives in the store (so ``trustRoots=store`` trusts it), its key
in a hidden directory of the store (never indexed, never served).  Files
are created exclusively, with their final mode from the start.
"""

from __future__ import annotations

import getpass
import os
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ._devca import Issued, certificatePEM, keyPEM, makeAuthority
from ._errors import CertificateError

__all__ = ["DEVCA_CERTIFICATE", "DEVCA_KEY", "storeAuthority", "writeNew"]

DEVCA_CERTIFICATE = "devca.crt"  # in the store: a CA certificate, trusted by trustRoots=store
DEVCA_KEY = os.path.join(".devca", "devca.key")  # hidden: never indexed, never served


def writeNew(target: Path, data: bytes, mode: int) -> None:
    """Write a file that must not exist yet, readable only as C{mode} allows from the start."""
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "wb") as f:
        f.write(data)
    os.chmod(target, mode)


def storeAuthority(store: str) -> tuple[Issued, Path, bool]:
    """
    The store's development CA, made on first use: (CA, certificate file,
    made now).

    @raise CertificateError: when one of its two files is missing or damaged.
    """
    certificatePath = Path(store) / DEVCA_CERTIFICATE
    keyPath = Path(store) / DEVCA_KEY
    if certificatePath.exists() or keyPath.exists():
        if not (certificatePath.exists() and keyPath.exists()):
            raise CertificateError(
                f"the development CA of {store} is incomplete ({certificatePath} and {keyPath} "
                "belong together); restore the missing file or remove both"
            )
        try:
            certificate = x509.load_pem_x509_certificate(certificatePath.read_bytes())
            key = serialization.load_pem_private_key(keyPath.read_bytes(), None)
        except OSError as e:
            raise CertificateError(
                f"the development CA of {store} cannot be read: {e.filename}: {e.strerror}"
            ) from None
        except (ValueError, TypeError):
            raise CertificateError(
                f"the development CA of {store} cannot be read ({certificatePath} or {keyPath} is "
                "damaged); remove both and a new CA is made"
            ) from None
        return Issued(certificate, key), certificatePath, False  # type: ignore[arg-type]
    os.makedirs(keyPath.parent, mode=0o700, exist_ok=True)
    os.chmod(keyPath.parent, 0o700)
    try:
        owner = f"{getpass.getuser()}@{socket.gethostname()}"
    except (KeyError, OSError):
        owner = socket.gethostname()
    authority = makeAuthority(f"securesock development CA {owner}"[:64])
    writeNew(keyPath, keyPEM(authority.key), 0o600)
    writeNew(certificatePath, certificatePEM(authority.certificate), 0o644)
    return authority, certificatePath, True
