"""
Serving certificates that change: SNI contexts and renewal.

A server builds one context per certificate it presents.  Every connection
starts on the first one (the "front" context: it holds the session cache
and the ticket keys, which OpenSSL keeps with the context a connection was
made on) and the servername callback moves it to the context of the
certificate its client asked for.  OpenSSL calls that callback for every
ClientHello, with or without SNI, so the same switch serves renewals:

When a file behind a certificate changes, a fresh context is built for it
(pyOpenSSL refuses to change a context that has made connections) and the
name table is replaced.  New connections get the new certificate; open ones
keep theirs.  Every context of an endpoint has the same session id context,
and the front context never changes, so sessions made before a renewal are
still resumed after it.

When to look: the check runs on a new connection, at most once per second
(L{Renewal.interval}): one C{stat} per file, nothing when the server is idle,
no timer to start or stop with the listening port, and the first connection
after a renewal already sees it.  (A reactor C{LoopingCall} would stat files
even when no one connects and must be tied to the port's lifetime.)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import idna
from cryptography import x509
from OpenSSL import SSL
from twisted.logger import Logger

from ._context import installServerNameCallback, serverContext, sessionContextID
from ._creators import ServedContexts, ServerCreator, ServerNameChooser
from ._errors import CertificateError, DescriptionError
from ._hashes import parseCertificateHash, spaced
from ._identity import Selected, addressesOf, everyEntrySources, loadSelected
from ._material import describeCertificate, fingerprint
from ._options import IdentitySpec, ServerOptions
from ._store import Store, openStore

__all__ = ["Served", "Renewal", "serverCreator", "signatureOf"]

log = Logger()

Signature = tuple[tuple[int, int, int] | None, ...]


def signatureOf(files: Sequence[str]) -> Signature:
    """Inode, size and modification time of each file (None: missing)."""
    result: list[tuple[int, int, int] | None] = []
    for path in files:
        try:
            st = os.stat(path)
        except OSError:
            result.append(None)
        else:
            result.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(result)


@dataclass(frozen=True)
class Served:
    """One certificate a server presents, its context and the file signature it was read at."""

    selected: Selected
    context: SSL.Context
    signature: Signature


def _sniKey(name: str) -> bytes | None:
    """
    C{name} as clients send it by SNI: A-labels, encoded as the client side
    encodes (IDNA 2008, UTS 46), or None when no client can ask for it (a
    long non-ASCII CN, say).
    """
    if name.isascii():
        return name.encode()
    wildcard = name.startswith("*.")
    try:
        encoded = idna.encode(name[2:] if wildcard else name, uts46=True)
    except UnicodeError:  # idna.IDNAError is one
        return None
    return b"*." + encoded if wildcard else encoded


def _table(served: Sequence[Served], preferNewest: bool) -> ServedContexts:
    byName: dict[bytes, SSL.Context] = {}
    ordered = (
        sorted(served, key=lambda s: s.selected.identity.certificate.not_valid_after_utc, reverse=True)
        if preferNewest
        else served
    )
    byAddress: dict[str, SSL.Context] = {}
    for item in ordered:
        for name in item.selected.sniNames:
            key = _sniKey(name)
            if key is not None:
                byName.setdefault(key, item.context)
        for address in addressesOf(item.selected.identity.certificate):
            byAddress.setdefault(address, item.context)
    return ServedContexts(served[0].context, byName, byAddress)


def servedByName(served: Sequence[Served], table: ServedContexts | None) -> list[dict[str, Served]]:
    """
    For each certificate, which certificate a client asking for each of its
    names gets: itself, or another one that took the name first (the
    servername callback's own table, so that securesock check says what the server does).
    """
    contexts = {id(item.context): item for item in served}
    result: list[dict[str, Served]] = []
    for item in served:
        names: dict[str, Served] = {}
        for name in item.selected.sniNames:
            key = _sniKey(name)
            found = table.byName.get(key) if table is not None and key is not None else item.context
            if found is not None:
                names[name] = contexts.get(id(found), item)
        result.append(names)
    return result


def hiddenWarning(item: Served, names: dict[str, Served], everyEntry: bool) -> str:
    """Why a certificate of a server is never presented, and what would be."""
    identity = item.selected.identity
    winners = list(dict.fromkeys(f"{w.selected.identity.source}" for w in names.values()))
    rule = (
        "a store serves, for each name, the certificate valid longest"
        if everyEntry
        else "securesock serves, for each name, the first certificate listed in certificate= "
        "(an RSA and an ECDSA certificate for one name, chosen by what the client supports, is not supported)"
    )
    return (
        f"certificate {identity.certificate.subject.rfc4514_string()} from {identity.source} is never served: "
        f"every name it has ({', '.join(names)}) is served by {' and '.join(winners)}; {rule}; "
        "remove it, or give it a name of its own"
    )


def presentedFlags(
    served: Sequence[Served], byName: Sequence[dict[str, Served]], table: ServedContexts | None
) -> list[bool]:
    """
    Whether any client is given each certificate: the first (the default),
    one that keeps a name of its own, or one chosen by the address a client
    connected to (an IP subjectAltName).
    """
    addressed = {id(context) for context in table.byAddress.values()} if table is not None else set()
    return [
        index == 0
        or not names
        or any(winner is item for winner in names.values())
        or id(item.context) in addressed
        for index, (item, names) in enumerate(zip(served, byName, strict=True))
    ]


def hiddenWarnings(served: Sequence[Served], table: ServedContexts, everyEntry: bool) -> list[str]:
    """Warnings for the certificates that no client is ever given."""
    byName = servedByName(served, table)
    return [
        hiddenWarning(item, names, everyEntry)
        for item, names, shown in zip(served, byName, presentedFlags(served, byName, table), strict=True)
        if not shown
    ]


def _warnHidden(served: Sequence[Served], table: ServedContexts, everyEntry: bool) -> None:
    for warning in hiddenWarnings(served, table, everyEntry):
        log.warn("{warning}", warning=warning)


class Renewal:
    """Re-reads a server's certificates when the files behind them change."""

    interval = 1.0  # seconds between two looks at the files

    def __init__(
        self,
        served: list[Served],
        build: Callable[[Selected], SSL.Context],
        chooser: ServerNameChooser,
        *,
        store: Store | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.served = served
        self._build = build
        self._chooser = chooser
        self._store = store  # set when serving every entry of a store
        self._generation = store.generation if store is not None else 0
        self.clock = clock
        self._next = clock() + self.interval
        chooser.served = _table(served, store is not None)
        _warnHidden(served, chooser.served, store is not None)

    def maybeCheck(self) -> None:
        """Check, unless the last check was less than L{interval} ago."""
        now = self.clock()
        if now >= self._next:
            self._next = now + self.interval
            self.check()

    def check(self) -> bool:
        """Look at the files now; rebuild what changed.  True if anything did."""
        wanted: list[tuple[IdentitySpec, str]] = [(s.selected.source, s.selected.label) for s in self.served]
        if self._store is not None:
            self._store.refresh()
            if self._store.generation != self._generation:
                self._generation = self._store.generation
                wanted = everyEntrySources(self._store)
        current = {s.selected.source: s for s in self.served}
        changed = set(current) != {source for source, _ in wanted}
        result: list[Served] = []
        for source, label in wanted:
            old = current.get(source)
            signature = signatureOf(old.selected.files) if old is not None else ()
            if old is not None and signature == old.signature:
                result.append(old)
                continue
            renewed = self._reload(source, label, old)
            changed = changed or renewed is not old
            if renewed is not None:
                result.append(renewed)
        if changed and result:
            self.served = result
            self._chooser.served = _table(result, self._store is not None)
            _warnHidden(result, self._chooser.served, self._store is not None)
        return changed

    def _reload(self, source: IdentitySpec, label: str, old: Served | None) -> Served | None:
        files = old.selected.files if old is not None else ()
        try:
            store = self._store  # already refreshed by check(): no second scan per entry
            if store is None and old is not None and old.selected.storePath:
                store = openStore(old.selected.storePath)
            selected = loadSelected(
                source, store, label, "certificate", old.selected.extraNames if old is not None else ()
            )
            context = self._build(selected)
        except Exception as e:  # runs for a new connection or a SIGHUP: must not fail either
            # CertificateError says what is wrong; anything else (OpenSSL refusing a
            # 1024-bit key, a key type it cannot use) is named by its type and text.
            why = e.message if isinstance(e, CertificateError) else f"{type(e).__name__}: {e}"
            # A file that cannot even be looked at (removed, or a directory the
            # --uid user may not enter) has not necessarily changed: say what is known.
            state = "cannot be read now" if None in signatureOf(files) else "changed but cannot be used"
            log.warn(
                "certificate {label}: its files {state} ({why}); still serving the previous certificate",
                label=label,
                state=state,
                why=why,
            )
            if old is None:
                return None
            return Served(
                old.selected, old.context, signatureOf(files)
            )  # do not retry until it changes again
        unchanged = old is not None and old.selected.identity.certificate == selected.identity.certificate
        log.info(
            "certificate {label} {what}: {certificate}",
            label=label,
            what="re-read, the same certificate" if unchanged else "renewed: now serving",
            certificate=describeCertificate(selected.identity.certificate),
        )
        if old is not None:
            _warnIfThumbprintLeft(label, old.selected.identity.certificate, selected.identity.certificate)
        return Served(selected, context, signatureOf(selected.files))


def _warnIfThumbprintLeft(label: str, before: x509.Certificate, after: x509.Certificate) -> None:
    """
    A store entry chosen by certificateHash= (its label is the thumbprint) was
    renewed: the new certificate is served, as it must be before the old one
    expires, but the description names the old one and will not start again.
    """
    try:
        pinned = parseCertificateHash(label)
    except DescriptionError:
        return  # chosen by name or file: renewals are what it asks for
    if pinned.digest != fingerprint(before, pinned.algorithm) or pinned.digest == fingerprint(
        after, pinned.algorithm
    ):
        return
    log.warn(
        "certificateHash={label}: the store entry was renewed and now holds {certificate}; it is served, "
        "but the description's thumbprint no longer matches it, so the same description will not start "
        "again: change it to certificateHash={new}, or name the entry (certificate=NAME), which follows renewals",
        label=label,
        certificate=describeCertificate(after),
        new=spaced(fingerprint(after, pinned.algorithm)),
    )


def serverCreator(
    options: ServerOptions,
    selected: list[Selected],
    authorities: Sequence[x509.Certificate] | None,
    store: Store | None = None,
) -> tuple[ServerCreator, Renewal]:
    """
    The connection creator of a server presenting C{selected} (the default
    first), kept current by a L{Renewal}.  C{store} is given when the server
    serves every entry of a store, so that new entries are picked up too.
    """
    sessionID = sessionContextID(selected[0].identity)
    chooser = ServerNameChooser(strict=options.sniStrict)

    def build(item: Selected) -> SSL.Context:
        context = serverContext(
            options,
            item.identity,
            sessionID=sessionID,
            authorities=authorities,
        )
        installServerNameCallback(context, chooser)
        return context

    served = [Served(item, build(item), signatureOf(item.files)) for item in selected]
    renewal = Renewal(served, build, chooser, store=store)
    return ServerCreator(served[0].context, chooser, renewal.maybeCheck), renewal
