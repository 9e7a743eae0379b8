"""
Descriptions for fuzzing, built from the real grammar (prefixes, positional
arguments, the option names of securesock._optiontable.OPTIONS, plausible
and implausible values, both spellings: Twisted's and URLs) and mixed with
random text and bytes; and the property every one of them must have: the
parser, with a reactor, builds an endpoint or raises DescriptionError,
nothing else, and no message, value or repr holds a secret, and nothing is
written to the file system on the way.

Shared by tests/test_fuzz.py (a small sample) and
bench/fuzz_descriptions.py (100,000 examples and more).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st
from twisted.internet.interfaces import IStreamClientEndpoint, IStreamServerEndpoint
from twisted.logger import formatEvent, globalLogPublisher

import securesock
from securesock._description import TLS_PREFIXES
from securesock._options import DIALECTS
from securesock._optiontable import CLIENT, OPTIONS, SERVER

from .leaks import LeakScanner

PASSPHRASE_VARIABLE = "SECURESOCK_FUZZ_PASSPHRASE"

# --- files --------------------------------------------------------------------------


@dataclass(frozen=True)
class FuzzFiles:
    """Paths the grammar may name: real files of a test PKI, directories, and missing ones."""

    root: Path

    def path(self, name: str) -> str:
        return str(self.root / name)

    @property
    def certificates(self) -> list[str]:
        names = [
            "server.pem",
            "server.crt",
            "server.p12",
            "chained.pem",
            "client.pem",
            "rsa.pem",
            "expired.pem",
        ]
        return [self.path(n) for n in names] + self.others

    @property
    def keys(self) -> list[str]:
        return [
            self.path(n) for n in ("server.key", "encrypted.key", "other.key", "server.pem")
        ] + self.others

    @property
    def others(self) -> list[str]:
        """Files that are the wrong thing, directories, and paths that do not exist."""
        return [
            self.path("empty.pem"),
            self.path("passphrase.txt"),
            self.path("ca.pem"),
            self.path("cadir"),
            str(self.root),
            self.path("missing.pem"),
            self.path("missing/dir/x.pem"),
            "relative-missing.pem",
            "",
        ]

    @property
    def authorities(self) -> list[str]:
        return [self.path(n) for n in ("ca.pem", "cadir", "other-ca.pem", "intermediate.pem")] + self.others


def writeFuzzPKI(root: Path, passphrase: bytes) -> FuzzFiles:
    """The files FuzzFiles names (for runs outside pytest; tests use the session's pki)."""
    from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12

    from securesock._devca import certificatePEM, issue, keyPEM, makeAuthority

    ca = makeAuthority("fuzz root")
    other = makeAuthority("fuzz other")
    intermediate = makeAuthority("fuzz intermediate", issuer=ca)
    names = ["localhost", "127.0.0.1", "::1"]
    server = issue(ca, names)
    chained = issue(intermediate, names, commonName="chained.localhost")
    client = issue(ca, ["client.localhost"], commonName="fuzz client")
    rsaLeaf = issue(ca, names, keyType="rsa")
    now = datetime.datetime.now(datetime.timezone.utc)
    expired = issue(ca, names, notBefore=now - datetime.timedelta(days=30), days=10)
    files = {
        "ca.pem": certificatePEM(ca.certificate),
        "other-ca.pem": certificatePEM(other.certificate),
        "intermediate.pem": certificatePEM(intermediate.certificate),
        "server.pem": certificatePEM(server.certificate) + keyPEM(server.key),
        "server.crt": certificatePEM(server.certificate),
        "server.key": keyPEM(server.key),
        "encrypted.key": keyPEM(server.key, passphrase),
        "other.key": keyPEM(client.key),
        "chained.pem": certificatePEM(chained.certificate, intermediate.certificate) + keyPEM(chained.key),
        "client.pem": certificatePEM(client.certificate) + keyPEM(client.key),
        "rsa.pem": certificatePEM(rsaLeaf.certificate) + keyPEM(rsaLeaf.key),
        "expired.pem": certificatePEM(expired.certificate) + keyPEM(expired.key),
        "passphrase.txt": passphrase + b"\n",
        "empty.pem": b"not a certificate\n",
        "server.p12": pkcs12.serialize_key_and_certificates(
            b"web",
            server.key,
            server.certificate,
            None,
            BestAvailableEncryption(passphrase),  # type: ignore[arg-type]
        ),
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
        (root / name).chmod(0o600)
    (root / "cadir").mkdir()
    (root / "cadir" / "root.pem").write_bytes(files["ca.pem"])
    return FuzzFiles(root)


# --- values -------------------------------------------------------------------------

_ANY_TEXT = st.text(max_size=40)
_TRICKY = st.text(alphabet=":=\\&?[]%@/ ,+#\t\n'\"\x00\u00e9\u200b", max_size=12)
_NUMBERS = st.one_of(
    st.integers(-10, 70000).map(str),
    st.sampled_from(["0", "00", "+1", "1e3", "0x10", "65536", "99999999999999999999", " 8443 ", "１２"]),
)
_SECONDS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["0", "0.001", "2.5", "10", "-1", "nan", "inf", "1e309", "10s", ""]),
)
_BOOLEANS = st.sampled_from(["yes", "no", "true", "False", "ON", "off", "1", "0", "maybe", ""])
_HOSTS = st.sampled_from(
    [
        "127.0.0.1",
        "::1",
        "[::1]",
        "localhost",
        "example.com",
        "0.0.0.0",
        "::",
        "256.1.1.1",
        "xn--nxasmq6b",
        "é.test",
        "",
    ]
)
_VERSIONS = [
    "SSL2",
    "SSL3",
    "TLS1",
    "TLS1_1",
    "TLS1_2",
    "TLS1_3",
    "TLSv1.2",
    "ProtocolTLS1_3",
    "tls1_3",
    "TLS9",
]
_PROTOCOLS = st.lists(st.sampled_from(_VERSIONS), min_size=0, max_size=4).map("+".join)
_CIPHERS = st.sampled_from(
    [
        "ECDHE+AESGCM",
        "DEFAULT",
        "NULL",
        "eNULL",
        "AES128-SHA",
        "DEFAULT:@SECLEVEL=0",
        "ECDHE+CHACHA20,ECDHE+AESGCM",
        "!ALL",
        "RC4",
    ]
)
_ALPN = st.one_of(
    st.sampled_from(["h2", "h2,http/1.1", "http/1.1,", ",", "x" * 256, "smtp"]),
    st.lists(st.text(min_size=0, max_size=8), max_size=3).map(",".join),
)
_HEX = st.text(alphabet="0123456789abcdefABCDEF: ", min_size=0, max_size=70)
_PINS = st.one_of(
    st.tuples(st.sampled_from(["sha256", "sha1", "SHA256", "md5", ""]), _HEX).map(lambda p: f"{p[0]}:{p[1]}"),
    _HEX,
)
_METHODS = st.sampled_from(
    ["TLS_METHOD", "SSLv23_METHOD", "SSLv3_METHOD", "TLSv1_2_METHOD", "TLSv1_3_METHOD", "tls_method"]
)
_NESTED = st.sampled_from(
    [
        "tcp:0",
        "tcp\\:0",
        "unix:/nonexistent/securesock-fuzz.sock",
        "systemd:domain=INET:index=0",
        "tls:0",
        "tcp:host=localhost:port=1",
        "nonsense:1",
        "tcp://127.0.0.1:0",
    ]
)


def _passphrases(files: FuzzFiles, passphrase: str) -> st.SearchStrategy[str]:
    return st.sampled_from(
        [
            f"env:{PASSPHRASE_VARIABLE}",
            "env:SECURESOCK_FUZZ_UNSET",
            "env:",
            f"file:{files.path('passphrase.txt')}",
            f"file:{files.path('server.key')}",  # a file whose first line is not the passphrase
            f"file:{files.path('missing.txt')}",
            "file:",
            "env",
            passphrase,  # typed literally: refused, and never shown
            passphrase.upper(),
        ]
    )


@functools.lru_cache(maxsize=512)
def valuesFor(name: str, files: FuzzFiles, passphrase: str) -> st.SearchStrategy[str]:
    """Values for an option: plausible ones from the grammar, and noise (built once per name)."""
    certificates = st.sampled_from(files.certificates + ["web", "server", "localhost", "chained.localhost"])
    table: dict[str, st.SearchStrategy[str]] = {
        "port": _NUMBERS,
        "backlog": _NUMBERS,
        "maxHandshakes": _NUMBERS,
        "timeout": _SECONDS,
        "handshakeTimeout": _SECONDS,
        "interface": _HOSTS,
        "address": _HOSTS,
        "host": _HOSTS,
        "bindAddress": _HOSTS,
        "hostname": _HOSTS,
        "protocols": _PROTOCOLS,
        "sslmethod": _METHODS,
        "ciphers": _CIPHERS,
        "alpn": _ALPN,
        "certificate": certificates,
        "certKey": certificates,
        "certificateHash": _HEX,
        "store": st.sampled_from(
            [str(files.root), files.path("cadir"), files.path("missing"), files.path("server.pem")]
        ),
        "privateKey": st.sampled_from(files.keys),
        "extraCertChain": st.sampled_from(files.authorities),
        "passphrase": _passphrases(files, passphrase),
        "dhParameters": st.sampled_from(files.others + [files.path("server.pem")]),
        "verifyClient": st.sampled_from(["none", "optional", "require", "REQUIRE", "always"]),
        "caCerts": st.sampled_from(files.authorities + ["store"]),
        "trustRoots": st.sampled_from(files.authorities + ["store"]),
        "caCertsDir": st.sampled_from(files.authorities),
        "pin": _PINS,
        "endpoint": _NESTED,
        "dialect": st.sampled_from([*DIALECTS, "http", "SMTP", ""]),
    }
    for option in OPTIONS:
        if option.convert.__name__ == "_boolean":
            table.setdefault(option.name, _BOOLEANS)
    plausible = table.get(name, _ANY_TEXT)
    return st.one_of(plausible, plausible, plausible, _TRICKY, _ANY_TEXT)


_NAMES = sorted({n for option in OPTIONS for n in (option.name, *option.aliases)})


_OPTION_NAMES = st.one_of(
    st.sampled_from(_NAMES),
    st.sampled_from(_NAMES),
    st.sampled_from(_NAMES).map(str.lower),
    st.sampled_from(_NAMES).map(lambda n: f" {n.upper()} "),
    st.text(max_size=12),
)


def _optionNames() -> st.SearchStrategy[str]:
    return _OPTION_NAMES


# --- descriptions -------------------------------------------------------------------

_PREFIXES = st.one_of(
    st.sampled_from(sorted(TLS_PREFIXES)),
    st.sampled_from(sorted(TLS_PREFIXES)),
    st.sampled_from(["TLS", "Ssl", "tcp", "tcp6", "unix", "systemd", "ssl ", " tls"]),
    st.text(max_size=8),
)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(":", "\\:")


@functools.lru_cache(maxsize=8)
def _positional(side: str, files: FuzzFiles) -> st.SearchStrategy[list[str]]:
    if side == SERVER:
        return st.lists(
            st.one_of(_NUMBERS, st.sampled_from([str(files.root), "50", "127.0.0.1"])), max_size=3
        )
    return st.lists(st.one_of(_HOSTS, _NUMBERS), max_size=3)


@st.composite
def _twistedForm(draw: Any, side: str, files: FuzzFiles, passphrase: str) -> str:
    prefix = draw(_PREFIXES)
    positional = draw(_positional(side, files))
    pairs = []
    for _ in range(draw(st.integers(0, 6))):
        name = draw(_optionNames())
        value = draw(valuesFor(name.strip(), files, passphrase))
        pairs.append((name, value))
    escape = draw(st.booleans())
    pieces = [prefix, *positional] + [f"{n}={_escape(v) if escape else v}" for n, v in pairs]
    return ":".join(pieces)


@st.composite
def _urlForm(draw: Any, side: str, files: FuzzFiles, passphrase: str) -> str:
    scheme = draw(_PREFIXES)
    host = draw(_HOSTS)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]" if draw(st.booleans()) else host
    port = draw(st.one_of(st.none(), _NUMBERS))
    authority = host + ("" if port is None else f":{port}")
    path = draw(st.sampled_from(["", "/", "/x", "/?"]))
    items = []
    for _ in range(draw(st.integers(0, 6))):
        name = draw(_optionNames())
        value = draw(valuesFor(name.strip(), files, passphrase))
        quoted = draw(st.booleans())
        items.append(f"{quote(name) if quoted else name}={quote(value, safe='') if quoted else value}")
    query = ("?" + "&".join(items)) if items or draw(st.booleans()) else ""
    return f"{scheme}://{authority}{path}{query}"


# Options that keep a description buildable with plausible values (per side).
_SAFE = {
    SERVER: {
        "backlog": st.sampled_from(["5", "50", "1024"]),
        "interface": st.sampled_from(["127.0.0.1", "::1", "localhost"]),
        "protocols": st.sampled_from(["TLS1_2+TLS1_3", "TLS1_3", "TLS1_2", "TLSv1.2+TLSv1.3", "TLS1+TLS1_2"]),
        "ciphers": st.sampled_from(["ECDHE+AESGCM", "ECDHE+CHACHA20\\:ECDHE+AESGCM"]),
        "alpn": st.sampled_from(["h2", "h2,http/1.1"]),
        "sniStrict": _BOOLEANS.filter(lambda b: b in ("yes", "no")),
        "noDelay": st.sampled_from(["yes", "no"]),
        "handshakeTimeout": st.sampled_from(["0.5", "10", "300"]),
        "maxHandshakes": st.sampled_from(["1", "100", "1000000"]),
    },
    CLIENT: {
        "timeout": st.sampled_from(["1", "30", "2.5"]),
        "protocols": st.sampled_from(["TLS1_2+TLS1_3", "TLS1_3"]),
        "alpn": st.sampled_from(["h2", "h2,http/1.1"]),
        "hostname": st.sampled_from(["localhost", "example.com", "127.0.0.1"]),
        "verify": st.sampled_from(["yes", "no"]),
        "noDelay": st.sampled_from(["yes", "no"]),
        "bindAddress": st.sampled_from(["127.0.0.1"]),
    },
}


_PLAUSIBLE_PREFIXES = st.sampled_from(["tls", "ssl", "securesock", "tlsv1.2", "tlsv1.3", "TLS"])


@functools.lru_cache(maxsize=8)
def _plausibleParts(
    side: str, files: FuzzFiles
) -> tuple[st.SearchStrategy[list[str]], st.SearchStrategy[list[str]]]:
    """(the core of a buildable description after its prefix, names of extra safe options)."""
    f = files.path
    if side == SERVER:
        cores = [
            f"certificate={f('server.pem')}",
            f"certificate={f('server.crt')}:privateKey={f('server.key')}",
            f"certificate={f('server.p12')}:passphrase=env:{PASSPHRASE_VARIABLE}",
            f"certificate={f('server.crt')}:privateKey={f('encrypted.key')}:passphrase=file:{f('passphrase.txt')}",
            f"certificate=web:passphrase=env:{PASSPHRASE_VARIABLE}",
            f"certificate={f('chained.pem')}",
        ]
        core = st.sampled_from(cores).map(lambda c: ["0", c])
    else:
        cores = [
            f"trustRoots={f('ca.pem')}",
            f"trustRoots={f('cadir')}",
            "verify=no",
            f"certificate={f('client.pem')}:trustRoots={f('ca.pem')}",
        ]
        core = st.sampled_from(cores).map(lambda c: ["localhost", "443", c])
    return core, st.lists(st.sampled_from(sorted(_SAFE[side])), max_size=3, unique=True)


@st.composite
def _plausible(draw: Any, side: str, files: FuzzFiles, passphrase: str) -> str:
    """Descriptions that mostly build: a valid core, a few plausible options, maybe one odd one."""
    prefix = draw(_PLAUSIBLE_PREFIXES)
    cores, names = _plausibleParts(side, files)
    core = [prefix, *draw(cores)]
    safe = _SAFE[side]
    names = draw(names)
    if prefix.startswith("tlsv"):
        names = [n for n in names if n != "protocols"]
    pairs = [f"{n}={draw(safe[n])}" for n in names]
    if draw(st.integers(0, 3)) == 0:  # now and then one option from the whole grammar
        name = draw(_optionNames())
        pairs.append(f"{name}={_escape(draw(valuesFor(name.strip(), files, passphrase)))}")
    return ":".join(core + pairs)


@st.composite
def _mutated(draw: Any, base: st.SearchStrategy[str]) -> str:
    text = draw(base)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        if draw(st.booleans()) and text:
            text = text[:at] + text[at + 1 :]
        else:
            text = text[:at] + draw(st.sampled_from(list(":=\\&?[]%@/ ,\x00\n"))) + text[at:]
    return text


def descriptions(files: FuzzFiles, passphrase: str) -> st.SearchStrategy[tuple[str, str | bytes]]:
    """(side, description) pairs: grammar, grammar with typos, random text, random bytes."""

    def forSide(side: str) -> st.SearchStrategy[tuple[str, str | bytes]]:
        grammar = st.one_of(_twistedForm(side, files, passphrase), _urlForm(side, files, passphrase))
        plausible = _plausible(side, files, passphrase)
        return st.tuples(
            st.just(side),
            st.one_of(
                plausible,
                plausible,
                grammar,
                grammar,
                grammar,
                grammar,
                _mutated(grammar),
                st.text(max_size=60),
                st.binary(max_size=60),
            ),
        )

    return st.one_of(forSide(SERVER), forSide(CLIENT))


# --- the property -------------------------------------------------------------------

_WRITE_EVENTS = {
    "os.mkdir",
    "os.rename",
    "os.remove",
    "os.rmdir",
    "os.symlink",
    "os.link",
    "os.truncate",
    "os.chmod",
    "os.chown",
    "os.utime",
    "shutil.copyfile",
    "shutil.rmtree",
    "socket.bind",
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class _Writes:
    """An audit hook (installed once per process) noting writes while watching."""

    watching = False
    seen: list[str] = []
    installed = False

    @classmethod
    def hook(cls, event: str, args: tuple[Any, ...]) -> None:
        if not cls.watching:
            return
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE_FLAGS
            )
            if writes:
                cls.seen.append(f"open({path!r}, {mode!r}, {flags!r})")
        elif event in _WRITE_EVENTS:
            cls.seen.append(f"{event}{args!r}")

    @classmethod
    @contextlib.contextmanager
    def watch(cls) -> Iterator[list[str]]:
        if not cls.installed:
            sys.addaudithook(cls.hook)
            cls.installed = True
        cls.seen = []
        cls.watching = True
        try:
            yield cls.seen
        finally:
            cls.watching = False


def build(reactor: Any, side: str, description: str | bytes, scanner: LeakScanner) -> str:
    """
    Build one description; "endpoint" or "error".  Raises AssertionError when
    the property fails, or the unexpected exception itself.  What it logged
    on the way is checked for secrets like the error and the endpoint.
    """
    parse = securesock.serverFromString if side == SERVER else securesock.clientFromString
    interface = IStreamServerEndpoint if side == SERVER else IStreamClientEndpoint
    logged: list[str] = []  # what building it logged (a readable key file's warning, say)

    def observe(event: dict[str, Any]) -> None:
        logged.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    try:
        with _Writes.watch() as writes:
            try:
                endpoint = parse(reactor, description)  # type: ignore[arg-type]
            except securesock.DescriptionError as e:
                texts = [str(e), repr(e), str(e.value), str(e.option)]
                outcome = "error"
            else:
                assert interface.providedBy(endpoint), f"{description!r} built {endpoint!r}"
                texts = [repr(endpoint), repr(getattr(endpoint, "options", None))]
                outcome = "endpoint"
    finally:
        globalLogPublisher.removeObserver(observe)
    texts += logged
    assert not writes, f"{description!r} wrote to the file system: {writes}"
    # A secret the description shows outside a passphrase= value (random text
    # can be anything, hypothesis even draws constants from the source) may
    # be echoed: it was not given as a secret.
    shown = description.decode("utf-8", "replace") if isinstance(description, bytes) else description
    allowed = set(scanner.find(_PASSPHRASE_VALUE.sub("", shown)))
    for text in texts:
        leaked = set(scanner.find(text)) - allowed
        assert not leaked, f"{description!r}: {sorted(leaked)} in {text!r}"
    return outcome


# A passphrase= value, up to the next separator (either spelling, name percent-encoded or not).
_PASSPHRASE_VALUE = re.compile(r"(?i)(?:passphrase|pass%70hrase|%70assphrase)(?:=|%3D)[^&:]*")


@contextlib.contextmanager
def fuzzEnvironment(files: FuzzFiles, passphrase: str, directory: Path) -> Iterator[None]:
    """
    A working directory of our own (relative paths resolve in it, and it
    stays empty), the store pointed at the PKI directory, the passphrase in
    its variable, and Twisted's plugins indexed before writes are watched
    (the plugin cache, dropin.cache, is rewritten when stale).
    """
    saved = {k: os.environ.get(k) for k in (PASSPHRASE_VARIABLE, "SECURESOCK_STORE", "SECURESOCK_FUZZ_UNSET")}
    cwd = os.getcwd()
    os.environ[PASSPHRASE_VARIABLE] = passphrase
    os.environ["SECURESOCK_STORE"] = str(files.root)
    os.environ.pop("SECURESOCK_FUZZ_UNSET", None)
    from twisted.internet import reactor

    securesock.serverFromString(reactor, "tcp:0")  # loads (and may re-cache) Twisted's plugins
    securesock.clientFromString(reactor, "tcp:localhost:1")
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(cwd)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
