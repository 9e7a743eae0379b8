"""
Safe STARTTLS for line protocols that upgrade themselves.

Twisted's C{LineReceiver} and C{LineOnlyReceiver} split a whole chunk into
lines before dispatching any of them.  When a line is C{STARTTLS} and the
protocol calls C{transport.startTLS} (as C{twisted.mail.smtp.ESMTP},
C{ESMTPClient}, C{IMAP4Server} and C{POP3} do), the lines after it in the
same chunk were received in plaintext, yet are processed as if they came
over TLS: CVE-2011-0411, still present in Twisted 26.10.  Clearing the line
buffer is not enough, the rest of the chunk has to go too.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import ISSLTransport
from twisted.logger import Logger

from ._errors import StartTLSInjectionError
from ._guard import peerName
from ._options import ClientOptions, ServerOptions
from ._starttls import TLSDetails, TLSUpgrade, startTLS
from .dialects import commandOf, quoted

__all__ = ["StartTLSLineMixin"]

log = Logger()


class StartTLSLineMixin:
    """
    Mix into a C{LineReceiver}/C{LineOnlyReceiver} protocol, first in the
    bases (C{class SafeESMTP(StartTLSLineMixin, ESMTP)}).

    Until the connection is TLS, lines are handed to the protocol one at a
    time.  If a line made the protocol start TLS, by its own
    C{transport.startTLS} or by L{upgradeToTLS}, and bytes received after
    that line are waiting, the connection is closed without processing them.
    Once TLS is up (or if it was from the start) the mixin steps aside: one
    attribute test per chunk.
    """

    transport: Any
    delimiter: bytes
    MAX_LENGTH: int
    _securesockPending = b""
    _securesockDone = False
    _securesockDispatching = False

    def dataReceived(self, data: bytes) -> None:
        if self._securesockDone:
            super().dataReceived(data)  # type: ignore[misc]
            return
        if self._securesockDispatching:
            # LineReceiver.setLineMode(extra), called from within the piece being
            # dispatched, hands back bytes of that piece: they came before the
            # ones still waiting, so they go first (and the loop below takes them).
            self._securesockPending = data + self._securesockPending
            return
        pending = self._securesockPending + data
        self._securesockPending = b""
        if ISSLTransport.providedBy(self.transport):
            self._securesockDone = True
            super().dataReceived(pending)  # type: ignore[misc]
            return
        delimiter = self.delimiter
        while pending:
            if getattr(self, "line_mode", True):
                end = pending.find(delimiter)
                if end < 0:
                    break
                piece, pending = pending[: end + len(delimiter)], pending[end + len(delimiter) :]
            else:
                # Raw mode (LineReceiver.setRawMode, an IMAP literal): the protocol counts
                # the bytes itself and hands back what follows with setLineMode.
                piece, pending = pending, b""
            self._securesockPending = pending  # what upgradeToTLS must see as waiting
            self._securesockDispatching = True
            try:
                super().dataReceived(piece)  # type: ignore[misc]
            finally:
                self._securesockDispatching = False
            if self._securesockDone:  # upgradeToTLS refused, or already closed
                return
            if getattr(self.transport, "disconnecting", False):
                # The line closed the connection (QUIT): like LineReceiver with
                # a whole chunk, do not process the lines after it.
                return
            pending, self._securesockPending = self._securesockPending, b""
            if ISSLTransport.providedBy(self.transport):
                self._securesockDone = True
                if pending:
                    self._refuse(pending, piece)
                return
        if len(pending) > self.MAX_LENGTH:
            # LineReceiver's rule: the partial line is dropped and lineLengthExceeded
            # called.  It closes the connection, unless the protocol answers instead
            # (SMTP's "500 Line too long"): the mixin stays on either way.
            self.lineLengthExceeded(pending)  # type: ignore[attr-defined]
            return
        self._securesockPending = pending

    def upgradeToTLS(self, upgrade: TLSUpgrade | ServerOptions | ClientOptions) -> Deferred[TLSDetails]:
        """
        L{securesock.startTLS} on this protocol's transport, refused (and the
        connection closed) while plaintext bytes are waiting.
        """
        if self._securesockPending:
            pending, self._securesockPending = self._securesockPending, b""
            self._securesockDone = True
            return fail(self._refuse(pending, None))
        return startTLS(self.transport, upgrade)

    def _refuse(self, pending: bytes, line: bytes | None) -> StartTLSInjectionError:
        after = f"after {quoted(line.strip())} " if line is not None else ""
        error = StartTLSInjectionError(
            f"{len(pending)} plaintext bytes (starting {commandOf(pending)}) arrived {after}before TLS "
            "started; closed without processing them (STARTTLS injection, CVE-2011-0411 class)"
        )
        log.warn("{peer}: {error}", peer=peerName(self.transport), error=error)
        self.transport.abortConnection()
        return error
