"""
The built-in diagnostic responder of ``twistd securesock`` (no ``--connect``),
like ``openssl s_server -www``: an HTTP request gets a small page, any other
client a text summary of what was negotiated.  A client that sends nothing
gets the summary after a short wait, so ``openssl s_client`` shows it too.
"""

from __future__ import annotations

import html
import os
import re
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IProtocolNegotiationFactory
from twisted.internet.protocol import Factory, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from ._connlog import LoggedProtocol

__all__ = ["DiagnosticFactory", "DiagnosticProtocol"]

_REQUEST_LINE = re.compile(rb"^[A-Z]{3,10} \S+ HTTP/\d\.\d\r?\n")
_MAX_REQUEST = 16384


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
        if _REQUEST_LINE.match(self._buffer):
            if b"\r\n\r\n" in self._buffer or b"\n\n" in self._buffer or len(self._buffer) > _MAX_REQUEST:
                self._answer(True)
        elif b"\n" in self._buffer or len(self._buffer) > _MAX_REQUEST:
            self._answer(False)

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
        self._answered = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
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
