"""
Socket reads for TLS connections: up to 256 KiB per read, into one buffer
the whole process shares, instead of a new 64 KiB bytes object per read.

Twisted's TCP transport reads C{bufferSize} bytes into a new bytes object
each time its socket is readable.  The TLS layer copies them into OpenSSL's
memory BIO at once and never keeps them, so a buffer of our own serves
every connection: the reactor runs one C{doRead} at a time, and the bytes
read are consumed before it returns.  Reading four times as much per call
makes a bulk upload cost a quarter of the reactor passes and system calls
it took (the event loop's share of the CPU, see docs/performance.md); a
buffer allocated per read could not be that large, as big allocations cost
page faults in the C library (the same effect as "Not more than 64 KiB per
call").

Only connections accepted by Twisted's plain TCP ports (C{tcp.Server}),
and only when the securesock TLS protocol is the one they feed, read this
way: that protocol takes the view it is given as the bytes of this read,
valid during the call.  (Twisted's client endpoints put a wrapper of their
own between the transport and the TLS protocol: clients read as before.)
"""

from __future__ import annotations

from typing import Any

from twisted.internet import main, tcp

__all__ = ["READ_SIZE", "readIntoSharedBuffer"]

READ_SIZE = 2**18

_BUFFER = bytearray(READ_SIZE)
_VIEW = memoryview(_BUFFER)


class _Server(tcp.Server):
    """An accepted TCP connection carrying securesock's TLS: C{doRead} reads into the shared buffer."""

    bufferSize = READ_SIZE

    def doRead(self) -> Any:  # as tcp.Connection.doRead
        try:
            size = self.socket.recv_into(_BUFFER)
        except BlockingIOError:  # EWOULDBLOCK (EAGAIN), as Twisted's doRead
            return None
        except OSError:
            return main.CONNECTION_LOST
        if not size:
            return main.CONNECTION_DONE
        protocol: Any = self.protocol  # securesock's TLS protocol (readIntoSharedBuffer)
        protocol.dataReceived(_VIEW[:size])
        return None


def readIntoSharedBuffer(transport: Any, protocol: Any) -> None:
    """
    Make C{transport} read into the shared buffer, if it is a connection
    accepted by one of Twisted's TCP ports and C{protocol} (which must accept
    a memoryview in C{dataReceived}) is what it feeds.  Its class becomes a
    subclass that changes C{doRead} only; any other transport (a subclass of
    C{tcp.Server} with reads of its own among them) is left as it is.
    """
    if type(transport) is tcp.Server and transport.protocol is protocol:
        transport.__class__ = _Server
