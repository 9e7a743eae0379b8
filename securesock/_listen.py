"""
TCP listening sockets with the options Twisted's TCP endpoints do not offer:
C{reusePort=yes} (SO_REUSEPORT, so worker processes share a port and the
kernel spreads connections) and C{exclusive=yes} (no SO_REUSEADDR: refuse to
start if anything holds the address, WinDev's C{SocketNoReuseAddress}).

The socket is made here and handed to the reactor with
C{IReactorSocket.adoptStreamPort}, Twisted's public way to listen on a socket
made elsewhere.
"""

from __future__ import annotations

import errno
import socket
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from zope.interface import implementer

__all__ = ["SocketOptionServerEndpoint"]


@implementer(IStreamServerEndpoint)
class SocketOptionServerEndpoint:
    """Listens on one address with SO_REUSEPORT or without SO_REUSEADDR."""

    def __init__(
        self, reactor: Any, interface: str, port: int, backlog: int, *, reusePort: bool, exclusive: bool
    ) -> None:
        self._reactor = reactor
        self._interface = interface
        self._port = port
        self._backlog = backlog
        self._reusePort = reusePort
        self._exclusive = exclusive

    def _socket(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self._interface else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            if family == socket.AF_INET6 and self._interface == "::":
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            if not self._exclusive:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self._reusePort:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self._interface, self._port))
            sock.listen(self._backlog)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        try:
            sock = self._socket()
        except OSError as e:
            why = e.strerror or str(e)
            if e.errno == errno.EADDRINUSE and self._exclusive:
                why = f"{why}: the address is in use and exclusive=yes refuses to share it"
            return fail(CannotListenError(self._interface, self._port, why))
        try:
            port = self._reactor.adoptStreamPort(sock.fileno(), sock.family, protocolFactory)
        finally:
            sock.close()  # the reactor listens on its own duplicate
        return succeed(port)
