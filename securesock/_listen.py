"""
TCP listening sockets with the options Twisted's TCP endpoints do not offer:
C{reusePort=yes} (SO_REUSEPORT, so worker processes share a port and the
kernel spreads connections) and C{exclusive=yes} (no SO_REUSEADDR: refuse to
start if anything holds the address, WinDev's C{SocketNoReuseAddress}).

The socket is made here and handed to the reactor with
C{IReactorSocket.adoptStreamPort}, Twisted's public way to listen on a socket
made elsewhere.  Twisted's own C{tcp:} descriptions get the two options here
too (L{plainTCPServer}), so C{twistd securesock --workers} can share a
plaintext port as well.
"""

from __future__ import annotations

import errno
import socket
from typing import Any

from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from zope.interface import implementer

from ._errors import DescriptionError

__all__ = ["SocketOptionServerEndpoint", "plainTCPServer"]

_SOCKET_OPTIONS = ("reuseport", "exclusive")


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

    @property
    def port(self) -> int:
        """The port asked for (0: any free one)."""
        return self._port

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
            return succeed(self._reactor.adoptStreamPort(sock.fileno(), sock.family, protocolFactory))
        except Exception:
            return fail()  # an endpoint reports failure in its Deferred, never by raising
        finally:
            sock.close()  # the reactor listens on its own duplicate


def _number(name: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        number = -1
    if not low <= number <= high:
        raise DescriptionError(
            f"{name}={value!r}: accepted: a whole number from {low} to {high}", option=name, value=value
        )
    return number


def plainTCPServer(reactor: Any, description: str) -> SocketOptionServerEndpoint | None:
    """
    Twisted's C{tcp:PORT[:interface=IP][:backlog=N]} with C{reusePort=} or
    C{exclusive=} added; None for any other description (Twisted parses it).
    """
    from ._description import _fromTwistedForm, splitDescription
    from ._optiontable import _boolean

    split = splitDescription(description, "server")
    if not isinstance(split, str):
        return None
    description = split  # a tcp:// URL is now in Twisted's form
    if not description.lower().startswith(("tcp:", "tcp6:")) or not any(
        f"{name}=" in description.lower() for name in _SOCKET_OPTIONS
    ):
        return None
    parsed = _fromTwistedForm(description)
    values = {name.strip(): value for name, value in parsed.kwargs}
    accepted = {"port", "interface", "backlog", "reusePort", "exclusive"}
    for name in values:
        if name not in accepted:
            raise DescriptionError(
                f"{description!r}: option {name!r} is not one of {', '.join(sorted(accepted))} "
                "(what tcp: accepts with reusePort= or exclusive=)",
                option=name,
            )
    if len(parsed.args) > 1 or (parsed.args and "port" in values):
        raise DescriptionError(f"{description!r}: give the port once, as tcp:PORT", option="port")
    port = parsed.args[0] if parsed.args else values.get("port")
    if port is None:
        raise DescriptionError(f"{description!r}: no port; write tcp:PORT", option="port")
    default = "::" if parsed.prefix == "tcp6" else "0.0.0.0"
    interface = values.get("interface", default).strip("[]") or default
    if not (isIPAddress(interface) or isIPv6Address(interface)):
        raise DescriptionError(
            f"interface={interface!r}: reusePort= and exclusive= need an IP address to listen on",
            option="interface",
            value=interface,
        )
    reusePort = _boolean("reusePort", values.get("reusePort", "no"))
    exclusive = _boolean("exclusive", values.get("exclusive", "no"))
    if reusePort and exclusive:
        raise DescriptionError(
            "reusePort=yes and exclusive=yes contradict each other: choose one", option="exclusive"
        )
    return SocketOptionServerEndpoint(
        reactor,
        interface,
        _number("port", port, 0, 65535),
        _number("backlog", values.get("backlog", "50"), 1, 65535),
        reusePort=reusePort,
        exclusive=exclusive,
    )
