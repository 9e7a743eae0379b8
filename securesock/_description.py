"""
Description strings -> typed options.  Pure: no files, no OpenSSL, no reactor.

Two spellings are understood:

  - Twisted's: C{tls:8443:certificate=site.pem:protocols=TLS1_2+TLS1_3}, with
    C{\\} escaping a colon, the first C{=} of a segment splitting name from
    value.  As a convenience the colon in C{passphrase=env:VAR} and
    C{pin=sha256:HEX} needs no escape here (it does in strings that Twisted
    itself tokenizes, such as C{twistd --listen securesock:...}).
  - URLs: C{tls://[::1]:8443?certificate=site.pem&alpn=h2}, so IPv6 literals
    and nested descriptions need no escaping.

Prefixes that are not securesock's are handed back for Twisted to parse.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from urllib.parse import unquote

from twisted.internet.abstract import isIPAddress, isIPv6Address

from ._errors import DescriptionError
from ._options import (
    DIALECTS,
    HANDSHAKE_TIMEOUT,
    MAX_HANDSHAKES,
    TWISTED_SSL_DEFAULT_KEY,
    ClientOptions,
    ClientVerification,
    IdentitySpec,
    ServerOptions,
    TLSPolicy,
)
from ._optiontable import CLIENT, SERVER, Option, optionsFor
from ._versions import DEFAULT_PROTOCOLS, TLSVersion, formatProtocols

__all__ = [
    "TLS_PREFIXES",
    "Description",
    "splitDescription",
    "parseServer",
    "parseClient",
    "serverOptions",
    "clientOptions",
    "refuseTypedPassphrases",
]

# Prefix -> the protocol set it pins (None: the protocols= option decides).
TLS_PREFIXES: dict[str, frozenset[TLSVersion] | None] = {
    "tls": None,
    "ssl": None,
    "securesock": None,
    "tlsv1.0": frozenset({TLSVersion.TLS1}),
    "tlsv1.1": frozenset({TLSVersion.TLS1_1}),
    "tlsv1.2": frozenset({TLSVersion.TLS1_2}),
    "tlsv1.3": frozenset({TLSVersion.TLS1_3}),
    "sslv2": frozenset({TLSVersion.SSL2}),
    "sslv3": frozenset({TLSVersion.SSL3}),
    # Plaintext first, TLS after the dialect= exchange (docs/starttls.md).
    "starttls": None,
}


@dataclass(frozen=True)
class Description:
    """A description split into prefix, positional and keyword arguments."""

    prefix: str
    args: tuple[str, ...]
    kwargs: tuple[tuple[str, str], ...]

    @property
    def isTLS(self) -> bool:
        return self.prefix in TLS_PREFIXES


# --- tokenizing -------------------------------------------------------------

# In these options a colon right after a source word belongs to the value.
# For pin=, any digest name keeps its colon, so that pin=md5:... is told which
# digests are accepted instead of being split into a stray positional argument.
# certificateHash= takes no digest name, but one written there (sha1:...) is kept so
# that the message says to drop it, rather than blaming a stray piece.
_SCHEMED_VALUES = {
    "passphrase": r"(env|file)",
    "pin": r"(sha[0-9a-z_-]*|md[0-9]+|blake[0-9a-z]*)",
    "certificatehash": r"(sha[0-9a-z_-]*|md[0-9]+)",
}


def _keepsColon(segment: str) -> bool:
    name, sep, value = segment.partition("=")
    pattern = _SCHEMED_VALUES.get(name.strip().lower())
    if not sep or pattern is None:
        return False
    return re.search(r"(^|,)\s*" + pattern + r"$", value, re.IGNORECASE) is not None


def _segments(description: str) -> list[str]:
    """Split at unescaped colons, resolving backslash escapes."""
    segments: list[str] = []
    current: list[str] = []
    # An escaped '=' is kept as NUL until the segment is split at its first
    # real '=' (NUL is refused in descriptions, so it cannot clash).
    chars = iter(description)
    for char in chars:
        if char == "\\":
            escaped = next(chars, None)
            if escaped is None:
                raise DescriptionError(
                    f"description {description!r} ends with a lone backslash; "
                    "a backslash escapes the character after it (write \\\\ for one backslash)"
                )
            current.append("\0" if escaped == "=" else escaped)
        elif char == ":" and not _keepsColon("".join(current)):
            segments.append("".join(current))
            current = []
        else:
            current.append(char)
    segments.append("".join(current))
    return segments


def _fromTwistedForm(description: str) -> Description:
    segments = _segments(description)
    prefix = segments[0].replace("\0", "=").strip().lower()
    args: list[str] = []
    kwargs: list[tuple[str, str]] = []
    for segment in segments[1:]:
        name, sep, value = segment.partition("=")
        if sep:
            kwargs.append((name.replace("\0", "="), value.replace("\0", "=")))
        else:
            args.append(segment.replace("\0", "="))
    return Description(prefix, tuple(args), tuple(kwargs))


_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://(?P<rest>.*)\Z", re.DOTALL)
_AUTHORITY = re.compile(r"(?:\[(?P<v6>[^\]]*)\]|(?P<host>[^:\[\]]*))(?::(?P<port>[^:]*))?\Z")


def _fromURL(
    scheme: str, rest: str, description: str
) -> tuple[str, str, str | None, str, list[tuple[str, str]]]:
    """Split a URL into (scheme, host, port, path, query items)."""
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, remainder = rest[:cut], rest[cut:]
    path, _, query = remainder.partition("?")
    if "@" in authority:
        raise DescriptionError(
            f"{description!r}: user information ('...@') is not meaningful in an endpoint URL"
        )
    match = _AUTHORITY.match(authority)
    if match is None:
        raise DescriptionError(
            f"{description!r}: cannot read host and port from {authority!r}; "
            "write host:port, [IPv6]:port or :port"
        )
    host = match.group("v6") if match.group("v6") is not None else match.group("host")
    items: list[tuple[str, str]] = []
    for item in query.split("&") if query else []:
        name, sep, value = item.partition("=")
        if not sep:
            raise DescriptionError(
                f"{description!r}: query item {unquote(item)!r} has no '='; write option=value",
                option=unquote(name),
            )
        items.append((unquote(name), unquote(value)))
    return scheme.lower(), unquote(host), match.group("port"), unquote(path), items


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def splitDescription(description: str, side: str) -> Description | str:
    """
    Split a description.  Returns a L{Description} for securesock's prefixes
    and a Twisted-syntax string (the input itself, or a URL rewritten) for
    everything else.
    """
    if isinstance(description, bytes):  # Twisted accepts bytes descriptions too
        try:
            description = description.decode("utf-8")
        except UnicodeDecodeError:
            raise DescriptionError("the description is bytes that are not UTF-8; pass text") from None
    if not isinstance(description, str):
        raise DescriptionError(f"a description must be text, not {type(description).__name__}")
    if not description.strip():
        raise DescriptionError("the description is empty; try tls:8443:certificate=site.pem")
    if "\0" in description:
        raise DescriptionError("the description contains a NUL character; remove it")
    url = _URL.match(description)
    if url is None:
        parsed = _fromTwistedForm(description)
        return parsed if parsed.isTLS else description
    scheme, host, port, path, items = _fromURL(url.group("scheme"), url.group("rest"), description)
    if scheme in TLS_PREFIXES:
        if path not in ("", "/"):
            raise DescriptionError(
                f"{description!r}: a path ({path!r}) is not meaningful for a {scheme}:// endpoint"
            )
        if side == SERVER:
            interface = [("interface", host)] if host else []
            return Description(scheme, (port,) if port else (), (*interface, *items))
        where = [(name, value) for name, value in (("host", host), ("port", port)) if value]
        return Description(scheme, (), (*where, *items))
    return _twistedString(side, scheme, host, port, path, items)


def _twistedString(
    side: str, scheme: str, host: str, port: str | None, path: str, items: list[tuple[str, str]]
) -> str:
    """Rewrite a URL of another prefix into Twisted's syntax."""
    parts = [scheme]
    if scheme == "unix":
        parts.append(_quote(path) if side == SERVER else f"path={_quote(path)}")
    elif side == SERVER:
        if port is not None:
            parts.append(_quote(port))
        if host:
            parts.append(f"interface={_quote(host)}")
    else:
        if host:
            parts.append(f"host={_quote(host)}")
        if port is not None:
            parts.append(f"port={_quote(port)}")
    parts.extend(f"{_quote(name)}={_quote(value)}" for name, value in items)
    return ":".join(parts)


# --- assembling -------------------------------------------------------------


# What other tools (stunnel, PHP's ssl context, curl, nginx) call our options
# (the first of a pair that the side has).
_OTHER_WORDS = {
    "password": "passphrase",
    "passwd": "passphrase",
    "pass": "passphrase",
    "key": "privateKey",
    "keyfile": "privateKey",
    "cert": "certificate",
    "certfile": "certificate",
    "local_cert": "certificate",
    "cafile": "trustRoots caCerts",
    "ca": "trustRoots caCerts",
    "capath": "trustRoots caCerts",
    "verify_peer": "verify",
    "peer_name": "hostname",
    "servername": "hostname",
    "sni": "hostname",
    "cipher": "ciphers",
    "protocol": "protocols",
    "version": "protocols",
    "versions": "protocols",
    "dhparam": "dhParameters",
    "fingerprint": "pin",
    "thumbprint": "certificateHash",
    "hash": "certificateHash",
}


_CIPHERS_CUT = (
    "ciphers= takes ',' between cipher strings (OpenSSL's ':' cuts the description there): "
    "write ciphers=ECDHE+AESGCM,@SECLEVEL=2, or escape the colons (\\:)"
)


def _lookup(side: str, name: str) -> Option:
    table = optionsFor(side)
    option = table.get(name.lower())
    if option is not None:
        return option
    if name.startswith(("@", "!", "+", "-")):  # @SECLEVEL=0 after ciphers=DEFAULT:
        raise DescriptionError(f"unknown {side} option {name!r}: {_CIPHERS_CUT}", option="ciphers")
    other = CLIENT if side == SERVER else SERVER
    if name.lower() in optionsFor(other):
        raise DescriptionError(
            f"{name!r} is a {other} option; {side} descriptions accept: "
            + ", ".join(sorted({o.name for o in table.values()})),
            option=name,
        )
    known = sorted({n for o in table.values() for n in (o.name, *o.aliases)})
    # Words other tools use, and their typos, lead to securesock's name too.
    spoken = {k.lower(): k for k in known}
    for word, ours in _OTHER_WORDS.items():
        spoken[word] = next((o for o in ours.split() if o.lower() in table), spoken.get(word, ""))
    spoken = {word: ours for word, ours in spoken.items() if ours}
    close = difflib.get_close_matches(name.lower(), list(spoken), n=1, cutoff=0.5)
    hint = f" (did you mean {spoken[close[0]]!r}?)" if close else ""
    raise DescriptionError(
        f"unknown {side} option {name!r}{hint}; accepted: " + ", ".join(known),
        option=name,
    )


def _convert(
    side: str, pairs: Iterable[tuple[str, str]], positional: Sequence[tuple[str, str]] = ()
) -> dict[str, object]:
    """Options by name, after those given by position (C{positional})."""
    values: dict[str, object] = {}
    written: dict[str, str] = {}
    for index, (name, raw) in enumerate([*positional, *pairs]):
        option = _lookup(side, name.strip())
        spelling = f"{raw!r} by position" if index < len(positional) else f"as {name.strip()}="
        if option.name in values:
            raise DescriptionError(
                f"{option.name} is given twice ({written[option.name]} and {spelling}); keep one",
                option=option.name,
            )
        written[option.name] = spelling
        values[option.name] = option.convert(option.name, raw)
    return values


def refuseTypedPassphrases(side: str, pairs: Iterable[tuple[str, str]]) -> None:
    """
    Check passphrase= before anything else: a passphrase typed into the
    description (refused) may hold a ':' that cut it in two, and the error
    about the stray piece would show that piece.
    """
    for name, raw in pairs:
        option = optionsFor(side).get(name.strip().lower())
        if option is not None and option.name == "passphrase":
            option.convert(option.name, raw)


def _positional(description: Description, names: Sequence[str], side: str) -> list[tuple[str, str]]:
    if len(description.args) > len(names):
        extra = description.args[len(names)]
        if names:
            rule = (
                f"{side} descriptions take {' and '.join(names)} by position, everything else as name=value"
            )
        else:
            rule = "host and port are given as name=value, so no piece is taken by position"
        # An option left empty by the cut (interface=::1 is interface= then '', '1') is the one to fix.
        cut = next((name for name, value in description.kwargs if not value.strip()), None)
        blamed = f"; {cut}= was cut off at a ':'" if cut is not None else ""
        raise DescriptionError(
            f"unexpected positional argument {extra!r}: {rule}{blamed}{_cutByColon(description)}",
            option=cut,
            value=extra,
        )
    return list(zip(names, description.args, strict=False))


def _cutByColon(description: Description) -> str:
    """A hint for the usual cause of stray pieces: a value with ':' in it."""
    pieces = description.args
    if any(name.strip().lower() == "ciphers" for name, _ in description.kwargs) and any(
        re.fullmatch(r"[!+@-][A-Za-z].*|[A-Za-z0-9_.-]*\+.*|[A-Z][A-Z0-9_-]{2,}", piece) for piece in pieces
    ):  # !aNULL, ECDHE+CHACHA20, HIGH: the rest of an OpenSSL cipher string
        return "; " + _CIPHERS_CUT
    if pieces and not pieces[-1] and not any("[" in piece or "]" in piece for piece in pieces):
        return (
            "; the description ends with ':' or holds '::': remove the ':' too many (an IPv6 "
            "address's colons must be escaped, \\:\\:1, or written in the URL form, tls://[::1]:443)"
        )
    if any("[" in piece or "]" in piece or not piece for piece in pieces):
        return (
            "; an IPv6 address's colons cut the description: escape them (\\:\\:1) "
            "or write the URL form (tls://[::1]:443)"
        )
    if any(re.fullmatch(r"[0-9A-Fa-f]{2}", piece) for piece in pieces):
        return (
            "; a hash written with ':' between its digits (pin=, certificateHash=) is cut there: "
            "leave the colons out, write spaces, or escape them (\\:)"
        )
    return ""


def _policy(description: Description, values: dict[str, object]) -> TLSPolicy:
    pinned = TLS_PREFIXES[description.prefix]
    protocols = values.pop("protocols", None)
    method = values.pop("sslmethod", "unset")
    if protocols is not None and method != "unset":
        raise DescriptionError(
            "protocols= and sslmethod= both choose the protocol versions; keep protocols=",
            option="sslmethod",
        )
    protocolsOption = "protocols"
    if method != "unset":
        protocols, protocolsOption = method, "sslmethod"
    if pinned is not None and protocols is not None:
        raise DescriptionError(
            f"the prefix {description.prefix}: already fixes the protocol to "
            f"{'+'.join(v.name for v in sorted(pinned))}; remove protocols= "
            "(or sslmethod=), or use tls: with protocols=",
            option="protocols",
        )
    chosen = pinned or protocols or DEFAULT_PROTOCOLS
    ciphers = values.get("ciphers")
    if ciphers is not None:
        chosenBy = (
            f"the prefix {description.prefix}:"
            if pinned is not None
            else f"{protocolsOption}={formatProtocols(chosen)}"  # type: ignore[arg-type]
        )
        _checkCiphersAgainstTLS13(str(ciphers), chosen, chosenBy)  # type: ignore[arg-type]
    identity = IdentitySpec(
        certificate=values.pop("certificate", None),  # type: ignore[arg-type]
        privateKey=values.pop("privateKey", None),  # type: ignore[arg-type]
        extraCertChain=values.pop("extraCertChain", None),  # type: ignore[arg-type]
        passphrase=values.pop("passphrase", None),  # type: ignore[arg-type]
        certificateHash=values.pop("certificateHash", ()),  # type: ignore[arg-type]
    )
    if identity.certificateHash and identity.certificate is not None:
        raise DescriptionError(
            "certificate= and certificateHash= both choose the certificate; keep one",
            option="certificateHash",
        )
    if identity.certificateHash and identity.privateKey is not None:
        raise DescriptionError(
            "privateKey= goes with certificate files; certificateHash= picks a store entry, "
            "which brings its own key: remove privateKey=",
            option="privateKey",
        )
    if identity.extraCertChain is not None and not identity.given:
        raise DescriptionError(
            "extraCertChain= needs a certificate: add certificate= (or privateKey=)",
            option="extraCertChain",
        )
    if identity.passphrase is not None and not identity.given:
        raise DescriptionError(
            "passphrase= is given but no certificate= or privateKey= to open with it",
            option="passphrase",
        )
    return TLSPolicy(
        protocols=chosen,  # type: ignore[arg-type]
        ciphers=values.pop("ciphers", None),  # type: ignore[arg-type]
        alpn=values.pop("alpn", ()),  # type: ignore[arg-type]
        identity=identity,
        noDelay=values.pop("noDelay", True),  # type: ignore[arg-type]
        store=values.pop("store", None),  # type: ignore[arg-type]
        protocolsOption=protocolsOption,
    )


# TLS 1.3's suite names: OpenSSL's set_cipher_list knows none of them (they are
# chosen with SSL_CTX_set_ciphersuites, which securesock leaves at OpenSSL's three).
_TLS13_SUITE = re.compile(r"TLS_(AES|CHACHA20|SM4)_\w+", re.IGNORECASE)
_TLS13_SUITES_WHY = (
    "ciphers= chooses the cipher suites of TLS 1.2 and below; TLS 1.3's suites are OpenSSL's "
    "(TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256, TLS_AES_128_GCM_SHA256) and not configurable"
)


def _checkCiphersAgainstTLS13(ciphers: str, versions: frozenset[TLSVersion], chosenBy: str) -> None:
    """
    ciphers= chooses the suites of TLS 1.2 and below: refuse TLS 1.3 suite
    names in it, which OpenSSL would call unknown or skip without a word, and
    ciphers= where it would choose nothing (only TLS 1.3 enabled, by
    C{chosenBy}: a prefix, protocols= or sslmethod=).
    """
    names = [n for n in re.split(r"[:, ]+", ciphers) if _TLS13_SUITE.fullmatch(n)]
    if names:
        one = len(names) == 1
        raise DescriptionError(
            f"ciphers={ciphers!r}: {', '.join(names)} {'is a TLS 1.3 suite' if one else 'are TLS 1.3 suites'}; "
            f"{_TLS13_SUITES_WHY}; remove {'it' if one else 'them'} (accepted: an OpenSSL cipher string "
            "such as ECDHE+AESGCM,ECDHE+CHACHA20, see 'openssl ciphers -v')",
            option="ciphers",
            value=ciphers,
        )
    if all(v >= TLSVersion.TLS1_3 for v in versions):
        advice = (
            "write tls: with protocols=TLS1_2+TLS1_3"
            if chosenBy.startswith("the prefix")
            else f"add TLS1_2 to {chosenBy.partition('=')[0]}="
        )
        raise DescriptionError(
            f"ciphers={ciphers!r} has no effect with {chosenBy} (only TLS 1.3): {_TLS13_SUITES_WHY}; "
            f"remove ciphers=, or {advice}",
            option="ciphers",
            value=ciphers,
        )


def _dialect(description: Description, values: dict[str, object]) -> str | None:
    """dialect= is required with starttls: and meaningless with every other prefix."""
    dialect = values.pop("dialect", None)
    if description.prefix == "starttls" and dialect is None:
        raise DescriptionError(
            "starttls: needs dialect= to know the plaintext exchange before TLS; accepted: "
            + ", ".join(DIALECTS)
            + " (none: the application calls securesock.startTLS itself)",
            option="dialect",
        )
    if description.prefix != "starttls" and dialect is not None:
        raise DescriptionError(
            f"dialect={dialect} applies only to starttls: descriptions; {description.prefix}: "
            f"starts TLS at once (write starttls:... to upgrade after a {dialect} exchange)",
            option="dialect",
            value=str(dialect),
        )
    return dialect  # type: ignore[return-value]


def serverOptions(description: Description) -> ServerOptions:
    """Build L{ServerOptions} from a split server description."""
    args = description.args
    directory: str | None = None
    positional = ["port"]
    if len(args) >= 2 and not args[0].strip() and args[1].strip().isdigit():
        # Not Twisted's tls:DIRECTORY:PORT with no directory: a ':' too many.
        raise DescriptionError(
            f"{description.prefix}::{args[1].strip()}: a ':' too many before the port; "
            f"write {description.prefix}:{args[1].strip()}:...",
            option="port",
            value=args[1],
        )
    if len(args) >= 2 and not args[0].strip().isdigit() and args[1].strip().isdigit():
        # Twisted's tls:DIRECTORY:PORT[:BACKLOG[:INTERFACE]]: the directory is the
        # certificate store, every certificate in it served by SNI.
        directory = args[0]
        description = replace(description, args=args[1:])
        positional = ["port", "backlog", "interface"]
    refuseTypedPassphrases(SERVER, description.kwargs)
    values = _convert(SERVER, description.kwargs, _positional(description, positional, "server"))
    if directory is not None:
        if "store" in values:
            raise DescriptionError(
                f"{description.prefix}:{directory}:... already names the certificate store; "
                f"remove store={values['store']}",
                option="store",
            )
        values["store"] = directory
    if "port" not in values:
        if "endpoint" in values:
            values["port"] = 0  # the wrapped endpoint says where to listen
        else:
            raise DescriptionError(
                f"{description.prefix}: has no port; write {description.prefix}:8443:... (0 picks a free port)",
                option="port",
            )
    policy = _policy(description, values)
    if directory is not None and not policy.identity.given:
        policy = replace(policy, identity=replace(policy.identity, everyEntry=True))
    if not policy.identity.given and description.prefix == "ssl":
        # Twisted's ssl: server defaults to server.pem; keep existing strings working.
        policy = replace(policy, identity=IdentitySpec(privateKey=TWISTED_SSL_DEFAULT_KEY))
    if not policy.identity.given:
        raise DescriptionError(
            "a TLS server needs a certificate: add certificate=FILE (PEM with key, or "
            "PKCS#12), certificate=NAME or certificateHash=HEX from the certificate store, "
            "or privateKey=KEY.pem with certKey=CERT.pem",
            option="certificate",
        )
    verifyClient = values.pop("verifyClient", ClientVerification.NONE)
    caCerts = values.pop("caCerts", None)
    if verifyClient is not ClientVerification.NONE and caCerts is None:
        raise DescriptionError(
            f"verifyClient={verifyClient.value} needs caCerts=FILE-OR-DIRECTORY "  # type: ignore[attr-defined]
            "with the CA certificates that client certificates must chain to",
            option="caCerts",
        )
    if caCerts is not None and verifyClient is ClientVerification.NONE:
        raise DescriptionError(
            "caCerts= is given but verifyClient=none: add verifyClient=require "
            "(or optional) to ask clients for certificates",
            option="verifyClient",
        )
    if values.get("reusePort") and values.get("exclusive"):
        raise DescriptionError(
            "reusePort=yes and exclusive=yes contradict each other: sharing the port "
            "or refusing to share it; keep one",
            option="exclusive",
        )
    for socketOption in ("reusePort", "exclusive"):
        if values.get(socketOption) and "endpoint" in values:
            raise DescriptionError(
                f"{socketOption}= applies to the TCP socket securesock opens itself; with "
                "endpoint= the other endpoint opens it: remove one of them",
                option=socketOption,
            )
    return ServerOptions(
        prefix=description.prefix,
        port=values.pop("port"),  # type: ignore[arg-type]
        policy=policy,
        interface=values.pop("interface", None),  # type: ignore[arg-type]
        backlog=values.pop("backlog", 50),  # type: ignore[arg-type]
        dhParameters=values.pop("dhParameters", None),  # type: ignore[arg-type]
        verifyClient=verifyClient,  # type: ignore[arg-type]
        caCerts=caCerts,  # type: ignore[arg-type]
        endpoint=values.pop("endpoint", None),  # type: ignore[arg-type]
        sniStrict=values.pop("sniStrict", False),  # type: ignore[arg-type]
        reusePort=values.pop("reusePort", False),  # type: ignore[arg-type]
        exclusive=values.pop("exclusive", False),  # type: ignore[arg-type]
        handshakeTimeout=values.pop("handshakeTimeout", HANDSHAKE_TIMEOUT),  # type: ignore[arg-type]
        maxHandshakes=values.pop("maxHandshakes", MAX_HANDSHAKES),  # type: ignore[arg-type]
        dialect=_dialect(description, values),
    )


def clientOptions(description: Description) -> ClientOptions:
    """Build L{ClientOptions} from a split client description."""
    given = {name.strip().lower() for name, _ in description.kwargs}
    names = [n for n in ("host", "port") if n not in given]
    refuseTypedPassphrases(CLIENT, description.kwargs)
    values = _convert(CLIENT, description.kwargs, _positional(description, names, "client"))
    if "endpoint" in values:
        values.setdefault("port", 0)  # the wrapped endpoint says where to connect; host is still verified
    for required, example in (("host", "host=example.com"), ("port", "port=443")):
        if required not in values:
            raise DescriptionError(
                f"{description.prefix}: has no {required}; write "
                f"{description.prefix}:example.com:443 or {example}",
                option=required,
            )
    if values["port"] == 0 and "endpoint" not in values:
        raise DescriptionError(
            "port=0: a client needs the server's port; accepted: 1..65535",
            option="port",
            value="0",
        )
    _refuseMixedFamilies(values)
    policy = _policy(description, values)
    return ClientOptions(
        prefix=description.prefix,
        host=values.pop("host"),  # type: ignore[arg-type]
        port=values.pop("port"),  # type: ignore[arg-type]
        policy=policy,
        timeout=values.pop("timeout", 30.0),  # type: ignore[arg-type]
        bindAddress=values.pop("bindAddress", None),  # type: ignore[arg-type]
        hostname=values.pop("hostname", None),  # type: ignore[arg-type]
        verify=values.pop("verify", True),  # type: ignore[arg-type]
        trustRoots=values.pop("trustRoots", None),  # type: ignore[arg-type]
        pins=values.pop("pin", ()),  # type: ignore[arg-type]
        endpoint=values.pop("endpoint", None),  # type: ignore[arg-type]
        dialect=_dialect(description, values),
    )


def _refuseMixedFamilies(values: dict[str, object]) -> None:
    """An IPv4 server cannot be reached from an IPv6 local address, nor the reverse."""
    host, bind = values.get("host"), values.get("bindAddress")
    if not isinstance(host, str) or not isinstance(bind, str) or "endpoint" in values:
        return
    families = [6 if isIPv6Address(a) else 4 if isIPAddress(a) else None for a in (host, bind)]
    if None not in families and families[0] != families[1]:
        raise DescriptionError(
            f"bindAddress={bind}: an IPv{families[1]} address cannot reach host {host} (IPv{families[0]}); "
            f"give an IPv{families[0]} local address, or leave bindAddress= out",
            option="bindAddress",
            value=bind,
        )


def parseServer(description: str) -> ServerOptions | str:
    """A server description -> L{ServerOptions}, or Twisted syntax for other prefixes."""
    split = splitDescription(description, SERVER)
    return serverOptions(split) if isinstance(split, Description) else split


def parseClient(description: str) -> ClientOptions | str:
    """A client description -> L{ClientOptions}, or Twisted syntax for other prefixes."""
    split = splitDescription(description, CLIENT)
    return clientOptions(split) if isinstance(split, Description) else split
