"""
The single table of description options.

Each option says which side takes it, how its text becomes a typed value,
what it accepts and what its default is.  The parser, the error messages and
the reference documentation all read this table, so an option cannot exist
without being documented (a test checks docs/reference.md against it).
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import idna
from service_identity.hazmat import DNS_ID
from twisted.internet.abstract import isIPAddress, isIPv6Address

from ._errors import DescriptionError
from ._hashes import HASH_ACCEPTED, parseCertificateHashes
from ._options import DIALECTS, HANDSHAKE_TIMEOUT, MAX_HANDSHAKES, ClientVerification, Passphrase, Pin
from ._versions import TLSVersion, parseProtocols

__all__ = ["Option", "OPTIONS", "SERVER", "CLIENT", "optionsFor", "seconds"]

SERVER = "server"
CLIENT = "client"
BOTH = frozenset({SERVER, CLIENT})

Converter = Callable[[str, str], object]


@dataclass(frozen=True)
class Option:
    """One description option."""

    name: str
    sides: frozenset[str]
    convert: Converter
    accepted: str
    default: str
    help: str
    aliases: tuple[str, ...] = ()


def _error(option: str, value: str, problem: str, accepted: str) -> DescriptionError:
    return DescriptionError(
        f"{option}={value!r}: {problem}; accepted: {accepted}",
        option=option,
        value=value,
    )


def _integer(low: int, high: int, accepted: str) -> Converter:
    def convert(option: str, value: str) -> int:
        text = value.strip()
        if re.fullmatch(r"-[0-9]+", text):
            raise _error(option, value, f"out of range {low}..{high}", accepted)
        if not re.fullmatch(r"[0-9]+", text):
            raise _error(option, value, "not a whole number", accepted)
        number = int(text)
        if not low <= number <= high:
            raise _error(option, value, f"out of range {low}..{high}", accepted)
        return number

    return convert


def seconds(option: str, value: str) -> float:
    """A duration in seconds, more than 0 and less than a year (timeout=, handshakeTimeout=, probe --timeout)."""
    accepted = "a number of seconds greater than 0 and less than a year (31536000), such as 30 or 2.5"
    try:
        number = float(value)
    except ValueError:
        raise _error(option, value, "not a number", accepted) from None
    if not 0 < number < 86400 * 365 or number != number:
        raise _error(option, value, "out of range", accepted)
    return number


def _text(option: str, value: str) -> str:
    if not value.strip():
        raise DescriptionError(
            f"{option}= is empty; give a value or leave the option out",
            option=option,
            value=value,
        )
    return value


def _host(option: str, value: str) -> str:
    text = _text(option, value).strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return text


_NAME_ACCEPTED = (
    "a DNS name (labels of letters, digits and inner '-', up to 63 characters, joined with '.'; "
    "IDNA for other letters) or an IPv4/IPv6 literal"
)


def _hostName(option: str, value: str) -> str:
    """
    A name to connect to and to check the certificate against: checked now
    as Twisted (IDNA, to resolve it and send it as SNI) and service_identity
    (to match it) would check it at the first connection.
    """
    text = _host(option, value)
    if _isAddress(text):
        return text
    try:
        idna.encode(text, uts46=True)
        DNS_ID(text)
    except (ValueError, UnicodeError):  # idna.IDNAError is a UnicodeError
        raise _error(option, value, "not a DNS name or an IP address", _NAME_ACCEPTED) from None
    return text


def _address(option: str, value: str) -> str:
    text = _host(option, value)
    if not _isAddress(text):
        raise _error(option, value, "not an IP address", "an IPv4 or IPv6 literal such as 192.0.2.7 or ::1")
    return text


def _isAddress(text: str) -> bool:
    return isIPAddress(text) or isIPv6Address(text)


_YES = {"yes", "true", "on", "1"}
_NO = {"no", "false", "off", "0"}


def _boolean(option: str, value: str) -> bool:
    word = value.strip().lower()
    if word in _YES:
        return True
    if word in _NO:
        return False
    raise _error(option, value, "not a yes/no value", "yes, no (or true/false, on/off, 1/0)")


def _protocols(option: str, value: str) -> frozenset[TLSVersion]:
    return parseProtocols(value, option)


_ALPN_ACCEPTED = "comma-separated protocol names of 1 to 255 bytes, such as h2,http/1.1"


def _alpn(option: str, value: str) -> tuple[bytes, ...]:
    names = [name.strip() for name in value.split(",")]
    result = []
    for name in names:
        if not name:
            raise _error(option, value, "an empty protocol name", _ALPN_ACCEPTED)
        encoded = name.encode("utf-8")
        if len(encoded) > 255:
            raise _error(option, value, f"{name[:20]!r}... is longer than 255 bytes", _ALPN_ACCEPTED)
        result.append(encoded)
    return tuple(result)


_PASSPHRASE_ACCEPTED = (
    "env:VARIABLE (read from the environment) or file:PATH (first line of a "
    "file); literal passphrases are refused so they never sit in a config file "
    "or a process list"
)


def _passphrase(option: str, value: str) -> Passphrase:
    source, sep, reference = value.partition(":")
    source = source.lower() if source.lower() in ("env", "file") else source  # ENV:NAME as env:NAME
    if sep and source in ("env", "file") and reference:
        return Passphrase(source, reference)
    if source in ("env", "file") and not sep:
        # Twisted's own tokenizer (twistd, the 'securesock:' plugin) split
        # "env:VAR" at the colon.
        raise DescriptionError(
            f"{option}={source}: has no {'variable' if source == 'env' else 'path'}; "
            f"in a Twisted-style string escape the colon ({option}={source}\\:NAME) "
            "or use the URL form",
            option=option,
        )
    # Never echo the value: it may be a passphrase typed literally.
    raise DescriptionError(
        f"{option}: the value is not env:VARIABLE or file:PATH (not shown, in case "
        f"it is a passphrase); accepted: {_PASSPHRASE_ACCEPTED}",
        option=option,
    )


_PIN_ACCEPTED = (
    "sha256:HEX (64 hex digits) or sha1:HEX (40), ':' or spaces allowed between "
    "digits, several joined with ','"
)
_PIN_LENGTHS = {"sha256": 32, "sha1": 20}


def _pins(option: str, value: str) -> tuple[Pin, ...]:
    pins = []
    for item in value.split(","):
        algorithm, sep, digits = item.strip().partition(":")
        algorithm = algorithm.lower()
        if not sep or algorithm not in _PIN_LENGTHS:
            raise _error(
                option, value, f"{item.strip()!r} does not start with sha256: or sha1:", _PIN_ACCEPTED
            )
        compact = re.sub(r"[\s:]", "", digits)
        try:
            digest = binascii.unhexlify(compact)
        except (binascii.Error, ValueError):
            raise _error(option, value, f"{item.strip()!r} is not hexadecimal", _PIN_ACCEPTED) from None
        if len(digest) != _PIN_LENGTHS[algorithm]:
            raise _error(
                option,
                value,
                f"{algorithm} needs {_PIN_LENGTHS[algorithm] * 2} hex digits, got {len(compact)}",
                _PIN_ACCEPTED,
            )
        pins.append(Pin(algorithm, digest))
    return tuple(pins)


def _verifyClient(option: str, value: str) -> ClientVerification:
    try:
        return ClientVerification(value.strip().lower())
    except ValueError:
        raise _error(option, value, "unknown mode", "none, optional, require") from None


_METHODS = {
    "SSLv23_METHOD": None,
    "TLS_METHOD": None,
    "SSLv2_METHOD": frozenset({TLSVersion.SSL2}),
    "SSLv3_METHOD": frozenset({TLSVersion.SSL3}),
    "TLSv1_METHOD": frozenset({TLSVersion.TLS1}),
    "TLSv1_1_METHOD": frozenset({TLSVersion.TLS1_1}),
    "TLSv1_2_METHOD": frozenset({TLSVersion.TLS1_2}),
}


def _dialect(option: str, value: str) -> str:
    word = value.strip().lower()
    if word not in DIALECTS:
        raise _error(option, value, "not a dialect securesock speaks", ", ".join(DIALECTS))
    return word


def _sslmethod(option: str, value: str) -> frozenset[TLSVersion] | None:
    if value not in _METHODS:
        raise _error(option, value, "not an OpenSSL method name", ", ".join(_METHODS))
    return _METHODS[value]


_PATH = "a file path"
OPTIONS: tuple[Option, ...] = (
    Option(
        "port",
        BOTH,
        _integer(0, 65535, "0..65535 (0 = any free port, servers only)"),
        "0..65535; servers: 0 picks a free port",
        "none (required); first positional",
        "TCP port to listen on or connect to.",
    ),
    Option(
        "interface",
        frozenset({SERVER}),
        _host,
        "an IPv4 or IPv6 literal, or a host name resolved at listen time (all its addresses)",
        "all interfaces, IPv6 and IPv4",
        "Address to listen on.",
        aliases=("address",),
    ),
    Option(
        "backlog",
        frozenset({SERVER}),
        _integer(1, 65535, "1..65535"),
        "1..65535",
        "50",
        "Length of the listen queue.",
    ),
    Option(
        "host",
        frozenset({CLIENT}),
        _hostName,
        "a host name or an IPv4/IPv6 literal",
        "none (required); first positional",
        "Host to connect to.",
    ),
    Option(
        "timeout",
        frozenset({CLIENT}),
        seconds,
        "seconds, greater than 0",
        "30",
        "Connection timeout for each connection attempt; the TLS handshake (also of an app-driven STARTTLS "
        "upgrade) must then complete within as long again (a server that accepts and never answers fails "
        "the connection instead of hanging it).",
    ),
    Option(
        "bindAddress",
        frozenset({CLIENT}),
        _address,
        "a local IP address",
        "any",
        "Local address outgoing connections are bound to.",
    ),
    Option(
        "protocols",
        BOTH,
        _protocols,
        "SSL2 SSL3 TLS1 TLS1_1 TLS1_2 TLS1_3 joined with '+' (ProtocolTLS1_2, TLSv1.2 also)",
        "TLS1_2+TLS1_3",
        "Exactly the protocol versions allowed; versions the linked OpenSSL cannot speak are an error.",
    ),
    Option(
        "sslmethod",
        BOTH,
        _sslmethod,
        ", ".join(_METHODS),
        "TLS_METHOD",
        "Twisted ssl: compatibility; prefer protocols=.",
    ),
    Option(
        "ciphers",
        BOTH,
        _text,
        "an OpenSSL cipher string for TLS 1.2 and below, entries separated by ',' (':' must be escaped)",
        "Mozilla intermediate (ECDHE/DHE with AES-GCM or ChaCha20-Poly1305)",
        "Cipher suites for TLS 1.2 and below.",
    ),
    Option(
        "alpn",
        BOTH,
        _alpn,
        _ALPN_ACCEPTED,
        "none (the protocol factory's own, if it declares any)",
        "ALPN protocols, most preferred first; those the application's protocol factory declares "
        "(twisted.web's Site: h2 when available, http/1.1; the twistd securesock diagnostic page: "
        "http/1.1) are accepted after them, since the application speaks them.",
    ),
    Option(
        "certificate",
        BOTH,
        _text,
        "a PEM file (certificate, optionally key and chain) or a PKCS#12 file (.p12/.pfx); or, when "
        "no such file exists, a name in the certificate store (friendlyName, file stem, subject CN "
        "or DNS name); servers: several joined with ',' are chosen by SNI, the first by default",
        "none",
        "The certificate to present (a file, or store names: docs/store.md).",
        aliases=("certKey",),
    ),
    Option(
        "certificateHash",
        BOTH,
        parseCertificateHashes,
        HASH_ACCEPTED,
        "none",
        "Present the store certificate with this thumbprint (WinDev's CertificateHash).",
    ),
    Option(
        "store",
        BOTH,
        _text,
        "a directory of PEM files, NAME.crt+NAME.key pairs and PKCS#12 files",
        "$SECURESOCK_STORE, else $XDG_DATA_HOME/securesock/store (~/.local/share/securesock/store)",
        "The certificate store that certificate= names, certificateHash=, trustRoots=store and caCerts=store use.",
    ),
    Option(
        "sniStrict",
        frozenset({SERVER}),
        _boolean,
        "yes, no",
        "no (unknown names get the first certificate)",
        "Refuse clients asking (by SNI) for a name no certificate has, with an unrecognized_name alert.",
    ),
    Option(
        "privateKey",
        BOTH,
        _text,
        "a PEM file holding the private key (and possibly the certificate)",
        "the key inside certificate=; Twisted's ssl: server prefix defaults to server.pem",
        "The private key of certificate=.",
    ),
    Option(
        "extraCertChain",
        BOTH,
        _text,
        "a PEM file of intermediate certificates",
        "none",
        "Intermediates sent after the certificate.",
    ),
    Option(
        "passphrase",
        BOTH,
        _passphrase,
        _PASSPHRASE_ACCEPTED,
        "none",
        "Where the passphrase of an encrypted key or PKCS#12 file is read.",
    ),
    Option(
        "dhParameters",
        frozenset({SERVER}),
        _text,
        "a PEM file of DH parameters",
        "none (ECDHE only)",
        "Enables the DHE suites.",
    ),
    Option(
        "verifyClient",
        frozenset({SERVER}),
        _verifyClient,
        "none, optional, require",
        "none",
        "Ask clients for a certificate (mutual TLS); needs caCerts=.",
    ),
    Option(
        "caCerts",
        frozenset({SERVER}),
        _text,
        "a PEM file or a directory of PEM files, or store (the CA certificates of the store)",
        "none",
        "CA certificates that client certificates must chain to.",
    ),
    Option(
        "trustRoots",
        frozenset({CLIENT}),
        _text,
        "a PEM file or a directory of PEM files, or store (the CA certificates of the store)",
        "the platform's trust store",
        "CA certificates the server's chain must end in.",
        aliases=("caCertsDir", "caCerts"),
    ),
    Option(
        "hostname",
        frozenset({CLIENT}),
        _hostName,
        "a DNS name or IP address",
        "host=",
        "The name checked in the server certificate and sent as SNI (PHP's peer_name).",
    ),
    Option(
        "verify",
        frozenset({CLIENT}),
        _boolean,
        "yes, no",
        "yes",
        "no: do not check the chain or name (a warning is logged on every connection).",
    ),
    Option(
        "pin",
        frozenset({CLIENT}),
        _pins,
        _PIN_ACCEPTED,
        "none",
        "Accept only a server whose leaf certificate has one of these fingerprints (PHP's peer_fingerprint).",
    ),
    Option("noDelay", BOTH, _boolean, "yes, no", "yes", "Set TCP_NODELAY on every connection."),
    Option(
        "reusePort",
        frozenset({SERVER}),
        _boolean,
        "yes, no",
        "no",
        "SO_REUSEPORT: several processes listen on the same port and the kernel spreads connections.",
    ),
    Option(
        "exclusive",
        frozenset({SERVER}),
        _boolean,
        "yes, no",
        "no",
        "Refuse to start if the address is in use, even by a socket in TIME_WAIT (WinDev's SocketNoReuseAddress).",
    ),
    Option(
        "handshakeTimeout",
        frozenset({SERVER}),
        seconds,
        "seconds, greater than 0",
        f"{HANDSHAKE_TIMEOUT:g}",
        "A client that has not finished its TLS handshake this long after connecting (or after an "
        "app-driven STARTTLS upgrade began) is disconnected (docs/hardening.md).",
    ),
    Option(
        "maxHandshakes",
        frozenset({SERVER}),
        _integer(1, 1_000_000, "1..1000000"),
        "1..1000000",
        f"{MAX_HANDSHAKES}",
        "At most this many TLS handshakes (or STARTTLS upgrades) in progress at once; connections beyond "
        "it are closed at once, so a burst cannot take all memory (docs/hardening.md).",
    ),
    Option(
        "endpoint",
        BOTH,
        _text,
        "another endpoint description (escape its colons, or use the URL form)",
        "TCP (servers: all interfaces; clients: host and port)",
        "Run TLS over this endpoint instead of plain TCP, e.g. systemd:domain=INET:index=0.",
    ),
    Option(
        "dialect",
        BOTH,
        _dialect,
        ", ".join(DIALECTS) + " (starttls: only)",
        "none (required with starttls:)",
        "The plaintext exchange before TLS on a starttls: endpoint; none: the application "
        "upgrades with securesock.startTLS (see docs/starttls.md).",
    ),
)


def optionsFor(side: str) -> Mapping[str, Option]:
    """Options of one side, keyed by every lower-cased name and alias."""
    return _BY_SIDE[side]


def _index(side: str) -> dict[str, Option]:
    index: dict[str, Option] = {}
    for option in OPTIONS:
        if side in option.sides:
            for name in (option.name, *option.aliases):
                index[name.lower()] = option
    return index


_BY_SIDE = {SERVER: _index(SERVER), CLIENT: _index(CLIENT)}
