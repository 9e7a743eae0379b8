"""
The built-in diagnostic responder of ``twistd securesock`` (no ``--connect``),
like ``openssl s_server -www``: an HTTP request gets a small page, any other
client a text summary of what was negotiated.  A client that sends nothing
gets the summary after a short wait, so ``openssl s_client`` shows it too.
An HTTP/2 client (possible only when the listener's ``alpn=`` offers h2) is
told HTTP/1.1 is required.
"""

from __future__ import annotations

import html
import os
import re
import struct
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IProtocolNegotiationFactory
from twisted.internet.protocol import Factory, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from ._connlog import LoggedProtocol

__all__ = ["DiagnosticFactory", "DiagnosticProtocol"]

_REQUEST_LINE = re.compile(rb"^[A-Z]{3,10} \S+ HTTP/\d\.\d\r?\n")
_MAX_REQUEST = 16384
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_HTTP_1_1_REQUIRED = 0xD


def _h2Frame(kind: int, payload: bytes) -> bytes:
    """An HTTP/2 frame on stream 0 (SETTINGS = 4, GOAWAY = 7)."""
    return struct.pack(">I", len(payload))[1:] + bytes([kind, 0]) + struct.pack(">I", 0) + payload


class DiagnosticProtocol(LoggedProtocol):
    """Answers once with the summary, then closes."""

    waitForRequest = 1.0
    _timer: IDelayedCall | None = None
    _answered = False

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._buffer = b""

    def ready(self) -> None:
        self._timer = self._reactor.callLater(self.waitForRequest, self._answer, False)

    def dataReceived(self, data: bytes) -> None:
        self.countIn(data)
        if self._answered:
            return
        self._buffer += data
        if _H2_PREFACE.startswith(self._buffer[: len(_H2_PREFACE)]):
            if len(self._buffer) >= len(_H2_PREFACE):
                self._refuseHTTP2()
            return
        if _REQUEST_LINE.match(self._buffer):
            if b"\r\n\r\n" in self._buffer or b"\n\n" in self._buffer or len(self._buffer) > _MAX_REQUEST:
                self._answer(True)
        elif b"\n" in self._buffer or len(self._buffer) > _MAX_REQUEST:
            self._answer(False)

    def _refuseHTTP2(self) -> None:
        """
        An HTTP/2 client (the listener's alpn= offered h2): the page is HTTP/1.1
        only, so answer as RFC 9113 says, with HTTP_1_1_REQUIRED and a reason
        (curl -v shows it), rather than with bytes the client cannot read.
        """
        reason = b"the securesock diagnostic responder speaks HTTP/1.1 only (curl --http1.1)"
        self._send(_h2Frame(4, b"") + _h2Frame(7, struct.pack(">II", 0, _HTTP_1_1_REQUIRED) + reason))

    def summary(self) -> list[str]:
        lines = ["securesock diagnostic responder"]
        peer = self.transport.getPeer() if self.transport is not None else None
        lines.append(f"Client: {getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}")
        lines.append(f"Served by: pid {os.getpid()}")
        if self.info is None:
            lines.append("Protocol version: plaintext (no TLS on this listener)")
        else:
            lines += self.info.lines()
        return lines

    def _answer(self, http: bool) -> None:
        if self._answered or self.transport is None:
            return
        text = "\n".join(self.summary()) + "\n"
        if http:
            body = (
                "<!DOCTYPE html><html><head><meta charset='utf-8'><title>securesock</title></head>"
                f"<body><pre>{html.escape(text)}</pre></body></html>\n"
            ).encode()
            head = (
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode()
            payload = head + body
        else:
            payload = text.encode()
        self._send(payload)

    def _send(self, payload: bytes) -> None:
        """The one answer: write it and close."""
        if self._answered or self.transport is None:
            return
        self._answered = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self.countOut(payload)
        self.transport.write(payload)
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        super().connectionLost(reason)


@implementer(IProtocolNegotiationFactory)
class DiagnosticFactory(Factory):
    """Builds diagnostic responders; negotiates http/1.1 with clients that offer ALPN."""

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor

    def buildProtocol(self, addr: Any) -> DiagnosticProtocol:
        return DiagnosticProtocol(self._reactor)

    def acceptableProtocols(self) -> list[bytes]:
        return [b"http/1.1"]
