"""
Limits on the TLS handshakes a server has in progress.

Before its handshake completes, a connection costs the server memory
(OpenSSL's connection and buffers, the key share it computed) and tells it
nothing about who is there.  Two limits keep that cost bounded:

  - C{handshakeTimeout=}: a client that has not completed its handshake this
    many seconds after connecting (one that sends nothing, or stops half-way)
    is disconnected.
  - C{maxHandshakes=}: at most this many handshakes in progress per listening
    endpoint.  A connection beyond the cap is closed as soon as it is
    accepted, before any TLS state is made for it (docs/hardening.md says
    why closing beats pausing, and how the default was measured).

And every handshake that fails is logged once, with the peer and the reason
in words; never with what the peer sent, which may be anything.
"""

from __future__ import annotations

from typing import Any

from OpenSSL import SSL
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._errors import TLSHandshakeError, opensslReasons

__all__ = ["HandshakeGuard", "HandshakeWatch", "failureText", "peerName"]

log = Logger()


def peerName(transport: Any) -> str:
    """The other end of C{transport} for messages: C{host:port}, C{[v6]:port}, or what it is."""
    address = transport.getPeer() if transport is not None else None
    host = getattr(address, "host", None)
    if host is None:
        return str(address) if address is not None else "a client"
    return f"[{host}]:{address.port}" if ":" in host else f"{host}:{address.port}"  # type: ignore[union-attr]


def _peer(protocol: Any) -> str:
    return peerName(getattr(protocol, "transport", None))


def failureText(reason: Failure) -> str:
    """Why a handshake ended, in words (OpenSSL's reasons, or how the peer left)."""
    value = reason.value
    if isinstance(value, TLSHandshakeError):
        return str(value)
    if isinstance(value, SSL.Error):
        return "; ".join(opensslReasons(value)) or str(value) or "OpenSSL error"
    if isinstance(value, ConnectionAborted):
        return "the connection was aborted"
    if isinstance(value, ConnectionDone):
        return "the client closed the connection"
    if isinstance(value, ConnectionLost):
        return "the connection was lost (reset by the client, or broken)"
    return type(value).__name__


class HandshakeWatch:
    """
    One connection's handshake, from accept to completion or loss: holds its
    deadline and its place under the cap.  Ended exactly once.
    """

    __slots__ = ("_guard", "_timer")

    def __init__(self, guard: HandshakeGuard, timer: IDelayedCall) -> None:
        self._guard = guard
        self._timer: IDelayedCall | None = timer

    def _end(self) -> bool:
        if self._timer is None:
            return False
        if self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._guard.released()
        return True

    def completed(self) -> None:
        """The handshake completed: the deadline no longer applies."""
        self._end()

    def lost(self, protocol: Any, reason: Failure, *, logged: bool = False) -> None:
        """
        The connection ended before its handshake completed.  C{logged}: it
        was already logged (as plaintext, say) and needs no second line.
        """
        if not self._end() or logged:
            return
        if getattr(getattr(protocol, "wrappedProtocol", None), "logsHandshakeFailures", False):
            return  # the application logs failed handshakes itself (securesock's twistd protocols)
        quiet = isinstance(reason.value, (ConnectionDone, ConnectionLost)) and not getattr(
            protocol, "firstBytes", None
        )
        # A client that leaves without sending a byte is a port probe or a
        # health check: worth a debug line, not one per check in the log.
        (log.debug if quiet else log.info)(
            "{peer}: TLS handshake failed: {why}", peer=_peer(protocol), why=failureText(reason)
        )


class HandshakeGuard:
    """
    The handshakes in progress on one listening endpoint, their deadline and
    their cap.  Its methods are called by the endpoint's TLS factory and
    protocols (L{securesock._handshake}).
    """

    def __init__(self, timeout: float, maxHandshakes: int, clock: IReactorTime) -> None:
        self.timeout = timeout
        self.maxHandshakes = maxHandshakes
        self.inProgress = 0
        self.refused = 0  # connections closed at the cap, since it was last reached
        self._clock = clock

    def admit(self, addr: Any) -> bool:
        """
        Whether a new connection may start a handshake.  Reaching the cap is
        logged once, and how many were refused when the server is below it
        again: a flood is two log lines, not one per connection.
        """
        if self.inProgress < self.maxHandshakes:
            return True
        if not self.refused:
            log.warn(
                "maxHandshakes={limit} reached: {limit} TLS handshakes in progress; new connections "
                "are closed until some complete or time out (first refused: {peer})",
                limit=self.maxHandshakes,
                peer=f"{getattr(addr, 'host', addr)}:{getattr(addr, 'port', '')}",
            )
        self.refused += 1
        return False

    def released(self) -> None:
        """
        A handshake ended (completed, failed, timed out): the place it held is
        free.  Leaving the cap is logged then, when it happens, not when the
        next client arrives.
        """
        self.inProgress -= 1
        if self.refused and self.inProgress < self.maxHandshakes:
            log.warn(
                "maxHandshakes={limit}: below the cap again; {refused} connection(s) were "
                "closed while {limit} handshakes were in progress",
                limit=self.maxHandshakes,
                refused=self.refused,
            )
            self.refused = 0

    def watch(self, protocol: Any) -> HandshakeWatch:
        """Start the deadline of an admitted connection's handshake."""
        self.inProgress += 1
        return HandshakeWatch(self, self._clock.callLater(self.timeout, self._expire, protocol))

    def _expire(self, protocol: Any) -> None:
        # failVerification: abort, and hand the application (and the log)
        # this reason instead of a bare "connection aborted".
        protocol.failVerification(
            Failure(
                TLSHandshakeError(
                    f"no complete TLS handshake within {self.timeout:g} s "
                    f"(handshakeTimeout={self.timeout:g}); disconnected"
                )
            )
        )
