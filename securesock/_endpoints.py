"""
Endpoints: options -> material -> context -> Twisted endpoints.

Certificates, keys and contexts are loaded here, when the endpoint is built,
so every mistake is reported before anything listens or connects.  The TLS
layer is Twisted's C{TLSMemoryBIOProtocol} over any stream endpoint: TCP by
default, or whatever C{endpoint=} describes.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from OpenSSL import SSL
from twisted.internet import endpoints as twistedEndpoints
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.internet.threads import deferToThreadPool
from zope.interface import implementer

from ._context import clientContext, serverContext
from ._creators import ClientCreator, ServerCreator
from ._errors import DescriptionError
from ._handshake import HandshakeGateFactory, TLSFactory
from ._material import Identity, loadIdentity
from ._options import ClientOptions, ServerOptions
from ._versions import formatProtocols

__all__ = ["TLSServerEndpoint", "TLSClientEndpoint", "buildServer", "buildClient"]

# Chosen by securesock/__init__.py so nested endpoint= descriptions get the
# full grammar (URL forms, securesock's prefixes) without a cyclic import.
NestedParser = Callable[[Any, str], Any]


@implementer(IStreamServerEndpoint)
class TLSServerEndpoint:
    """
    A TLS server over another server endpoint.  C{options}, C{identity} and
    C{creator.context} say exactly what it will serve.
    """

    def __init__(
        self, inner: IStreamServerEndpoint, creator: ServerCreator, options: ServerOptions, identity: Identity
    ) -> None:
        self.inner = inner
        self.creator = creator
        self.options = options
        self.identity = identity

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        return self.inner.listen(
            TLSFactory(self.creator, False, protocolFactory, self.options.policy.noDelay)
        )

    def __repr__(self) -> str:
        return f"<TLSServerEndpoint port={self.options.port} {self.identity!r}>"


@implementer(IStreamClientEndpoint)
class TLSClientEndpoint:
    """
    A TLS client over another client endpoint.  C{connect()} fires once the
    handshake has completed and the server was verified.
    """

    def __init__(self, inner: IStreamClientEndpoint, creator: ClientCreator, options: ClientOptions) -> None:
        self.inner = inner
        self.creator = creator
        self.options = options

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        peer = f"{self.options.host}:{self.options.port}"
        gates = HandshakeGateFactory(protocolFactory, peer, formatProtocols(self.options.policy.protocols))
        connected = self.inner.connect(TLSFactory(self.creator, True, gates, self.options.policy.noDelay))

        def handshakeDone(tls: Any) -> Deferred[IProtocol]:
            return tls.wrappedProtocol.ready  # type: ignore[no-any-return]

        return connected.addCallback(handshakeDone)

    def __repr__(self) -> str:
        return f"<TLSClientEndpoint {self.options.host}:{self.options.port}>"


@implementer(IListeningPort)
class _ListeningPorts:
    """Several listening ports (one per address of a host name) acting as one."""

    def __init__(self, ports: list[IListeningPort]) -> None:
        self.ports = ports

    def startListening(self) -> None:
        for port in self.ports:
            port.startListening()

    def stopListening(self) -> Deferred[None]:
        stopping = [maybeDeferred(port.stopListening) for port in self.ports]
        return gatherResults(stopping, consumeErrors=True).addCallback(lambda _: None)

    def getHost(self) -> Any:
        return self.ports[0].getHost()


@implementer(IStreamServerEndpoint)
class _HostNameServerEndpoint:
    """Listens on every address a host name resolves to, resolved at listen time."""

    def __init__(self, reactor: Any, hostname: str, port: int, backlog: int) -> None:
        self._reactor = reactor
        self._hostname = hostname
        self._port = port
        self._backlog = backlog

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        resolving = deferToThreadPool(
            self._reactor,
            self._reactor.getThreadPool(),
            socket.getaddrinfo,
            self._hostname,
            self._port,
            0,
            socket.SOCK_STREAM,
        )

        def listenAll(results: list[Any]) -> Deferred[IListeningPort]:
            addresses = list(dict.fromkeys(info[4][0] for info in results))
            listening = [
                _tcpServer(self._reactor, address, self._port, self._backlog).listen(protocolFactory)
                for address in addresses
            ]
            return gatherResults(listening, consumeErrors=True).addCallback(_ListeningPorts)  # type: ignore[no-any-return]

        return resolving.addCallback(listenAll)  # type: ignore[no-any-return]


def _tcpServer(reactor: Any, interface: str, port: int, backlog: int) -> IStreamServerEndpoint:
    if isIPv6Address(interface):
        return twistedEndpoints.TCP6ServerEndpoint(reactor, port, backlog, interface)
    return twistedEndpoints.TCP4ServerEndpoint(reactor, port, backlog, interface)


def _innerServer(reactor: Any, options: ServerOptions, nested: NestedParser) -> IStreamServerEndpoint:
    if options.endpoint is not None:
        return _nested(nested, reactor, options.endpoint)  # type: ignore[no-any-return]
    interface = options.interface
    if interface is None:
        # "::" accepts IPv4 too (Linux, macOS and Windows default to dual-stack).
        return twistedEndpoints.TCP6ServerEndpoint(reactor, options.port, options.backlog, "::")
    if isIPAddress(interface) or isIPv6Address(interface):
        return _tcpServer(reactor, interface, options.port, options.backlog)
    return _HostNameServerEndpoint(reactor, interface, options.port, options.backlog)


def _nested(nested: NestedParser, reactor: Any, description: str) -> Any:
    try:
        return nested(reactor, description)
    except DescriptionError as e:
        raise DescriptionError(
            f"endpoint={description!r}: {e}", option="endpoint", value=description
        ) from None


def buildServer(reactor: Any, options: ServerOptions, nested: NestedParser) -> TLSServerEndpoint:
    """A listening TLS endpoint for C{options}; all files are read now."""
    identity = loadIdentity(options.policy.identity)
    context = serverContext(options, identity)
    return TLSServerEndpoint(
        _innerServer(reactor, options, nested), ServerCreator(context), options, identity
    )


def buildClient(reactor: Any, options: ClientOptions, nested: NestedParser) -> TLSClientEndpoint:
    """A connecting TLS endpoint for C{options}; all files are read now."""
    identity = loadIdentity(options.policy.identity) if options.policy.identity.given else None
    context: SSL.Context = clientContext(options, identity)
    if options.endpoint is not None:
        inner = _nested(nested, reactor, options.endpoint)
    else:
        bind = None if options.bindAddress is None else (options.bindAddress, 0)
        inner = twistedEndpoints.HostnameEndpoint(reactor, options.host, options.port, options.timeout, bind)
    return TLSClientEndpoint(inner, ClientCreator(context, options), options)
