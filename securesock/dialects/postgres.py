"""
PostgreSQL's SSLRequest (protocol 3.0, "Message Flow: SSL Session Encryption").

The client sends an 8-byte SSLRequest; the server answers one byte: C{S}
(TLS follows) or C{N} (no TLS).  Server: answers C{S} to SSLRequest, C{N}
to GSSENCRequest (the client then tries SSLRequest), and a StartupMessage
sent in plaintext with a FATAL error.  Client: C{S} upgrades; C{N} or an
error is a failure, never a plaintext session.  A byte after C{S} is the
injection PostgreSQL itself fixed in CVE-2021-23214 (server) and
CVE-2021-23222 (client).
"""

from __future__ import annotations

import struct

from . import FramingError, Step, noGreeting, quoted

__all__ = ["Server", "Client", "SSL_REQUEST"]

_SSL_CODE, _GSS_CODE, _CANCEL_CODE, _PROTOCOL_3 = 80877103, 80877104, 80877102, 196608
SSL_REQUEST = struct.pack("!II", 8, _SSL_CODE)
_LIMIT = 10000


def _startupFraming(buffer: bytes) -> int:
    if len(buffer) < 4:
        return 0
    size = int.from_bytes(buffer[:4], "big")
    if not 8 <= size <= _LIMIT:
        raise FramingError(f"{quoted(buffer[:8])} is not a PostgreSQL startup packet")
    return size if len(buffer) >= size else 0


def _answerFraming(buffer: bytes) -> int:
    if not buffer:
        return 0
    if buffer[:1] in (b"S", b"N"):
        return 1
    if buffer[:1] != b"E":
        raise FramingError(f"{quoted(buffer[:8])} is not an answer to SSLRequest")
    if len(buffer) < 5:
        return 0
    size = int.from_bytes(buffer[1:5], "big")
    if not 4 <= size <= _LIMIT:
        raise FramingError("an error message of impossible length")
    return 1 + size if len(buffer) >= 1 + size else 0


def errorResponse(code: bytes, message: bytes) -> bytes:
    fields = b"SFATAL\0VFATAL\0C" + code + b"\0M" + message + b"\0\0"
    return b"E" + struct.pack("!I", 4 + len(fields)) + fields


class Server:
    name = "postgres"
    upgradeCommand = "SSLRequest"
    framing = staticmethod(_startupFraming)

    def __init__(self, serverName: str) -> None:
        pass

    def start(self) -> Step:
        return Step()

    def received(self, message: bytes) -> Step:
        code = int.from_bytes(message[4:8], "big")
        if len(message) == 8 and code == _SSL_CODE:
            return Step(b"S", upgrade=True)
        if len(message) == 8 and code == _GSS_CODE:
            return Step(b"N")
        if code == _PROTOCOL_3:
            return Step(
                errorResponse(b"28000", b"SSL/TLS is required: connect with sslmode=require or verify-full"),
                close="the client sent a StartupMessage without SSLRequest",
            )
        if code == _CANCEL_CODE:
            return Step(close="a CancelRequest in plaintext is not accepted")
        return Step(close=f"postgres: unknown startup packet code {code}")

    withoutGreeting = staticmethod(noGreeting)


class Client:
    name = "postgres"
    upgradeCommand = "SSLRequest"
    framing = staticmethod(_answerFraming)

    def __init__(self, serverName: str, localName: str) -> None:
        pass

    def start(self) -> Step:
        return Step(SSL_REQUEST)

    def received(self, message: bytes) -> Step:
        if message == b"S":
            return Step(upgrade=True)
        if message == b"N":
            return Step(
                close="the server does not accept TLS (it answered N to SSLRequest); securesock never falls back to plaintext"
            )
        fields = {part[:1]: part[1:] for part in message[5:].split(b"\0") if part}
        return Step(
            close=f"the server answered SSLRequest with an error: {quoted(fields.get(b'M', message))}"
        )
