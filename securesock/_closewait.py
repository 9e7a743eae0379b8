"""
A bound on how long a connection this side closed waits for the peer's
close_notify.

Twisted's TLS layer, after sending its close_notify, keeps the TCP
connection until the peer answers with its own (or closes TCP): a peer
that does neither, by accident or to hold a server's connections, keeps it
open for ever.  Waiting has a purpose, a close with unread data from the
peer resets the connection and may destroy what the peer has not read yet,
but it needs an end: after L{CLOSE_WAIT} seconds the TCP connection is
closed the ordinary way (what Twisted still holds for the peer is written
first, as for plain TCP).  One timer serves all of an endpoint's closing
connections, and none runs while none waits (Twisted's trial checks that a
test leaves no timer behind).
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime

__all__ = ["CLOSE_WAIT", "ClosingWatch"]

# Seconds; nginx gives a lingering close 30 s (lingering_time) as well.
CLOSE_WAIT = 30.0


class _Closing(Protocol):
    def closeWaitExpired(self) -> None: ...


class ClosingWatch:
    """The connections waiting for their peer's close_notify, oldest first."""

    def __init__(self, clock: IReactorTime, wait: float | None = None) -> None:
        self._clock = clock
        self.wait = CLOSE_WAIT if wait is None else wait
        self._waiting: dict[_Closing, float] = {}  # insertion order is deadline order: one wait for all
        self._timer: IDelayedCall | None = None

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, connection: _Closing) -> None:
        if connection in self._waiting:
            return
        self._waiting[connection] = self._clock.seconds() + self.wait
        if self._timer is None:
            self._timer = self._clock.callLater(self.wait, self._sweep)

    def discard(self, connection: Any) -> None:
        if self._waiting.pop(connection, None) is not None and not self._waiting and self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _sweep(self) -> None:
        self._timer = None
        now = self._clock.seconds()
        expired = []
        for connection, deadline in self._waiting.items():
            if deadline > now:
                break
            expired.append(connection)
        for connection in expired:
            del self._waiting[connection]
        if self._waiting:
            first = next(iter(self._waiting.values()))
            self._timer = self._clock.callLater(max(0.0, first - now), self._sweep)
        for connection in expired:
            connection.closeWaitExpired()  # may add it again (still waiting for its own writes)
