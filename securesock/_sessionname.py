"""
The server name a resumed TLS 1.3 session was made for.

OpenSSL ties no name to a TLS 1.3 session (SSL_get_servername answers with
the name asked for now), and it accepts the session's pre-shared key before
the SNI callback runs, so a server holding several certificates cannot tell
from its public API that a client resumes, for a.example, a session made for
b.example, where it was authenticated by b.example's certificate (RFC 8446,
4.6.1 forbids the client to do so; openssl s_client -sess_in does it).  The
name is in the session itself: its DER form (OpenSSL's SSL_SESSION_ASN1,
field [6] tlsext_hostname), read through pyOpenSSL's bindings while the
callback runs, before OpenSSL replaces it with the new one.
"""

from __future__ import annotations

from OpenSSL import SSL

from ._clienthello import UNREADABLE, Unreadable
from ._der import DERError, element

__all__ = ["resumedSessionName"]

_HOSTNAME_TAG = 0xA6  # [6] EXPLICIT, constructed
_OCTET_STRING = 0x04
_SEQUENCE = 0x30


def resumedSessionName(connection: SSL.Connection) -> bytes | None | Unreadable:
    """
    The server name of the session C{connection} resumes: None for a session
    made without SNI, L{Unreadable} when the bindings or the encoding are not
    as expected (then nothing can be concluded).
    """
    try:
        from OpenSSL.SSL import _ffi, _lib  # type: ignore[attr-defined]

        session = _lib.SSL_get_session(connection._ssl)  # type: ignore[attr-defined]
        if session == _ffi.NULL:
            return UNREADABLE
        size = _lib.i2d_SSL_SESSION(session, _ffi.NULL)
        if size <= 0:
            return UNREADABLE
        buffer = _ffi.new("unsigned char[]", size)
        cursor = _ffi.new("unsigned char **", buffer)
        if _lib.i2d_SSL_SESSION(session, cursor) != size:
            return UNREADABLE
        der = bytes(_ffi.buffer(buffer, size))
    except (ImportError, AttributeError):  # pragma: no cover - other pyOpenSSL versions
        return UNREADABLE
    return hostnameOf(der)


def hostnameOf(der: bytes) -> bytes | None | Unreadable:
    """Field [6] (tlsext_hostname) of a DER-encoded SSL_SESSION."""
    try:
        _, position, end = element(der, 0, _SEQUENCE)
        if end != len(der):
            return UNREADABLE
        while position < end:
            tag, contentStart, contentEnd = element(der, position)
            if tag == _HOSTNAME_TAG:
                _, nameStart, nameEnd = element(der, contentStart, _OCTET_STRING)
                return der[nameStart:nameEnd] if nameEnd == contentEnd else UNREADABLE
            position = contentEnd
    except DERError:
        return UNREADABLE
    return None
