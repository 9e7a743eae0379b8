"""
"Wrong mode" diagnostics: plaintext where TLS was expected.

A C{tls:} client connected to a STARTTLS port reads a plaintext greeting
(C{220 mail.example.com ESMTP}) where the ServerHello should be, and OpenSSL
says only "wrong version number".  A C{tls:} server reached by a plaintext
client reads a request where the ClientHello should be.  These functions
look at the first bytes, once per connection, and say in words what
happened and what to write instead.
"""

from __future__ import annotations

import re

from .dialects import commandOf, quoted

__all__ = ["isTLSRecord", "plaintextFromServer", "plaintextFromClient", "isHTTPRequest", "HTTP_400"]

# TLS records start with a content type: 0x14..0x18 (0x16: handshake).
_TLS_TYPES = range(0x14, 0x19)

# (pattern of a server's first line, protocol, dialect= to suggest)
_BANNERS: tuple[tuple[re.Pattern[bytes], str, str | None], ...] = (
    (re.compile(rb"^220[ -].*\bE?SMTP\b", re.IGNORECASE), "an SMTP server's greeting", "smtp"),
    (re.compile(rb"^220[ -].*FTP", re.IGNORECASE), "an FTP server's greeting", "ftp"),
    (re.compile(rb"^\* (OK|PREAUTH)\b"), "an IMAP server's greeting", "imap"),
    (re.compile(rb"^\+OK\b"), "a POP3 server's greeting", "pop3"),
    (re.compile(rb"^220[ -]"), "an SMTP or FTP server's greeting", None),
    (re.compile(rb"^(<\?xml|<stream:stream)"), "an XMPP stream", "xmpp"),
    (re.compile(rb"^HTTP/\d"), "an HTTP response", None),
    (re.compile(rb"^SSH-\d"), "an SSH server's banner", None),
)

_HTTP_REQUEST = re.compile(rb"^(GET|POST|HEAD|PUT|DELETE|OPTIONS|PATCH|CONNECT|TRACE|PRI) \S+")

_HTTP_400_BODY = b"400 Bad Request: a plain HTTP request was sent to a port that speaks TLS (use https://).\n"
HTTP_400 = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
    b"Connection: close\r\n\r\n%s" % (len(_HTTP_400_BODY), _HTTP_400_BODY)
)


def isTLSRecord(data: bytes) -> bool:
    return bool(data) and data[0] in _TLS_TYPES


def isHTTPRequest(data: bytes) -> bool:
    return _HTTP_REQUEST.match(data) is not None


def _firstLine(data: bytes) -> bytes:
    return data.split(b"\n", 1)[0].rstrip(b"\r")


def _requestLine(data: bytes) -> bytes:
    """An HTTP request line without its query string, which may carry a token or a password."""
    return re.sub(rb"\?[^ ]*", b"?...", _firstLine(data), count=1)


def plaintextFromServer(data: bytes, peer: str) -> str | None:
    """
    Why a client handshake failed, if the server's first bytes were
    plaintext; None when they look like TLS.
    """
    if not data or isTLSRecord(data):
        return None
    line = _firstLine(data)
    what, dialect = next(
        ((what, dialect) for pattern, what, dialect in _BANNERS if pattern.search(line)),
        ("no protocol securesock recognises", None),
    )
    text = f"{peer} answered in plaintext, not TLS: it sent {quoted(line)}, which looks like {what}"
    if dialect is not None:
        return (
            f"{text}. This port probably expects STARTTLS: connect with "
            f"starttls:HOST:PORT:dialect={dialect} (or the port for implicit TLS)"
        )
    if what.startswith("an SMTP or FTP"):
        return f"{text}. This port probably expects STARTTLS: use starttls: with dialect=smtp or dialect=ftp"
    return f"{text}. This port does not speak TLS from the start"


# (pattern of a client's first bytes, what they look like, dialect= to suggest)
_CLIENT_OPENINGS: tuple[tuple[re.Pattern[bytes], str, str | None], ...] = (
    (re.compile(rb"^(EHLO|HELO|LHLO)\b", re.IGNORECASE), "an SMTP client's EHLO", "smtp"),
    (re.compile(rb"^(STARTTLS|MAIL FROM:|RCPT TO:)", re.IGNORECASE), "an SMTP command", "smtp"),
    (
        re.compile(
            rb"^[^\s(){%*\"\\\]]+ (CAPABILITY|LOGIN|AUTHENTICATE|STARTTLS|NOOP|LOGOUT|ID)\b", re.IGNORECASE
        ),
        "an IMAP client's tagged command",
        "imap",
    ),
    (re.compile(rb"^(CAPA|STLS|APOP)\b", re.IGNORECASE), "a POP3 client's command", "pop3"),
    (re.compile(rb"^(AUTH (TLS|SSL)|FEAT|SYST)\b", re.IGNORECASE), "an FTP client's command", "ftp"),
    (re.compile(rb"^USER\b", re.IGNORECASE), "a POP3 or FTP client's USER command", None),
    (re.compile(rb"^(<\?xml|<stream:stream)"), "an XMPP stream header", "xmpp"),
)
_LDAP_STARTTLS = b"1.3.6.1.4.1.1466.20037"
_POSTGRES_SSLREQUEST = b"\x00\x00\x00\x08\x04\xd2\x16\x2f"


def _clientOpening(data: bytes) -> tuple[str, str | None] | None:
    """What a plaintext client's first bytes look like, and the dialect that would serve it."""
    if data.startswith(_POSTGRES_SSLREQUEST):
        return "a PostgreSQL SSLRequest", "postgres"
    if data[:1] == b"\x30" and _LDAP_STARTTLS in data[:64]:
        return "an LDAP StartTLS request", "ldap"
    if data[:1] == b"\x30" and len(data) > 2 and data[2:3] == b"\x02":
        return "an LDAP request", "ldap"
    line = _firstLine(data)
    return next(
        ((what, dialect) for pattern, what, dialect in _CLIENT_OPENINGS if pattern.search(line)), None
    )


def _shown(data: bytes) -> str:
    """
    A client's first bytes for a message: its command if it is text (never
    its arguments), else the first eight bytes in hex (a binary protocol's
    header, such as PostgreSQL's SSLRequest 00 00 00 08 04 d2 16 2f), never
    as characters (random bytes read as Latin-1 make a line unreadable).
    """
    first = data[:1]
    if first.isalnum() or first == b"<":
        return commandOf(data)
    return "binary data starting " + data[:8].hex(" ")


# The version an SSL 2.0-format CLIENT-HELLO offers: SSL 2.0 itself, or (the
# "SSLv2-compatible" hello of old clients and some scanners) SSL 3.0 to TLS 1.2.
_SSL2_HELLO_VERSIONS = {
    b"\x00\x02": "SSL 2.0",
    b"\x03\x00": "SSL 3.0",
    b"\x03\x01": "TLS 1.0",
    b"\x03\x02": "TLS 1.1",
    b"\x03\x03": "TLS 1.2",
}


def _sslv2Hello(data: bytes) -> str | None:
    """
    The version an SSL 2.0-format ClientHello offers (a 2-byte record header
    with its top bit set, then MSG-CLIENT-HELLO, 1), or None if C{data} is
    not one.  Its first byte (0x80 or more) is no TLS content type.
    """
    if len(data) < 5 or not data[0] & 0x80 or data[2] != 0x01:
        return None
    return _SSL2_HELLO_VERSIONS.get(data[3:5])


def plaintextFromClient(data: bytes, peer: str) -> str:
    """What a server logs when a client's first bytes are not a TLS ClientHello."""
    offered = _sslv2Hello(data)
    if offered == "SSL 2.0":
        return (
            f"{peer} sent an SSL 2.0 ClientHello, not a TLS ClientHello: a very old client; SSL 2.0 is "
            "broken and no OpenSSL since 1.1.0 speaks it; the client must offer TLS with a TLS ClientHello; closed"
        )
    if offered is not None:
        return (
            f"{peer} sent an SSL 2.0-format (SSLv2-compatible) ClientHello offering up to {offered}, not a "
            "TLS ClientHello: a very old client (or a scanner); this server accepts only TLS ClientHellos "
            "(the old format carries no extensions: no SNI, no TLS 1.3); the client must offer TLS with a "
            "TLS ClientHello (Java: drop SSLv2Hello from its protocols); closed"
        )
    if isHTTPRequest(data):
        return (
            f"{peer} sent a plain HTTP request ({quoted(_requestLine(data))}) to this TLS port; "
            "answered 400 and closed"
        )
    opening = _clientOpening(data)
    if opening is None:
        return (
            f"{peer} sent plaintext ({_shown(data)}), not a TLS ClientHello: it may expect plain TCP "
            "or a STARTTLS port (starttls:...:dialect=...); closed"
        )
    what, dialect = opening
    suggestion = f"dialect={dialect}" if dialect is not None else "dialect=pop3 or dialect=ftp"
    return (
        f"{peer} sent plaintext ({_shown(data)}), which looks like {what}, not a TLS ClientHello: "
        "this port speaks TLS from the first byte; for clients that upgrade with STARTTLS, "
        f"listen with starttls:...:{suggestion}; closed"
    )
