"""
The certificate store: a directory of PEM and PKCS#12 files, indexed so that
a certificate is found by name or thumbprint with a dictionary access.

Each file is parsed once per process and remembered with its inode, size
and modification time; L{Store.refresh} re-reads only the files whose
signature changed, so re-checking a store of 10,000 certificates costs one
C{stat} per file, not a parse.  Private keys are never loaded here (that is
slow and may need a passphrase): an entry only records where its key is,
and L{securesock._material.loadIdentity} loads and checks it when an
endpoint is built.

Names of an entry: the PKCS#12 friendlyName, the file stem, the subject CN
and the DNS subjectAltNames, every kind matched without regard to case
(casefolded: C{Site}, C{site} and C{SITE} are one name, so two entries whose
names differ only in case are both candidates, an ambiguity, never a silent
pick).  The stem and friendlyName name a file's main certificate (the one
with the key, else the first); the other certificates of a file (a chain)
are found by CN or thumbprint.
"""

from __future__ import annotations

import datetime
import difflib
import hashlib
import os
import re
import stat
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from ._hashes import CertificateHash, spaced
from ._material import MAX_FILE_SIZE, looksLikePKCS12

__all__ = [
    "Entry",
    "Store",
    "openStore",
    "defaultStorePath",
    "describeEntry",
    "CERTIFICATE_SUFFIXES",
    "PKCS12_SUFFIXES",
    "KEY_SUFFIXES",
]

CERTIFICATE_SUFFIXES = (".pem", ".crt", ".cer", ".der")
KEY_SUFFIXES = (".key",)
PKCS12_SUFFIXES = (".p12", ".pfx")
_INDEXED = CERTIFICATE_SUFFIXES + KEY_SUFFIXES + PKCS12_SUFFIXES
_MAX_DEPTH = 4  # sub-directories of the store that are indexed
_MAX_CHAIN = 10

_PEM_KEY = re.compile(rb"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----")
_PEM_CERT = b"-----BEGIN CERTIFICATE-----"


def defaultStorePath(environ: Mapping[str, str] | None = None) -> str:
    """
    C{$SECURESOCK_STORE}, else the user's data directory:
    C{$XDG_DATA_HOME/securesock/store} (C{~/.local/share/...}), or
    C{%LOCALAPPDATA%\\securesock\\store} on Windows.
    """
    env = os.environ if environ is None else environ
    explicit = env.get("SECURESOCK_STORE", "").strip()
    if explicit:
        return os.path.expanduser(explicit)
    if os.name == "nt" and env.get("LOCALAPPDATA"):
        return os.path.join(env["LOCALAPPDATA"], "securesock", "store")
    data = env.get("XDG_DATA_HOME", "").strip()
    if not data or not os.path.isabs(data):  # the XDG spec says: ignore relative paths
        data = os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(data, "securesock", "store")


@dataclass(frozen=True, eq=False)
class Entry:
    """One certificate in the store, and where its private key is."""

    certificate: x509.Certificate
    file: str
    position: int  # index of the certificate in its file
    main: bool  # the file's main certificate: the stem and friendlyName name it
    keyFile: str | None
    keyEncrypted: bool
    friendlyName: str | None
    sha1: bytes
    sha256: bytes
    commonName: str | None
    dnsNames: tuple[str, ...]
    isCA: bool
    selfSigned: bool
    notBefore: datetime.datetime
    notAfter: datetime.datetime

    @property
    def hasKey(self) -> bool:
        return self.keyFile is not None

    @property
    def stem(self) -> str:
        return Path(self.file).stem

    @property
    def subject(self) -> str:
        return self.certificate.subject.rfc4514_string() or "(empty subject)"

    @property
    def names(self) -> tuple[str, ...]:
        """Every name the entry answers to, most specific first."""
        found: list[str] = []
        for name in (
            self.friendlyName if self.main else None,
            self.stem if self.main else None,
            self.commonName,
            *self.dnsNames,
        ):
            if name and name not in found:
                found.append(name)
        return tuple(found)

    def status(self, now: datetime.datetime | None = None) -> str:
        """C{valid}, C{expired} or C{not yet valid}."""
        now = now or datetime.datetime.now(datetime.timezone.utc)
        if now < self.notBefore:
            return "not yet valid"
        if now > self.notAfter:
            return "expired"
        return "valid"

    def __repr__(self) -> str:
        return f"<Entry {describeEntry(self)}>"


def describeEntry(entry: Entry) -> str:
    """One line for messages: thumbprint, subject, validity and file."""
    where = entry.file if entry.position == 0 else f"{entry.file} (certificate {entry.position + 1})"
    return (
        f"sha1 {spaced(entry.sha1)} {entry.subject}, valid until "
        f"{entry.notAfter:%Y-%m-%d} ({entry.status()}), in {where}"
    )


@dataclass(frozen=True)
class _Parsed:
    """What one file holds, with the signature it was read at."""

    signature: tuple[int, int, int]
    entries: tuple[Entry, ...] = ()
    hasKey: bool = False
    keyEncrypted: bool = False
    locked: bool = False  # a PKCS#12 file that needs a passphrase
    problem: str | None = None


def _extension(certificate: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.ExtensionType | None:
    try:
        return certificate.extensions.get_extension_for_class(kind).value
    except (x509.ExtensionNotFound, ValueError):
        return None


def _makeEntry(
    certificate: x509.Certificate,
    path: str,
    position: int,
    *,
    main: bool,
    keyFile: str | None,
    keyEncrypted: bool = False,
    friendlyName: str | None = None,
) -> Entry:
    commonNames = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    commonName = commonNames[0].value if commonNames else None
    san = _extension(certificate, x509.SubjectAlternativeName)
    dnsNames = (
        tuple(san.get_values_for_type(x509.DNSName)) if isinstance(san, x509.SubjectAlternativeName) else ()
    )
    constraints = _extension(certificate, x509.BasicConstraints)
    return Entry(
        certificate=certificate,
        file=path,
        position=position,
        main=main,
        keyFile=keyFile,
        keyEncrypted=keyEncrypted,
        friendlyName=friendlyName,
        sha1=certificate.fingerprint(hashes.SHA1()),
        sha256=certificate.fingerprint(hashes.SHA256()),
        commonName=commonName if isinstance(commonName, str) else None,
        dnsNames=dnsNames,
        isCA=isinstance(constraints, x509.BasicConstraints) and constraints.ca,
        selfSigned=certificate.subject == certificate.issuer,
        notBefore=certificate.not_valid_before_utc,
        notAfter=certificate.not_valid_after_utc,
    )


def _mainIndex(certificates: list[x509.Certificate]) -> int:
    """The certificate a key in the same file belongs to: the first non-CA one."""
    for index, certificate in enumerate(certificates):
        constraints = _extension(certificate, x509.BasicConstraints)
        if not (isinstance(constraints, x509.BasicConstraints) and constraints.ca):
            return index
    return 0


def _parsePEMorDER(path: str, data: bytes, signature: tuple[int, int, int]) -> _Parsed:
    keys = list(_PEM_KEY.finditer(data))
    encrypted = any(m.group(1).startswith(b"ENCRYPTED") for m in keys) or b"Proc-Type: 4,ENCRYPTED" in data
    try:
        if _PEM_CERT in data:
            certificates = list(x509.load_pem_x509_certificates(data))
        elif data[:1] == b"\x30" and not keys:
            certificates = [x509.load_der_x509_certificate(data)]
        else:
            certificates = []
    except ValueError:
        return _Parsed(signature, problem="a certificate in it cannot be read (damaged PEM or DER)")
    main = _mainIndex(certificates)
    entries = tuple(
        _makeEntry(
            certificate,
            path,
            index,
            main=index == main,
            keyFile=path if keys and index == main else None,
            keyEncrypted=encrypted,
        )
        for index, certificate in enumerate(certificates)
    )
    return _Parsed(signature, entries, hasKey=bool(keys), keyEncrypted=encrypted)


def _parsePKCS12(path: str, data: bytes, signature: tuple[int, int, int], secret: bytes | None) -> _Parsed:
    bundle = None
    for attempt in (secret,) if secret is not None else (None, b""):
        try:
            bundle = pkcs12.load_pkcs12(data, attempt)
            break
        except ValueError:
            continue
    if bundle is None:
        if not looksLikePKCS12(data):
            return _Parsed(signature, problem="not a PKCS#12 file (damaged, cut short, or another format)")
        return _Parsed(signature, locked=True)
    entries: list[Entry] = []
    if bundle.cert is not None:
        name = bundle.cert.friendly_name
        entries.append(
            _makeEntry(
                bundle.cert.certificate,
                path,
                0,
                main=True,
                keyFile=path if bundle.key is not None else None,
                keyEncrypted=secret is not None,
                friendlyName=name.decode("utf-8", "replace") if name else None,
            )
        )
    for extra in bundle.additional_certs:
        entries.append(_makeEntry(extra.certificate, path, len(entries), main=False, keyFile=None))
    return _Parsed(signature, tuple(entries), hasKey=bundle.key is not None, keyEncrypted=secret is not None)


def _parseFile(path: str, signature: tuple[int, int, int], secret: bytes | None = None) -> _Parsed:
    try:
        with open(path, "rb") as f:  # _scan saw a regular file
            data = f.read(MAX_FILE_SIZE + 1)
    except OSError as e:
        return _Parsed(signature, problem=f"cannot be read: {e.strerror}")
    if len(data) > MAX_FILE_SIZE:
        return _Parsed(
            signature, problem=f"larger than {MAX_FILE_SIZE // (1024 * 1024)} MiB (not a certificate file)"
        )
    if path.lower().endswith(PKCS12_SUFFIXES):
        return _parsePKCS12(path, data, signature, secret)
    return _parsePEMorDER(path, data, signature)


@dataclass
class _Index:
    """The lookup tables, rebuilt whenever a file changed."""

    entries: tuple[Entry, ...] = ()
    byName: dict[str, list[Entry]] = field(default_factory=dict)  # casefolded names: every kind
    spellings: dict[str, str] = field(default_factory=dict)  # casefolded -> as first written
    sha1: dict[bytes, list[Entry]] = field(default_factory=dict)
    sha256: dict[bytes, list[Entry]] = field(default_factory=dict)
    bySubject: dict[x509.Name, list[Entry]] = field(default_factory=dict)
    locked: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()


def _pairKeys(files: dict[str, _Parsed]) -> Iterable[Entry]:
    """Entries, with C{NAME.crt} paired with a sibling C{NAME.key}."""
    for path, parsed in files.items():
        for entry in parsed.entries:
            if entry.main and entry.keyFile is None and not path.lower().endswith(PKCS12_SUFFIXES):
                stem = os.path.splitext(path)[0]
                sibling = next(
                    (stem + s for s in (".key", ".KEY") if files.get(stem + s, _NO_KEY).hasKey), None
                )
                if sibling is not None:
                    entry = replace(entry, keyFile=sibling, keyEncrypted=files[sibling].keyEncrypted)
            yield entry


_NO_KEY = _Parsed((0, 0, 0))


def _buildIndex(files: dict[str, _Parsed]) -> _Index:
    index = _Index()
    entries = sorted(_pairKeys(files), key=lambda e: (e.file, e.position))
    index.entries = tuple(entries)
    for entry in entries:
        for name in entry.names:
            key = name.casefold()
            found = index.byName.setdefault(key, [])
            if not found or found[-1] is not entry:  # 'web' as stem and as CN: listed once
                found.append(entry)
            index.spellings.setdefault(key, name)
        index.sha1.setdefault(entry.sha1, []).append(entry)
        index.sha256.setdefault(entry.sha256, []).append(entry)
        if entry.isCA:
            index.bySubject.setdefault(entry.certificate.subject, []).append(entry)
    index.locked = tuple(sorted(p for p, parsed in files.items() if parsed.locked))
    index.skipped = tuple(sorted((p, parsed.problem) for p, parsed in files.items() if parsed.problem))
    return index


def _authorityKeyID(certificate: x509.Certificate) -> bytes | None:
    aki = _extension(certificate, x509.AuthorityKeyIdentifier)
    return aki.key_identifier if isinstance(aki, x509.AuthorityKeyIdentifier) else None


def _subjectKeyID(certificate: x509.Certificate) -> bytes | None:
    ski = _extension(certificate, x509.SubjectKeyIdentifier)
    return ski.digest if isinstance(ski, x509.SubjectKeyIdentifier) else None


class Store:
    """
    One store directory and its index.  Use L{openStore}, which keeps one
    L{Store} per directory for the life of the process.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._files: dict[str, _Parsed] = {}
        self._index = _Index()
        self._tried: set[tuple[str, tuple[int, int, int], bytes]] = set()
        self._lock = threading.Lock()
        self.generation = 0  # bumped whenever the index changes

    # --- keeping the index current --------------------------------------

    def _scan(self) -> dict[str, tuple[int, int, int]]:
        """Every indexed file with its signature: one stat per file."""
        found: dict[str, tuple[int, int, int]] = {}
        pending = [(self.path, 0)]
        while pending:
            directory, depth = pending.pop()
            try:
                listing = os.scandir(directory)
            except OSError:
                continue
            with listing:
                for item in listing:
                    name = item.name
                    if name.startswith("."):
                        continue
                    try:
                        if name.lower().endswith(_INDEXED):
                            st = item.stat()
                            if stat.S_ISREG(st.st_mode):
                                found[item.path] = (st.st_ino, st.st_size, st.st_mtime_ns)
                        elif depth < _MAX_DEPTH and item.is_dir():
                            pending.append((item.path, depth + 1))
                    except OSError:
                        continue  # vanished or unreadable meanwhile
        return found

    def refresh(self) -> bool:
        """Re-read the files that changed since the last look; True if any did."""
        with self._lock:
            current = self._scan()
            changed = current.keys() != self._files.keys()
            files: dict[str, _Parsed] = {}
            for path, signature in current.items():
                known = self._files.get(path)
                if known is not None and known.signature == signature:
                    files[path] = known
                else:
                    files[path] = _parseFile(path, signature)
                    changed = True
            if changed or self.generation == 0:
                self._files = files
                self._index = _buildIndex(files)
                self.generation += 1
            return changed

    def unlock(self, secret: bytes) -> bool:
        """Open the encrypted PKCS#12 files this passphrase opens; True if any."""
        with self._lock:
            digest = hashlib.sha256(secret).digest()
            opened = False
            for path in self._index.locked:
                parsed = self._files[path]
                attempt = (path, parsed.signature, digest)
                if attempt in self._tried:
                    continue
                self._tried.add(attempt)
                result = _parseFile(path, parsed.signature, secret)
                if not result.locked:
                    self._files[path] = result
                    opened = True
            if opened:
                self._index = _buildIndex(self._files)
                self.generation += 1
            return opened

    # --- lookups ------------------------------------------------------------

    @property
    def entries(self) -> tuple[Entry, ...]:
        return self._index.entries

    @property
    def locked(self) -> tuple[str, ...]:
        """Encrypted PKCS#12 files not opened yet (their names are unknown)."""
        return self._index.locked

    @property
    def skipped(self) -> tuple[tuple[str, str], ...]:
        """Files that could not be read, with the reason."""
        return self._index.skipped

    def byName(self, name: str) -> list[Entry]:
        """Entries whose friendlyName, stem, CN or a DNS name is C{name}, in any case."""
        return list(self._index.byName.get(name.casefold(), []))

    def lockedByStem(self, name: str) -> list[str]:
        """
        The encrypted PKCS#12 files not opened yet whose stem is C{name} (in
        any case): the name is theirs, though nothing else about them is known.
        """
        wanted = name.casefold()
        return [path for path in self._index.locked if Path(path).stem.casefold() == wanted]

    def byHash(self, thumbprint: CertificateHash) -> list[Entry]:
        table = self._index.sha1 if thumbprint.algorithm == "sha1" else self._index.sha256
        return list(table.get(thumbprint.digest, []))

    def names(self) -> list[str]:
        """Every name, once in any case, as first written."""
        return sorted(self._index.spellings.values())

    def nearestNames(self, name: str, count: int = 5) -> list[str]:
        """Names that look like C{name}, for 'did you mean' messages."""
        spellings = self._index.spellings
        wanted = name.casefold()
        found = [spellings[wanted]] if wanted in spellings else []
        for close in difflib.get_close_matches(wanted, sorted(spellings), n=count, cutoff=0.6):
            if spellings[close] not in found:
                found.append(spellings[close])
        return found[:count]

    def nearestHashes(self, thumbprint: CertificateHash, count: int = 3) -> list[Entry]:
        """Entries whose thumbprint differs from C{thumbprint} in at most 4 hex digits."""
        wanted = thumbprint.digest.hex()
        table = self._index.sha1 if thumbprint.algorithm == "sha1" else self._index.sha256
        close = []
        for digest, entries in table.items():
            if sum(a != b for a, b in zip(digest.hex(), wanted, strict=True)) <= 4:
                close.extend(entries)
        return close[:count]

    def authorities(self) -> list[Entry]:
        """CA certificates (basicConstraints CA:TRUE), one per thumbprint."""
        seen: set[bytes] = set()
        result = []
        for entry in self._index.entries:
            if entry.isCA and entry.sha256 not in seen:
                seen.add(entry.sha256)
                result.append(entry)
        return result

    def issuerOf(self, certificate: x509.Certificate) -> Entry | None:
        """The CA entry that issued C{certificate}: subject and key identifier match, valid preferred."""
        candidates = self._index.bySubject.get(certificate.issuer, [])
        if not candidates:
            return None
        keyID = _authorityKeyID(certificate)
        if keyID is not None:
            matching = [c for c in candidates if _subjectKeyID(c.certificate) in (keyID, None)]
            candidates = matching or candidates
        now = datetime.datetime.now(datetime.timezone.utc)
        return max(candidates, key=lambda c: (c.status(now) == "valid", c.notAfter))

    def chainFor(self, certificate: x509.Certificate) -> tuple[x509.Certificate, ...]:
        """The intermediates from the store above C{certificate}, up to (not including) a root."""
        chain: list[x509.Certificate] = []
        current = certificate
        seen = {certificate.fingerprint(hashes.SHA256())}
        for _ in range(_MAX_CHAIN):
            if current.subject == current.issuer:
                break
            issuer = self.issuerOf(current)
            if issuer is None or issuer.selfSigned or issuer.sha256 in seen:
                break
            seen.add(issuer.sha256)
            chain.append(issuer.certificate)
            current = issuer.certificate
        return tuple(chain)


_STORES: dict[str, Store] = {}
_STORES_LOCK = threading.Lock()


def openStore(path: str) -> Store:
    """The process-wide L{Store} for C{path}, re-checked (one stat per file)."""
    key = os.path.realpath(os.path.expanduser(path))
    with _STORES_LOCK:
        store = _STORES.get(key)
        if store is None:
            store = _STORES[key] = Store(key)
    store.refresh()
    return store
