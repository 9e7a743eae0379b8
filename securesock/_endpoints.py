"""
Endpoints: options -> material -> context -> Twisted endpoints.

Certificates, keys and contexts are loaded here, when the endpoint is built,
so every mistake is reported before anything listens or connects.  The TLS
layer is Twisted's C{TLSMemoryBIOProtocol} over any stream endpoint: TCP by
default, or whatever C{endpoint=} describes.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

from OpenSSL import SSL
from twisted.internet import endpoints as twistedEndpoints
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from zope.interface import implementer

from ._context import clientContext
from ._creators import ClientCreator, ServerCreator
from ._errors import CertificateError, DescriptionError
from ._handshake import HandshakeGateFactory, TLSFactory
from ._identity import selectClientIdentity, selectServerIdentities, storePath, trustCertificates
from ._listen import SocketOptionServerEndpoint
from ._material import Identity
from ._options import ClientOptions, ClientVerification, ServerOptions
from ._reload import Renewal, serverCreator
from ._store import openStore
from ._versions import formatProtocols

__all__ = ["TLSServerEndpoint", "TLSClientEndpoint", "buildServer", "buildClient", "prebuildServer"]

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
        self.identity = identity  # the default certificate, as first loaded
        self.renewal: Renewal | None = None  # the certificates served now: renewal.served

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        return self.inner.listen(
            TLSFactory(
                self.creator,
                False,
                protocolFactory,
                self.options.policy.noDelay,
                limits=(self.options.handshakeTimeout, self.options.maxHandshakes),
            )
        )

    def reload(self) -> bool:
        """Re-read the certificate files now (SIGHUP); True if anything changed."""
        return self.renewal.check() if self.renewal is not None else False

    def __repr__(self) -> str:
        return f"<TLSServerEndpoint port={self.options.port} {self.identity!r}>"


@implementer(IStreamClientEndpoint)
class TLSClientEndpoint:
    """
    A TLS client over another client endpoint.  C{connect()} fires once the
    handshake has completed and the server was verified.
    """

    def __init__(
        self, inner: IStreamClientEndpoint, creator: ClientCreator, options: ClientOptions, clock: Any = None
    ) -> None:
        self.inner = inner
        self.creator = creator
        self.options = options
        self.clock = clock  # for the handshake deadline (timeout=); None: no deadline

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        options = self.options
        peer = (
            f"{options.host}:{options.port}"
            if options.endpoint is None
            else f"{options.host} ({options.endpoint})"
        )
        deadline = None if self.clock is None else (self.clock, options.timeout)
        gates = HandshakeGateFactory(
            protocolFactory, peer, formatProtocols(self.options.policy.protocols), deadline
        )
        connected = self.inner.connect(TLSFactory(self.creator, True, gates, self.options.policy.noDelay))

        def handshakeDone(tls: Any) -> Deferred[IProtocol]:
            return tls.wrappedProtocol.ready  # type: ignore[no-any-return]

        return connected.addCallback(handshakeDone)

    def __repr__(self) -> str:
        if self.options.endpoint is not None:
            return f"<TLSClientEndpoint {self.options.serverName} over {self.options.endpoint}>"
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
    """
    Listens on every address a host name resolves to, resolved at listen
    time, all on one port number (port 0: the one the first address got).
    If any address cannot be listened on, none is left listening.
    """

    def __init__(self, reactor: Any, hostname: str, port: int, backlog: int) -> None:
        self._reactor = reactor
        self._hostname = hostname
        self._port = port
        self._backlog = backlog

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        # Before the reactor runs (twistd starting its services) nothing waits
        # on the loop: the name is resolved at once, as Twisted's tcp: does, so
        # a name that does not resolve fails the listen synchronously and twistd
        # exits instead of running without a port.  Once it runs, in a thread.
        resolving: Deferred[Any]
        if getattr(self._reactor, "running", True):
            resolving = deferToThreadPool(
                self._reactor,
                self._reactor.getThreadPool(),
                socket.getaddrinfo,
                self._hostname,
                self._port,
                0,
                socket.SOCK_STREAM,
            )
        else:
            resolving = maybeDeferred(socket.getaddrinfo, self._hostname, self._port, 0, socket.SOCK_STREAM)
        resolving.addErrback(self._notResolved)

        def listenAll(results: list[Any]) -> Deferred[IListeningPort]:
            addresses = list(dict.fromkeys(info[4][0] for info in results))
            ports: list[IListeningPort] = []

            def listenNext(port: IListeningPort | None = None) -> Any:
                if port is not None:
                    ports.append(port)
                if len(ports) == len(addresses):
                    return _ListeningPorts(ports)
                number = self._port or (ports[0].getHost().port if ports else 0)  # type: ignore[attr-defined]
                address = addresses[len(ports)]
                server = _tcpServer(self._reactor, address, number, self._backlog)
                return server.listen(protocolFactory).addCallback(listenNext)

            def stopStarted(reason: Any) -> Any:
                stopping = [maybeDeferred(port.stopListening) for port in ports]
                return gatherResults(stopping, consumeErrors=True).addBoth(lambda _: reason)

            return maybeDeferred(listenNext).addErrback(stopStarted)

        return resolving.addCallback(listenAll)  # type: ignore[no-any-return]

    def _notResolved(self, reason: Failure) -> Failure:
        """Twisted's error for a port that cannot be listened on, naming the option."""
        reason.trap(socket.gaierror)
        raise CannotListenError(
            self._hostname,
            self._port,
            f"interface={self._hostname} does not resolve ({reason.value}); give an address of this host or a name for one",
        )


@implementer(IStreamServerEndpoint)
class _AllInterfacesServerEndpoint:
    """
    "::" accepts IPv4 too (dual-stack is the default on Linux, macOS and
    Windows); on a host without IPv6, fall back to every IPv4 interface.
    """

    def __init__(self, reactor: Any, port: int, backlog: int) -> None:
        self._reactor = reactor
        self._port = port
        self._backlog = backlog

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        inner: IStreamServerEndpoint
        if socket.has_ipv6 and _ipv6Works():
            inner = twistedEndpoints.TCP6ServerEndpoint(self._reactor, self._port, self._backlog, "::")
        else:
            inner = twistedEndpoints.TCP4ServerEndpoint(self._reactor, self._port, self._backlog, "")
        listening: Deferred[IListeningPort] = inner.listen(protocolFactory)
        return listening


def _ipv6Works() -> bool:
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_STREAM).close()
    except OSError:
        return False
    return True


def _tcpServer(reactor: Any, interface: str, port: int, backlog: int) -> IStreamServerEndpoint:
    if isIPv6Address(interface):
        return twistedEndpoints.TCP6ServerEndpoint(reactor, port, backlog, interface)
    return twistedEndpoints.TCP4ServerEndpoint(reactor, port, backlog, interface)


def _innerServer(reactor: Any, options: ServerOptions, nested: NestedParser) -> IStreamServerEndpoint:
    if options.endpoint is not None:
        return _nested(nested, reactor, options.endpoint)  # type: ignore[no-any-return]
    interface = options.interface
    if options.reusePort or options.exclusive:
        if interface is not None and not (isIPAddress(interface) or isIPv6Address(interface)):
            raise DescriptionError(
                f"interface={interface!r}: reusePort= and exclusive= need an IP address to "
                "listen on, not a host name",
                option="interface",
                value=interface,
            )
        return SocketOptionServerEndpoint(
            reactor,
            "::" if interface is None else interface,
            options.port,
            options.backlog,
            reusePort=options.reusePort,
            exclusive=options.exclusive,
        )
    if interface is None:
        return _AllInterfacesServerEndpoint(reactor, options.port, options.backlog)
    if isIPAddress(interface) or isIPv6Address(interface):
        return _tcpServer(reactor, interface, options.port, options.backlog)
    return _HostNameServerEndpoint(reactor, interface, options.port, options.backlog)


def _nested(nested: NestedParser, reactor: Any, description: str) -> Any:
    try:
        return nested(reactor, description)
    except DescriptionError as e:
        message = str(e)
        if message.startswith(f"{description!r}: "):  # Twisted's errors already quote the description
            message = message[len(f"{description!r}: ") :]
        raise DescriptionError(
            f"endpoint={description!r}: {message}", option="endpoint", value=description
        ) from None


def buildServer(reactor: Any, options: ServerOptions, nested: NestedParser) -> TLSServerEndpoint:
    """
    A listening TLS endpoint for C{options}; all files are read now.  The
    certificates (files, store names or thumbprints, several for SNI) are
    re-read when their files change.
    """
    creator, renewal, served = _prebuilt.get(options) or serverTLS(options)
    endpoint = TLSServerEndpoint(_innerServer(reactor, options, nested), creator, options, served)
    endpoint.renewal = renewal
    return endpoint


# Built by prebuildServer, before worker processes fork (securesock._prefork).
_prebuilt: dict[ServerOptions, tuple[ServerCreator, Renewal, Identity]] = {}


def serverTLS(options: ServerOptions) -> tuple[ServerCreator, Renewal, Identity]:
    """
    The TLS side of a server: its connection creator, the renewal that keeps
    it current, and the default certificate.  Needs no reactor.
    """
    identity = options.policy.identity
    if identity.everyEntry and options.policy.store and not os.path.isdir(storePath(options.policy.store)):
        directory, prefix = options.policy.store, options.prefix
        raise CertificateError(
            f"{prefix}:{directory}:{options.port}: a server description read as Twisted's "
            f"{prefix}:DIRECTORY:PORT form (serve every certificate of a directory), but {directory!r} is "
            f"not a directory; for a server write {prefix}:{options.port}:certificate=FILE-OR-NAME, "
            f"for a client use clientFromString",
            option="store",
            value=directory,
        )
    selected = selectServerIdentities(identity, options.policy.store)
    authorities = None
    if options.verifyClient is not ClientVerification.NONE:
        authorities = trustCertificates(options.caCerts, "caCerts", options.policy.store)
    store = openStore(storePath(options.policy.store)) if identity.everyEntry else None
    creator, renewal = serverCreator(options, selected, authorities, store)
    return creator, renewal, selected[0].identity


def prebuildServer(options: ServerOptions) -> None:
    """
    Build the TLS side of C{options} now, for every later L{buildServer} of
    equal options in this process and in processes forked from it.  OpenSSL
    makes a context's session ticket keys when the context is created, so
    workers forked after this accept each other's tickets.
    """
    _prebuilt[options] = serverTLS(options)


def buildClient(reactor: Any, options: ClientOptions, nested: NestedParser) -> TLSClientEndpoint:
    """A connecting TLS endpoint for C{options}; all files are read now."""
    selected = selectClientIdentity(options.policy.identity, options.policy.store)
    identity = selected.identity if selected is not None else None
    trust = None
    if options.verify:
        trust = trustCertificates(options.trustRoots, "trustRoots", options.policy.store)
    context: SSL.Context = clientContext(options, identity, trust=trust)
    if options.endpoint is not None:
        inner = _nested(nested, reactor, options.endpoint)
    else:
        bind = None if options.bindAddress is None else (options.bindAddress, 0)
        inner = twistedEndpoints.HostnameEndpoint(reactor, options.host, options.port, options.timeout, bind)
    return TLSClientEndpoint(inner, ClientCreator(context, options), options, reactor)
