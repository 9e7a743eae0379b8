"""
One log line per connection for the protocols the twistd command serves:
peer, SNI, version, cipher, bytes each way, duration and why it closed; a
failed handshake is logged with OpenSSL's reason (the alert), never with key
material.
"""

from __future__ import annotations

import time

from OpenSSL import SSL
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ._errors import TLSHandshakeError
from ._guard import failureText, peerName
from ._sessioninfo import TLSDetails, handshakeDone, sessionInfo, sslConnection

__all__ = ["CONNECTION_LOGS", "LoggedProtocol", "closeReason"]

# Which connections get their line: every one; only those that failed (a failed
# handshake, a TLS error, a reason of the server's own such as an unreachable
# backend); or none.  A line costs more CPU than a TLS 1.3 handshake's own
# Python (docs/performance.md): busy servers may keep only the failures.
CONNECTION_LOGS = ("all", "failures", "none")

log = Logger(namespace="securesock.connection")


def closeReason(reason: Failure) -> str:
    """A short text for why a connection ended."""
    value = reason.value
    if isinstance(value, SSL.Error):
        return "TLS error: " + failureText(reason)
    if isinstance(value, TLSHandshakeError):
        return str(value)  # securesock's own words say it all (a timeout, a plaintext client)
    text = str(value).strip().rstrip(".")
    return f"{type(value).__name__}: {text}" if text else type(value).__name__


def _ended(closedBy: str | None, reason: Failure) -> str:
    """Who ended it, when the end was clean; with what went wrong after, when it was not."""
    if closedBy is None:
        return closeReason(reason)
    if reason.check(ConnectionDone):
        return closedBy
    return f"{closedBy}; then {closeReason(reason)}"


@implementer(IHandshakeListener)
class LoggedProtocol(Protocol):
    """
    Base for served connections: C{ready()} is called once the connection is
    usable (after the TLS handshake when there is one), and one line is
    logged when it closes.  Subclasses count bytes with C{countIn}/C{countOut}.
    """

    info: TLSDetails | None = None
    logsHandshakeFailures = True  # its close line says so; the TLS layer (securesock._guard) stays quiet
    _started = 0.0
    _ready = False
    bytesIn = 0
    bytesOut = 0
    # Why the connection was ended, when this side ended it for a reason of its
    # own (a relay whose backend is unreachable); logged instead of the transport's.
    closeNote: str | None = None
    # Who ended a connection that ended normally (the relay's backend), said
    # instead of how the transport saw it: not a failure, unlike closeNote.
    closedBy: str | None = None
    connectionLog = "all"  # one of CONNECTION_LOGS

    def connectionMade(self) -> None:
        self._started = time.monotonic()
        connection = sslConnection(self.transport)
        if connection is None or handshakeDone(connection):
            self._becomeReady()

    def handshakeCompleted(self) -> None:
        if not self._ready:
            self._becomeReady()

    def _becomeReady(self) -> None:
        self._ready = True
        self.info = sessionInfo(self.transport)
        self.ready()

    def ready(self) -> None:
        """The connection can be used now."""

    def countIn(self, data: bytes) -> None:
        self.bytesIn += len(data)

    def countOut(self, data: bytes) -> None:
        self.bytesOut += len(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.connectionLog == "none":
            return
        if not self._ready:
            log.info(
                "{peer} handshake failed: {reason}", peer=peerName(self.transport), reason=closeReason(reason)
            )
            return
        if self.connectionLog == "failures" and self.closeNote is None and not reason.check(SSL.Error):
            return
        where = peerName(self.transport)
        info = self.info
        log.info(
            "{peer} sni={sni} {version} {cipher} in={bytesIn} out={bytesOut} {duration:.3f}s closed: {reason}",
            peer=where,
            sni=(info.sni if info else None) or "-",
            version=info.version if info else "plaintext",
            cipher=(info.cipher if info else None) or "-",
            bytesIn=self.bytesIn,
            bytesOut=self.bytesOut,
            duration=time.monotonic() - self._started,
            reason=self.closeNote or _ended(self.closedBy, reason),
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"
