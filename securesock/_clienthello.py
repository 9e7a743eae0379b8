"""
The server name a ClientHello asks for, read from its bytes.

OpenSSL forgets it when a TLS 1.2 session is resumed: during a resumption
C{SSL_get_servername} gives the name stored in the session, not the one
the client sent (and the callback that could see the ClientHello is not
bound by pyOpenSSL).  RFC 6066 (section 3) forbids resuming a session made
for another name; L{securesock._creators} compares the two.  Pure: bytes in,
a name out.
"""

from __future__ import annotations

from typing import Final

__all__ = ["UNREADABLE", "Unreadable", "requestedServerName"]


class Unreadable:
    """The bytes are not a whole ClientHello (cut short, or not one at all)."""

    def __repr__(self) -> str:
        return "UNREADABLE"


UNREADABLE: Final = Unreadable()

_HANDSHAKE_RECORD = 0x16
_CLIENT_HELLO = 0x01
_SERVER_NAME = 0x0000
_HOST_NAME = 0x00


def _handshakeMessage(data: bytes) -> bytes | None:
    """The first handshake message, put together from the records that carry it."""
    payload = b""
    offset = 0
    while offset + 5 <= len(data) and data[offset] == _HANDSHAKE_RECORD:
        length = int.from_bytes(data[offset + 3 : offset + 5], "big")
        payload += data[offset + 5 : offset + 5 + length]
        offset += 5 + length
        if len(payload) >= 4:
            wanted = 4 + int.from_bytes(payload[1:4], "big")
            if len(payload) >= wanted:
                return payload[:wanted]
    return None


def requestedServerName(data: bytes) -> bytes | None | Unreadable:
    """
    The host name in the server_name extension of the ClientHello that
    C{data} (what the client sent first) starts with; None if it asks for
    none; L{UNREADABLE} if C{data} does not hold a whole ClientHello.
    """
    message = _handshakeMessage(data)
    if message is None or message[0] != _CLIENT_HELLO:
        return UNREADABLE
    try:
        at = 4 + 2 + 32  # header, legacy version, random
        at += 1 + message[at]  # session id
        at += 2 + int.from_bytes(message[at : at + 2], "big")  # cipher suites
        at += 1 + message[at]  # compression methods
        if at == len(message):
            return None  # no extensions at all
        end = at + 2 + int.from_bytes(message[at : at + 2], "big")
        at += 2
        while at + 4 <= end:
            kind = int.from_bytes(message[at : at + 2], "big")
            size = int.from_bytes(message[at + 2 : at + 4], "big")
            body = message[at + 4 : at + 4 + size]
            if len(body) != size:
                return UNREADABLE
            if kind == _SERVER_NAME:
                listEnd = 2 + int.from_bytes(body[:2], "big")
                item = 2
                while item + 3 <= listEnd:
                    nameType = body[item]
                    nameLength = int.from_bytes(body[item + 1 : item + 3], "big")
                    name = body[item + 3 : item + 3 + nameLength]
                    if nameType == _HOST_NAME and len(name) == nameLength:
                        return bytes(name)
                    item += 3 + nameLength
                return UNREADABLE
            at += 4 + size
    except IndexError:
        return UNREADABLE
    return None
