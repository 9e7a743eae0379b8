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

from .dialects import quoted

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


def plaintextFromClient(data: bytes, peer: str) -> str:
    """What a server logs when a client's first bytes are not a TLS ClientHello."""
    line = _firstLine(data)
    if isHTTPRequest(data):
        return f"{peer} sent a plain HTTP request ({quoted(line)}) to this TLS port; answered 400 and closed"
    if data.startswith(b"\x00\x00\x00\x08\x04\xd2\x16\x2f"):
        return (
            f"{peer} sent a PostgreSQL SSLRequest to this TLS port, which starts TLS at once: "
            "listen with starttls:...:dialect=postgres for such clients; closed"
        )
    return (
        f"{peer} sent plaintext ({quoted(line)}), not a TLS ClientHello: it may expect plain TCP "
        "or a STARTTLS port (starttls:...:dialect=...); closed"
    )
