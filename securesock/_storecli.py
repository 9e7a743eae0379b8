"""
C{securesock store ...}: list, show, import, remove and export store
entries, and make development certificates signed by a local CA that the
store creates once (as mkcert and trustme do).
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from ._cli import CommandError
from ._devca import certificatePEM, issue, keyPEM
from ._devstore import DEVCA_CERTIFICATE, DEVCA_KEY, storeAuthority, writeNew
from ._errors import CertificateError
from ._hashes import looksLikeHash, parseCertificateHash, spaced
from ._material import (
    _PEM_KEY,
    _isPKCS12,
    _loadCertificatesFromData,
    _publicKeyBytes,
    loadIdentity,
    looksLikePKCS12,
    readPassphrase,
)
from ._material import _read as _readFile
from ._options import IdentitySpec, Passphrase
from ._optiontable import SERVER, optionsFor
from ._store import (
    CERTIFICATE_SUFFIXES,
    KEY_SUFFIXES,
    PKCS12_SUFFIXES,
    Entry,
    Store,
    defaultStorePath,
    describeEntry,
    openStore,
)

__all__ = ["addStoreCommands"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}")
_DNS = re.compile(
    r"(\*\.)?([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?"
)


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _storeDir(args: argparse.Namespace) -> str:
    path = os.path.expanduser(args.store) if getattr(args, "store", None) else defaultStorePath()
    if os.path.exists(path) and not os.path.isdir(path):
        raise CommandError(
            f"the certificate store {path} is not a directory (give --store DIR, or set "
            "$SECURESOCK_STORE to a directory)"
        )
    return path


def _openExisting(args: argparse.Namespace) -> Store:
    path = _storeDir(args)
    if not os.path.isdir(path):
        raise CommandError(
            f"the certificate store {path} does not exist (add certificates with "
            "'securesock store import FILE' or 'securesock store new NAME', or give --store DIR)"
        )
    store = openStore(path)
    secret = _secret(args)
    if secret is not None and store.locked:
        store.unlock(secret)
    return store


def _passphrase(args: argparse.Namespace) -> Passphrase | None:
    value = getattr(args, "passphrase", None)
    if value is None:
        return None
    return optionsFor(SERVER)["passphrase"].convert("--passphrase", value)  # type: ignore[return-value]


def _passphraseGiven(args: argparse.Namespace) -> bool:
    return getattr(args, "passphrase", None) is not None


def _secret(args: argparse.Namespace) -> bytes | None:
    return readPassphrase(_passphrase(args), spelled="--passphrase ")


def _find(store: Store, ident: str, *, passphraseGiven: bool) -> Entry:
    """The one entry C{ident} (a name or a thumbprint) names."""
    if looksLikeHash(ident) and not store.byName(ident):
        thumbprint = parseCertificateHash(ident, "ID")
        entries = store.byHash(thumbprint)
        what = f"thumbprint {spaced(thumbprint.digest)}"
    else:
        entries = store.byName(ident)
        what = f"name {ident!r}"
    distinct: dict[bytes, Entry] = {}
    for entry in entries:
        # The same certificate in several files: prefer the copy with its key.
        if entry.sha256 not in distinct or (entry.hasKey and not distinct[entry.sha256].hasKey):
            distinct[entry.sha256] = entry
    if not distinct:
        owners = store.lockedByStem(ident)
        if owners:
            raise CommandError(
                f"the name {ident!r} belongs to the encrypted PKCS#12 file {owners[0]} (its stem): "
                + (
                    "the --passphrase given does not open it (a wrong passphrase?)"
                    if passphraseGiven
                    else "give --passphrase env:VARIABLE or --passphrase file:PATH to open it"
                )
            )
        nearest = store.nearestNames(ident) if not looksLikeHash(ident) else []
        hint = f"; nearest names: {', '.join(nearest)}" if nearest else ""
        locked = ""
        if store.locked:
            locked = f"; {len(store.locked)} encrypted PKCS#12 file(s) not searched: " + (
                "the --passphrase given does not open them (a wrong passphrase?)"
                if passphraseGiven
                else "give --passphrase"
            )
        raise CommandError(f"no certificate in the store {store.path} has the {what}{hint}{locked}")
    if len(distinct) > 1:
        raise CommandError(
            f"{len(distinct)} certificates in the store {store.path} have the {what}; give the "
            "SHA-1 of one: " + "; ".join(describeEntry(e) for e in distinct.values())
        )
    return next(iter(distinct.values()))


def _keyColumn(entry: Entry) -> str:
    if not entry.hasKey:
        return "no"
    return "encrypted" if entry.keyEncrypted else "yes"


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]


# --- list / show --------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    path = _storeDir(args)
    if not os.path.isdir(path):
        _out(f"the certificate store {path} does not exist yet (no certificates)")
        return 0
    store = _openExisting(args)
    rows = [("NAMES", "SUBJECT", "SHA-1", "SHA-256", "VALID UNTIL", "KEY", "FILE")]
    for entry in store.entries:
        until = f"{entry.notAfter:%Y-%m-%d}" + ("" if entry.status() == "valid" else f" ({entry.status()})")
        rows.append(
            (
                ", ".join(entry.names) or "-",
                entry.subject,
                spaced(entry.sha1),
                entry.sha256.hex(),
                until,
                _keyColumn(entry),
                entry.file,
            )
        )
    closed = (
        "(encrypted PKCS#12: the --passphrase given does not open it)"
        if _passphraseGiven(args)
        else "(encrypted PKCS#12: give --passphrase)"
    )
    for locked in store.locked:
        rows.append((Path(locked).stem, closed, "?", "?", "?", "?", locked))
    if len(rows) == 1:
        _out(f"no certificates in {store.path}")
    else:
        for line in _table(rows):
            _out(line)
    for file, why in store.skipped:
        sys.stderr.write(f"securesock: warning: skipped {file}: {why}\n")
    return 0


def _usages(certificate: x509.Certificate) -> str:
    try:
        eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except (x509.ExtensionNotFound, ValueError):
        return "any (no extendedKeyUsage)"
    names = {"1.3.6.1.5.5.7.3.1": "serverAuth", "1.3.6.1.5.5.7.3.2": "clientAuth"}
    return ", ".join(names.get(u.dotted_string, u.dotted_string) for u in eku)


def _sans(certificate: x509.Certificate) -> tuple[list[str], list[str]]:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return [], []
    return list(san.get_values_for_type(x509.DNSName)), [
        str(a) for a in san.get_values_for_type(x509.IPAddress)
    ]


def _left(entry: Entry) -> str:
    now = datetime.datetime.now(datetime.timezone.utc)
    status = entry.status(now)
    if status == "valid":
        days = (entry.notAfter - now).days
        return f"valid, {days} day{'s' if days != 1 else ''} left"
    return status


def _show(args: argparse.Namespace) -> int:
    store = _openExisting(args)
    entry = _find(store, args.id, passphraseGiven=_passphraseGiven(args))
    certificate = entry.certificate
    dns, ips = _sans(certificate)
    key = "none in the store"
    if entry.keyFile is not None:
        key = entry.keyFile + (" (encrypted)" if entry.keyEncrypted else "")
    lines = [
        ("Names", ", ".join(entry.names) or "-"),
        ("Subject", entry.subject),
        ("Issuer", certificate.issuer.rfc4514_string() or "(empty)"),
        ("Serial", f"{certificate.serial_number:x}"),
        ("Valid from", f"{entry.notBefore:%Y-%m-%d %H:%M} UTC"),
        ("Valid until", f"{entry.notAfter:%Y-%m-%d %H:%M} UTC ({_left(entry)})"),
        ("SHA-1", spaced(entry.sha1)),
        ("SHA-256", entry.sha256.hex()),
        ("DNS names", ", ".join(dns) or "-"),
        ("IP addresses", ", ".join(ips) or "-"),
        ("Usages", _usages(certificate)),
        ("CA", "yes" if entry.isCA else "no"),
        ("Private key", key),
        ("File", entry.file if entry.position == 0 else f"{entry.file} (certificate {entry.position + 1})"),
    ]
    for label, value in lines:
        _out(f"{label + ':':<14}{value}")
    _out("Chain:")
    chain = store.chainFor(certificate)
    for number, link in enumerate(chain, start=1):
        _out(f"  {number}. {link.subject.rfc4514_string()}  sha1 {spaced(link.fingerprint(hashes.SHA1()))}")
    top = chain[-1] if chain else certificate
    if top.subject == top.issuer:
        _out("  (self-signed)" if not chain else "  (ends in a self-signed certificate)")
    else:
        root = store.issuerOf(top)
        if root is not None:
            _out(f"  {len(chain) + 1}. {root.subject}  sha1 {spaced(root.sha1)}  (root, not sent)")
        else:
            _out(f"  issuer {top.issuer.rfc4514_string()} is not in the store")
    return 0


# --- import / remove / export ---------------------------------------------------


_FILE_SUFFIXES = (*CERTIFICATE_SUFFIXES, *KEY_SUFFIXES, *PKCS12_SUFFIXES)


def _checkName(name: str, label: str = "--name") -> str:
    accepted = (
        "a store name is a file name without its extension: letters, digits and . _ @ + -, "
        "not starting with a dot or dash, at most 128 characters"
    )
    if not _NAME.fullmatch(name):
        raise CommandError(f"{label} {name!r}: {accepted}")
    if name.lower().endswith(_FILE_SUFFIXES):
        stem = name[: name.rindex(".")]
        raise CommandError(
            f"{label} {name!r}: {accepted}; one ending in {name[len(stem) :]} would be taken for a "
            f"file's path by certificate= (the store adds the extension itself)"
            + (
                f": give {stem!r}"
                if _NAME.fullmatch(stem) and not stem.lower().endswith(_FILE_SUFFIXES)
                else ""
            )
        )
    return name


def _newFile(
    store: str, filename: str, label: str, secret: bytes | None = None, passphraseGiven: bool = False
) -> Path:
    """
    A new file of the store; refused when its name already names an entry
    (another suffix, another case, an encrypted PKCS#12 file's stem).
    """
    target = Path(store) / filename
    if target.exists():
        raise CommandError(f"{target} already exists; remove it first or choose another {label}")
    if os.path.isdir(store):
        name = target.stem
        existing = openStore(store)
        if secret is not None and existing.locked:
            existing.unlock(secret)
        wanted = name.casefold()
        taken = [
            e
            for e in existing.byName(name)
            if e.main and wanted in (e.stem.casefold(), (e.friendlyName or "").casefold())
        ]
        if taken:
            raise CommandError(
                f"the name {name!r} is already used in the store by {describeEntry(taken[0])}; "
                f"remove it first or choose another {label}"
            )
        owners = existing.lockedByStem(name)
        if owners:
            raise CommandError(
                f"the name {name!r} is already used in the store by the encrypted PKCS#12 file "
                f"{owners[0]} (its stem); remove it first or choose another {label}"
            )
        if existing.locked:
            why = (
                "the --passphrase given does not open them"
                if passphraseGiven
                else "give --passphrase to check them"
                if label == "--name"
                else "check with 'securesock store list --passphrase SOURCE'"
            )
            sys.stderr.write(
                f"securesock: warning: not checked whether the friendlyName inside "
                f"{len(existing.locked)} encrypted PKCS#12 file(s) is {name!r} (it is encrypted too; "
                f"{why}): {', '.join(existing.locked)}\n"
            )
    os.makedirs(store, mode=0o700, exist_ok=True)
    return target


def _read(path: str, label: str, what: str) -> bytes:
    """A regular file of a sane size (not a FIFO, not /dev/zero), or a message naming C{label}."""
    try:
        os.stat(path)
    except OSError as e:
        raise CommandError(f"{label} {path}: {e.strerror}") from None
    try:
        return _readFile(path, label, what, prefix=f"{label} {path}")
    except CertificateError as e:
        raise CommandError(e.message) from None


def _import(args: argparse.Namespace) -> int:
    store = _storeDir(args)
    data = _read(args.file, "FILE", "a PEM, DER or PKCS#12 file")
    name = (
        _checkName(args.name, "--name")
        if args.name
        else _checkName(Path(args.file).stem, "FILE's stem (give --name NAME)")
    )
    secret = _secret(args)  # read once, and before anything is written
    if _isPKCS12(args.file, data):
        if args.key:
            raise CommandError("--key: a PKCS#12 file carries its own key")
        if not looksLikePKCS12(data):
            raise CommandError(
                f"FILE {args.file}: not a PKCS#12 file (damaged, cut short, or another format; a PEM "
                "file is named .pem, .crt or .cer)"
            )
        try:
            bundle = pkcs12.load_pkcs12(data, secret)
        except ValueError:
            raise CommandError(
                f"--passphrase {_passphrase(args)} does not open the PKCS#12 file {args.file} (or it is damaged)"
                if secret is not None
                else f"FILE {args.file}: the PKCS#12 file cannot be opened without a passphrase: "
                "give --passphrase env:VARIABLE or --passphrase file:PATH (or it is damaged)"
            ) from None
        if bundle.cert is None:
            raise CommandError(f"{args.file}: the PKCS#12 file holds no certificate")
        suffix = (
            Path(args.file).suffix.lower() if Path(args.file).suffix.lower() in PKCS12_SUFFIXES else ".p12"
        )
        target = _newFile(store, name + suffix, "--name", secret, _passphraseGiven(args))
        writeNew(target, data, 0o600)
        certificate = bundle.cert.certificate
        hasKey = bundle.key is not None
    else:
        certificates = _certificatesOf(data, args.file)
        keyData = _read(args.key, "--key", "a PEM private key") if args.key else data
        keys = [m.group(0) for m in _PEM_KEY.finditer(keyData)]
        if args.key and not keys:
            raise CommandError(f"--key {args.key}: holds no PEM private key")
        keyWhere = f"--key {args.key}" if args.key else f"FILE {args.file}"
        certificate = _leafFor(certificates, keys, secret, keyWhere, args.file, _passphrase(args))
        hasKey = bool(keys)
        ordered = [certificate, *(c for c in certificates if c != certificate)]
        target = _newFile(store, name + ".pem", "--name", secret, _passphraseGiven(args))
        writeNew(
            target, certificatePEM(*ordered) + (keys[0] + b"\n" if keys else b""), 0o600 if hasKey else 0o644
        )
    imported = openStore(store)
    if secret is not None and imported.locked:
        imported.unlock(secret)
    entry = next((e for e in imported.entries if e.file == str(target.resolve()) and e.main), None)
    names = ", ".join(entry.names) if entry is not None else name
    _out(f"imported {target}")
    _out(f"  {certificate.subject.rfc4514_string()}  sha1 {spaced(certificate.fingerprint(hashes.SHA1()))}")
    _out(f"  names: {names}; private key: {'yes' if hasKey else 'no'}")
    return 0


def _certificatesOf(data: bytes, path: str) -> list[x509.Certificate]:
    try:
        certificates = _loadCertificatesFromData(data, path, "FILE")
    except CertificateError:
        raise CommandError(f"{path}: a certificate in it cannot be read (damaged PEM or DER)") from None
    if not certificates:
        raise CommandError(f"{path}: holds no certificate (expected PEM, DER or PKCS#12)")
    return certificates


def _leafFor(
    certificates: list[x509.Certificate],
    keys: list[bytes],
    secret: bytes | None,
    keyWhere: str,
    certificateFile: str,
    passphrase: Passphrase | None,
) -> x509.Certificate:
    """
    The certificate the key belongs to (checked when the key can be opened).
    C{keyWhere}: the option and file the key came from, for messages.
    """
    if not keys:
        return certificates[0]
    encrypted = b"ENCRYPTED" in keys[0]
    if encrypted and secret is None:
        sys.stderr.write(
            f"securesock: warning: the private key in {keyWhere} is encrypted; give --passphrase to "
            "check it fits\n"
        )
        return certificates[0]
    try:
        key = serialization.load_pem_private_key(keys[0], secret if encrypted else None)
    except (ValueError, TypeError):
        raise CommandError(
            f"--passphrase {passphrase} does not open the private key in {keyWhere} (a wrong passphrase?)"
            if encrypted
            else f"{keyWhere}: the private key in it cannot be read (damaged, or of an unsupported type)"
        ) from None
    wanted = _publicKeyBytes(key.public_key())
    for certificate in certificates:
        if _publicKeyBytes(certificate.public_key()) == wanted:
            return certificate
    subject = certificates[0].subject.rfc4514_string() or "(empty subject)"
    raise CommandError(
        f"{keyWhere}: the private key does not belong to any certificate in FILE {certificateFile}"
        + (
            f" ({subject})"
            if len(certificates) == 1
            else f" ({len(certificates)} certificates, the first {subject})"
        )
        + "; "
        + (
            "give --key the key of one of them"
            if keyWhere.startswith("--key")
            else "put the key of one of them in it"
        )
    )


def _remove(args: argparse.Namespace) -> int:
    store = _openExisting(args)
    entry = _find(store, args.id, passphraseGiven=_passphraseGiven(args))
    if not entry.main:
        raise CommandError(
            f"{describeEntry(entry)} is part of the chain in {entry.file}; remove that file's "
            "own certificate instead (it takes the whole file)"
        )
    # Every file whose own certificate this is: a copy left behind would still answer to the ID.
    copies = [e for e in store.entries if e.sha256 == entry.sha256 and e.main]
    files = list(dict.fromkeys(p for copy in copies for p in (copy.file, copy.keyFile) if p is not None))
    devcaKey = Path(store.path) / DEVCA_KEY
    if Path(entry.file) == Path(store.path) / DEVCA_CERTIFICATE and devcaKey.exists():
        files.append(str(devcaKey))  # the pair goes together; 'store new' makes a fresh CA
    for path in files:
        os.remove(path)
        _out(f"removed {path}")
    fix = (
        "the --passphrase given does not open it"
        if _passphraseGiven(args)
        else "give --passphrase to remove a copy in it too"
    )
    for locked in store.locked:  # a copy in them would still answer to the ID
        sys.stderr.write(
            f"securesock: warning: not searched for copies: {locked} (an encrypted PKCS#12 file; {fix})\n"
        )
    store.refresh()
    return 0


def _export(args: argparse.Namespace) -> int:
    store = _openExisting(args)
    entry = _find(store, args.id, passphraseGiven=_passphraseGiven(args))
    chain = [] if args.no_chain else list(store.chainFor(entry.certificate))
    data = certificatePEM(entry.certificate, *chain)
    if args.key:
        if entry.keyFile is None:
            raise CommandError(f"--key: the store has no private key for {describeEntry(entry)}")
        passphrase = _passphrase(args)
        try:
            identity = loadIdentity(
                IdentitySpec(
                    certificate=entry.file,
                    privateKey=entry.keyFile if entry.keyFile != entry.file else None,
                    passphrase=passphrase,
                )
            )
        except CertificateError as e:
            if e.option == "passphrase" and passphrase is None:
                raise CommandError(
                    f"--key: the private key of {describeEntry(entry)} is encrypted: give "
                    "--passphrase env:VARIABLE or --passphrase file:PATH"
                ) from None
            if e.option == "passphrase":
                raise CommandError(
                    f"--passphrase {passphrase} does not open the private key of {describeEntry(entry)} "
                    f"(in {entry.keyFile}; a wrong passphrase?)"
                ) from None
            if "expired" in e.message or "not valid yet" in e.message:
                raise CommandError(f"--key: {e.message}") from None
            raise
        # A key that was encrypted stays encrypted, under the same passphrase.
        data += keyPEM(identity.key, readPassphrase(passphrase))  # type: ignore[arg-type]
    if args.out:
        target = Path(args.out)
        if target.exists() or target.is_symlink():
            raise CommandError(f"--out {target} already exists; remove it first or give another --out FILE")
        parent = target.parent
        if not parent.is_dir():
            raise CommandError(
                f"--out {target}: the directory {parent} does not exist"
                + ("" if not parent.exists() else " (it is not a directory)")
                + f"; create it first (mkdir -p {parent}) or give --out a file in an existing directory"
            )
        try:
            writeNew(target, data, 0o600 if args.key else 0o644)
        except OSError as e:
            raise CommandError(
                f"--out {target} cannot be written: {e.strerror}; give --out a new file in a directory "
                "you can write to, or leave --out out to print to stdout"
            ) from None
        _out(f"wrote {target}")
    else:
        sys.stdout.write(data.decode("ascii"))
    return 0


# --- new ------------------------------------------------------------------------


def _subjectAltNames(name: str, given: list[str]) -> list[str]:
    names = [n.strip() for item in given for n in item.split(",") if n.strip()] or [name]
    for san in names:
        try:
            ipaddress.ip_address(san)
        except ValueError:
            if not _DNS.fullmatch(san) or len(san) > 253:
                raise CommandError(
                    f"--san {san!r}: not a DNS name or an IP address"
                    + ("; the store name is used when --san is not given" if not given else "")
                ) from None
    return list(dict.fromkeys(names))


def _trustHint(caFile: Path) -> str:
    if sys.platform == "darwin":
        return (
            f"sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain {caFile}"
        )
    if sys.platform.startswith("win"):
        return f"certutil -addstore -f Root {caFile}"
    return (
        f"sudo cp {caFile} /usr/local/share/ca-certificates/securesock-devca.crt && "
        "sudo update-ca-certificates"
    )


def _new(args: argparse.Namespace) -> int:
    store = _storeDir(args)
    name = _checkName(args.name, "NAME")
    if not 1 <= args.days <= 3650:
        raise CommandError(f"--days {args.days}: accepted: 1..3650")
    sans = _subjectAltNames(name, args.san)
    target = _newFile(store, name + ".pem", "NAME")
    authority, caFile, made = storeAuthority(store)
    leaf = issue(authority, sans, commonName=name, days=args.days, keyType=args.key_type)
    writeNew(target, certificatePEM(leaf.certificate) + keyPEM(leaf.key), 0o600)
    storeOption = "" if store == defaultStorePath() else f":store={store}"
    _out(f"created {target}")
    _out(f"  CN={name}, subjectAltName {', '.join(sans)}")
    _out(
        f"  valid until {leaf.certificate.not_valid_after_utc:%Y-%m-%d}, sha1 {spaced(leaf.certificate.fingerprint(hashes.SHA1()))}"
    )
    _out(f"  serve it:  tls:8443:certificate={name}{storeOption}")
    _out(f"development CA ({'created now' if made else 'already there'}): {caFile}")
    _out(f"  securesock clients: trustRoots={caFile} (or trustRoots=store{storeOption})")
    _out(f"  curl --cacert {caFile} ...; openssl s_client -CAfile {caFile} ...")
    _out(f"  trust it system-wide: {_trustHint(caFile)}")
    return 0


# --- parser -----------------------------------------------------------------------


def addStoreCommands(subcommands: Any) -> None:
    """Register C{store} and its sub-commands."""
    store = subcommands.add_parser(
        "store",
        help="the certificate store: list, show, import, remove, export, new",
        description="Manage the certificate store that certificate=NAME and certificateHash= use.",
    )
    store.add_argument(
        "--store", metavar="DIR", default=argparse.SUPPRESS, help="certificate store directory"
    )
    actions = store.add_subparsers(dest="action", metavar="ACTION", parser_class=type(store))
    actions.required = True

    def action(name: str, handler: Any, help: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = actions.add_parser(name, help=help, description=help)

        def run(args: argparse.Namespace) -> int:
            _passphrase(args)  # a malformed --passphrase is refused whether or not it is needed
            return int(handler(args))

        parser.set_defaults(run=run)
        parser.add_argument(
            "--store", metavar="DIR", default=argparse.SUPPRESS, help="certificate store directory"
        )
        return parser

    def passphrase(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--passphrase",
            metavar="SOURCE",
            help="env:VARIABLE or file:PATH holding the passphrase of encrypted keys and PKCS#12 files",
        )

    passphrase(action("list", _list, "a table of every certificate in the store"))
    show = action("show", _show, "every detail of one certificate, with its chain")
    show.add_argument("id", metavar="ID", help="a name or a SHA-1/SHA-256 thumbprint")
    passphrase(show)
    importing = action("import", _import, "copy a PEM or PKCS#12 file into the store")
    importing.add_argument("file", metavar="FILE")
    importing.add_argument("--name", help="the store name (file stem; default: FILE's stem)")
    importing.add_argument("--key", metavar="KEYFILE", help="the private key, when not inside FILE")
    passphrase(importing)
    remove = action("remove", _remove, "delete a certificate's file (and its .key file) from the store")
    remove.add_argument("id", metavar="ID", help="a name or a thumbprint")
    passphrase(remove)
    export = action("export", _export, "print a certificate and its chain as PEM")
    export.add_argument("id", metavar="ID", help="a name or a thumbprint")
    export.add_argument(
        "--key", action="store_true", help="append the private key (kept encrypted if it was)"
    )
    export.add_argument(
        "--no-chain", action="store_true", help="the certificate alone, without intermediates"
    )
    export.add_argument(
        "--out", metavar="FILE", help="write to FILE (mode 0600 with --key) instead of stdout"
    )
    passphrase(export)
    new = action("new", _new, "a development certificate signed by the store's development CA")
    new.add_argument("name", metavar="NAME", help="store name and subject CN")
    new.add_argument(
        "--san",
        action="append",
        default=[],
        metavar="NAME",
        help="DNS name or IP address (repeat, or join with ',')",
    )
    new.add_argument("--days", type=int, default=365, help="validity in days (default 365)")
    new.add_argument("--key-type", choices=("ec", "rsa"), default="ec", help="P-256 (default) or RSA-2048")
