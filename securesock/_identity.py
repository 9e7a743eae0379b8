"""
Which certificates a description asks for: files, store names, thumbprints.

C{certificate=} keeps its file meaning when it names an existing file (or
looks like a path, so a missing file is reported as one); otherwise it is a
name in the certificate store.  C{certificateHash=} picks store entries by
thumbprint.  Servers may list several of either, separated by ',': each is
served to the clients asking for its names by SNI, the first to clients that
send none.

Each choice is returned as a L{Selected}: the loaded identity plus the files
it came from, so that a server can read them again when they change.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, replace

from cryptography import x509
from twisted.logger import Logger

from ._errors import CertificateError
from ._hashes import CertificateHash, looksLikeHash, spaced
from ._material import Identity, _orderChain, loadCertificates, loadIdentity, readPassphrase
from ._options import IdentitySpec
from ._store import (
    CERTIFICATE_SUFFIXES,
    PKCS12_SUFFIXES,
    Entry,
    Store,
    defaultStorePath,
    describeEntry,
    openStore,
)

__all__ = [
    "Selected",
    "storePath",
    "requireStore",
    "selectServerIdentities",
    "selectClientIdentity",
    "loadSelected",
    "trustCertificates",
    "sniNamesOf",
    "everyEntrySources",
]

log = Logger()

_PATH_SUFFIXES = CERTIFICATE_SUFFIXES + PKCS12_SUFFIXES + (".key",)


@dataclass(frozen=True)
class Selected:
    """One identity a description chose, and the files to read it from again."""

    identity: Identity
    source: IdentitySpec  # file-level: what loadIdentity reads
    files: tuple[str, ...]  # a change to any of these is a renewal
    storePath: str | None  # the store whose intermediates complete the chain
    sniNames: tuple[str, ...]  # lower-case names it is served for
    label: str  # how the description named it, for messages
    extraNames: tuple[str, ...] = ()  # SNI names besides the certificate's own (the store name)


def storePath(explicit: str | None) -> str:
    """The store directory: C{store=}, else the default."""
    return os.path.expanduser(explicit) if explicit else defaultStorePath()


def requireStore(explicit: str | None, option: str, value: str) -> Store:
    """The indexed store, or an error saying which directory was looked at."""
    path = storePath(explicit)
    if not os.path.isdir(path):
        how = (
            "store="
            if explicit
            else "the default store ($SECURESOCK_STORE, else $XDG_DATA_HOME/securesock/store)"
        )
        why = "" if option == "store" else " is not a file, so it names a certificate in the store, but"
        raise CertificateError(
            f"{option}={value!r}{why}{':' if not why else ''} {how} {path!r} is not a directory; "
            "give a file path, set store=DIR, or add certificates with 'securesock store import FILE'",
            option=option,
            value=value,
        )
    return openStore(path)


def _looksLikePath(value: str) -> bool:
    return "/" in value or "\\" in value or os.sep in value or value.lower().endswith(_PATH_SUFFIXES)


def sniNamesOf(certificate: x509.Certificate, *extra: str) -> tuple[str, ...]:
    """The names a certificate is served for: its DNS subjectAltNames (else its CN), lower case."""
    names: list[str] = []
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [n.lower() for n in san.get_values_for_type(x509.DNSName)]
    except (x509.ExtensionNotFound, ValueError):
        pass
    if not names:
        names = [
            str(a.value).lower() for a in certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        ]
    for name in extra:
        if name and name.lower() not in names:
            names.append(name.lower())
    return tuple(names)


def addressesOf(certificate: x509.Certificate) -> tuple[str, ...]:
    """The IP addresses of a certificate's subjectAltNames, as compressed text (::1, 127.0.0.1)."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return ()
    return tuple(
        address.compressed
        for address in san.get_values_for_type(x509.IPAddress)
        if not isinstance(address, (ipaddress.IPv4Network, ipaddress.IPv6Network))
    )


def _filesOf(source: IdentitySpec) -> tuple[str, ...]:
    return tuple(
        dict.fromkeys(
            p for p in (source.certificate, source.privateKey, source.extraCertChain) if p is not None
        )
    )


def _absolute(source: IdentitySpec) -> IdentitySpec:
    """
    C{source} with absolute paths, as read now: a renewal reads them again
    later, after twistd -d has changed the working directory.
    """

    def absolute(path: str | None) -> str | None:
        return None if path is None else os.path.abspath(path)

    passphrase = source.passphrase
    if passphrase is not None and passphrase.source == "file":
        passphrase = replace(passphrase, reference=os.path.abspath(passphrase.reference))
    return replace(
        source,
        certificate=absolute(source.certificate),
        privateKey=absolute(source.privateKey),
        extraCertChain=absolute(source.extraCertChain),
        passphrase=passphrase,
    )


def loadSelected(
    source: IdentitySpec, store: Store | None, label: str, option: str, extraNames: tuple[str, ...] = ()
) -> Selected:
    """Load (or load again) one identity from its files, completing the chain from the store."""
    try:
        identity = loadIdentity(source)
    except CertificateError as e:
        if store is None:
            raise
        # The files are the store's, not options the user wrote: "(certificate=)" would mislead.
        inner = re.sub(r" \((?:certificate|privateKey)=\)", "", e.message)
        raise CertificateError(
            f"{option}={label!r} (store entry {source.certificate}): {inner}", option=e.option or option
        ) from None
    source = _absolute(source)
    if store is not None:
        fromStore = store.chainFor(identity.certificate)
        if fromStore:
            identity = Identity(
                certificate=identity.certificate,
                key=identity.key,
                chain=_orderChain(identity.certificate, [*identity.chain, *fromStore]),
                source=identity.source,
            )
    return Selected(
        identity=identity,
        source=source,
        files=_filesOf(source),
        storePath=store.path if store is not None else None,
        sniNames=sniNamesOf(identity.certificate, *extraNames),
        label=label,
        extraNames=extraNames,
    )


def _candidates(entries: list[Entry]) -> str:
    return "; ".join(describeEntry(e) for e in entries)


def _fromEntry(
    entry: Entry, spec: IdentitySpec, store: Store, label: str, option: str, name: str
) -> Selected:
    source = IdentitySpec(
        certificate=entry.file,
        privateKey=entry.keyFile if entry.keyFile != entry.file else None,
        extraCertChain=spec.extraCertChain,
        passphrase=spec.passphrase,
    )
    selected = loadSelected(source, store, label, option, (name,) if name else ())
    if selected.identity.certificate != entry.certificate:
        raise CertificateError(
            f"{option}={label!r}: the key in {entry.keyFile} belongs to another certificate of "
            f"{entry.file} than {describeEntry(entry)}; keep one certificate and key per file",
            option=option,
        )
    return selected


def openableFirst(entries: list[Entry], passphraseGiven: bool) -> list[Entry]:
    """
    C{entries} with the copies whose key opens first: keys not encrypted
    when no passphrase is given, encrypted ones when one is (it was given
    for them; a key that is not encrypted refuses a passphrase).  The same
    certificate in several files is not ambiguous, but only such a copy can
    be served.
    """
    return sorted(entries, key=lambda e: e.keyEncrypted != passphraseGiven)


def _withKey(entries: list[Entry], option: str, label: str, store: Store, passphraseGiven: bool) -> Entry:
    """The one identity among C{entries}, or an error that says why there is none or several."""
    usable = openableFirst([e for e in entries if e.hasKey], passphraseGiven)
    if not usable:
        raise CertificateError(
            f"{option}={label!r}: the store {store.path} has this certificate but not its private "
            f"key, so it cannot be presented ({_candidates(entries)}); add the key as a .key file "
            "beside it or import certificate and key together with 'securesock store import'",
            option=option,
            value=label,
        )
    distinct: dict[bytes, Entry] = {}
    for entry in usable:
        distinct.setdefault(entry.sha256, entry)
    current = {digest: e for digest, e in distinct.items() if e.status() == "valid"}
    if current and len(current) < len(distinct):
        # A renewed certificate beside the old one: the expired (or future) copy cannot be
        # served anyway, so it does not make the name ambiguous.
        for entry in distinct.values():
            if entry.sha256 not in current:
                log.info(
                    "{option}={label}: passing over {entry}",
                    option=option,
                    label=label,
                    entry=describeEntry(entry),
                )
        distinct = current
    if len(distinct) > 1:
        raise CertificateError(
            f"{option}={label!r}: {len(distinct)} certificates in the store {store.path} match; "
            f"choose one with certificateHash= (SHA-1 shown): {_candidates(list(distinct.values()))}",
            option=option,
            value=label,
        )
    return next(iter(distinct.values()))


def _lockedHint(store: Store, secret: bytes | None) -> str:
    """What the encrypted PKCS#12 files left closed mean for a lookup that found nothing."""
    if not store.locked:
        return ""
    closed = f"; {len(store.locked)} encrypted PKCS#12 file(s) could not be searched"
    if secret is None:
        return f"{closed}: add passphrase="
    return f"{closed}: the passphrase= given does not open them (a wrong passphrase?)"


def _entryForName(store: Store, name: str, secret: bytes | None) -> Entry:
    if secret is not None and store.locked:
        store.unlock(secret)
    entries = store.byName(name)
    if entries:
        return _withKey(entries, "certificate", name, store, secret is not None)
    owners = store.lockedByStem(name)
    if owners:  # the name is that file's, though nothing in it can be read without its passphrase
        opened = (
            "add passphrase=env:NAME or passphrase=file:PATH to open it"
            if secret is None
            else "the passphrase= given does not open it (a wrong passphrase?)"
        )
        raise CertificateError(
            f"certificate={name!r} is the name of the encrypted PKCS#12 file {owners[0]} (its stem): {opened}",
            option="certificate",
            value=name,
        )
    nearest = store.nearestNames(name)
    if nearest:
        hint = "nearest names: " + ", ".join(nearest)
    elif store.entries:
        hint = f"it holds {len(store.entries)} certificates, e.g. " + ", ".join(store.names()[:5])
    else:
        hint = "it is empty"
    locked = _lockedHint(store, secret)
    if looksLikeHash(name):
        hint = f"it looks like a thumbprint: give it as certificateHash= instead; {hint}"
    raise CertificateError(
        f"certificate={name!r}: no certificate in the store {store.path} has this name "
        f"(friendlyName, file stem, subject CN or DNS name), and no such file exists; {hint}{locked}",
        option="certificate",
        value=name,
    )


def _entryForHash(store: Store, thumbprint: CertificateHash, secret: bytes | None) -> Entry:
    if secret is not None and store.locked:
        store.unlock(secret)
    label = spaced(thumbprint.digest)
    entries = store.byHash(thumbprint)
    if entries:
        return _withKey(entries, "certificateHash", label, store, secret is not None)
    close = store.nearestHashes(thumbprint)
    hint = f"; close to: {_candidates(close)}" if close else ""
    locked = _lockedHint(store, secret)
    raise CertificateError(
        f"certificateHash={label!r}: no certificate in the store {store.path} has this "
        f"{thumbprint.algorithm.upper().replace('SHA', 'SHA-')} thumbprint "
        f"({len(store.entries)} certificates searched){hint}{locked}",
        option="certificateHash",
        value=label,
    )


def everyEntrySources(store: Store) -> list[tuple[IdentitySpec, str]]:
    """
    The files of every identity in the store that can be served now (one
    per certificate; expired and not yet valid ones are left out), with
    labels for messages.
    """
    sources: list[tuple[IdentitySpec, str]] = []
    seen: set[bytes] = set()
    for entry in openableFirst(list(store.entries), passphraseGiven=False):
        if not entry.hasKey or entry.sha256 in seen:
            continue
        seen.add(entry.sha256)
        if entry.status() != "valid":
            log.warn("store {path}: not serving {entry}", path=store.path, entry=describeEntry(entry))
            continue
        source = IdentitySpec(
            certificate=entry.file, privateKey=entry.keyFile if entry.keyFile != entry.file else None
        )
        sources.append((source, entry.stem))
    return sources


def _everyEntry(store: Store) -> list[Selected]:
    """Every identity in the store (Twisted's tls:DIRECTORY:PORT); unusable ones are skipped."""
    selected: list[Selected] = []
    problems: list[str] = []
    for source, label in everyEntrySources(store):
        try:
            selected.append(loadSelected(source, store, label, "certificate"))
        except CertificateError as e:
            log.warn(
                "store {path}: not serving {file}: {why}", path=store.path, file=source.certificate, why=e
            )
            problems.append(e.message)
    if not selected:
        why = f"; skipped: {'; '.join(problems[:5])}" if problems else ""
        raise CertificateError(
            f"the certificate directory {store.path} holds no currently valid certificate with its "
            f"private key{why}",
            option="store",
            value=store.path,
        )
    return selected


def _select(spec: IdentitySpec, storeOption: str | None) -> list[Selected]:
    secret = readPassphrase(spec.passphrase) if spec.passphrase is not None else None
    if spec.everyEntry:
        return _everyEntry(requireStore(storeOption, "store", storeOption or ""))
    if spec.certificateHash:
        label = ",".join(spaced(h.digest) for h in spec.certificateHash)
        hashStore = requireStore(storeOption, "certificateHash", label)
        return [
            _fromEntry(
                _entryForHash(hashStore, h, secret), spec, hashStore, spaced(h.digest), "certificateHash", ""
            )
            for h in spec.certificateHash
        ]
    value = spec.certificate
    if value is None or spec.privateKey is not None or os.path.isfile(value):
        if value is not None and spec.privateKey is not None and not os.path.exists(value):
            raise CertificateError(
                f"certificate={value!r}: no such file (looked in {os.getcwd()!r} for relative "
                "paths); with privateKey= it must be the certificate's file: a name in the "
                "certificate store brings its own key, so remove privateKey= to look it up there",
                option="certificate",
                value=value,
            )
        return [loadSelected(spec, None, value or spec.privateKey or "", "certificate")]
    parts = [part.strip() for part in value.split(",")]
    if any(not part for part in parts):
        raise CertificateError(
            f"certificate={value!r}: an empty name; separate names with single commas",
            option="certificate",
            value=value,
        )
    if len(parts) > 1 and spec.extraCertChain is not None:
        raise CertificateError(
            "extraCertChain= goes with a single certificate; with several, put each chain in its "
            "certificate's file or the intermediates in the store",
            option="extraCertChain",
        )
    store: Store | None = None
    result = []
    for part in parts:
        if os.path.isfile(part) or _looksLikePath(part):
            source = IdentitySpec(
                certificate=part, extraCertChain=spec.extraCertChain, passphrase=spec.passphrase
            )
            result.append(loadSelected(source, None, part, "certificate"))
            continue
        if store is None:
            store = requireStore(storeOption, "certificate", part)
        result.append(_fromEntry(_entryForName(store, part, secret), spec, store, part, "certificate", part))
    return result


def selectServerIdentities(spec: IdentitySpec, storeOption: str | None) -> list[Selected]:
    """The identities a server presents, the default (no SNI) first."""
    return _select(spec, storeOption)


def selectClientIdentity(spec: IdentitySpec, storeOption: str | None) -> Selected | None:
    """The one certificate a client presents, if any."""
    if not spec.given:
        return None
    selected = _select(spec, storeOption)
    if len(selected) > 1:
        raise CertificateError(
            f"a client presents one certificate, but {len(selected)} were given "
            f"({', '.join(s.label for s in selected)}); keep one",
            option="certificateHash" if spec.certificateHash else "certificate",
        )
    return selected[0]


def trustCertificates(
    value: str | None, option: str, storeOption: str | None
) -> list[x509.Certificate] | None:
    """
    The CA certificates C{trustRoots=} / C{caCerts=} name: a file or
    directory, or C{store} for the CA certificates of the store (a file or
    directory called C{store} keeps its file meaning).
    """
    if value is None:
        return None
    if value.strip().lower() == "store" and not os.path.exists(value):
        path = storePath(storeOption)
        if not os.path.isdir(path):
            raise CertificateError(
                f"{option}=store: the certificate store {path!r} is not a directory; set store=DIR "
                "or create it with 'securesock store import' / 'securesock store new'",
                option=option,
                value=value,
            )
        authorities = openStore(path).authorities()
        if not authorities:
            raise CertificateError(
                f"{option}=store: the store {path} holds no CA certificate (basicConstraints CA:TRUE); "
                "import one with 'securesock store import ca.pem'",
                option=option,
                value=value,
            )
        return [entry.certificate for entry in authorities]
    return loadCertificates(value, option)
