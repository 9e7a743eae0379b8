"""
Bytes for a TCP connection handed to its socket at once, instead of from the
reactor's next "writable" event.

Twisted's TCP transport queues every write and sends it when the event loop
next finds the socket writable: two C{epoll_ctl} calls and one more pass
through the loop per write, and a response waits for that pass.  When
nothing is queued before them, the bytes can go to the kernel now; what the
socket does not take goes through the transport as before, which keeps the
order of bytes, the producer's back-pressure and the errors' reporting
(the reactor's next write meets a broken socket and reports it).

Used for TLS records (L{securesock._handshake}) and for the plaintext side
of the relay (L{securesock._relay}).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp

__all__ = ["sendNow", "sendsAtOnce"]


def sendsAtOnce(transport: Any) -> bool:
    """
    Whether bytes for C{transport}, a TCP (or UNIX) connection of Twisted's,
    may go to its socket now rather than through its buffer: only when that
    buffer is empty (the order of bytes is kept), with no close or
    half-close under way, and no producer other than a streaming one (the
    TLS layer and the relay register producers as streaming; the transport
    pauses one when what the socket did not take fills its buffer, and
    resumes it when that has gone, as before), and neither TLS started on
    the connection itself (Twisted's C{startTLS}: its bytes must be
    encrypted first) nor file descriptors waiting to go with the next
    bytes of a UNIX connection.  These are attributes of
    C{twisted.internet.abstract.FileDescriptor}; tests/test_handshake_overrides.py
    pins the Twisted code they come from.
    """
    return (
        transport.connected
        and (transport.producer is None or transport.streamingProducer)
        and not transport.disconnecting
        and not transport._tempDataBuffer
        and transport.offset == len(transport.dataBuffer)
        and not transport._writeDisconnecting
        and not transport._writeDisconnected
        and not getattr(transport, "_aborting", False)
        and not getattr(transport, "TLS", False)  # after Twisted's startTLS, writes go through TLS
        and not getattr(transport, "_sendmsgQueue", None)  # UNIX: descriptors go with the next bytes
    )


def sendNow(transport: Any, data: bytes) -> None:
    """
    Write C{data} to C{transport}: straight to the socket of a TCP (or UNIX)
    connection when L{sendsAtOnce} allows, what it does not take (or all of
    it, on an error) through the transport; any other transport is written
    to as usual.
    """
    if isinstance(transport, tcp.Connection) and sendsAtOnce(transport):
        try:
            sent = transport.socket.send(data)
        except OSError:
            sent = 0
        if sent < len(data):
            transport.write(data[sent:] if sent else data)
    else:
        transport.write(data)
