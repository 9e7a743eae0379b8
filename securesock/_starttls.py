"""
Upgrading plaintext connections to TLS.

  - L{startTLS}: the application decides when (after its own STARTTLS
    exchange) and gets a Deferred that fires once the handshake has
    completed and the peer was verified, with what was negotiated.
  - C{starttls:} endpoints: securesock speaks the protocol's pre-TLS
    exchange itself (L{securesock.dialects}), upgrades, and only then hands
    the application's protocol a connection that is already encrypted.

The TLS layer is Twisted's own (C{ITLSTransport.startTLS} on the TCP
transport) with securesock's connection creators, so an upgraded
connection has exactly the policy of a C{tls:} endpoint with the same
options.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from cryptography import x509
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import (
    IDelayedCall,
    IHandshakeListener,
    IListeningPort,
    IProtocol,
    IProtocolFactory,
    ISSLTransport,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
    ITCPTransport,
    ITLSTransport,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ._description import parseClient, parseServer
from ._endpoints import NestedParser, TLSClientEndpoint, TLSServerEndpoint, buildClient, buildServer
from ._errors import DescriptionError, StartTLSError, StartTLSInjectionError, TLSHandshakeError
from ._guard import HandshakeGuard, peerName
from ._handshake import handshakeError
from ._options import ClientOptions, ServerOptions
from ._sessioninfo import TLSDetails
from ._versions import formatProtocols
from ._wrongmode import isTLSRecord
from .dialects import Dialect, Outcome, Reader, ServerDialect, commandOf, dialectClasses, noGreeting

__all__ = [
    "TLSDetails",
    "TLSUpgrade",
    "startTLS",
    "StartTLSServerEndpoint",
    "StartTLSClientEndpoint",
    "buildStartTLSServer",
    "buildStartTLSClient",
]

log = Logger()

# How long a server waits for a client to reach the end of its handshake
# (Postfix's smtpd_timeout is 300 s); a client uses its timeout= option.
SERVER_UPGRADE_TIMEOUT = 300.0


@implementer(IHandshakeListener)
class _Gate(Protocol):
    """
    Put under Twisted's TLS layer for the handshake only: reports its end
    (or failure) on C{done}, then steps aside so that the TLS layer
    delivers straight to the receiving protocol.
    """

    def __init__(
        self,
        transport: Any,
        previous: IProtocol,
        receiver: IProtocol | Callable[[], IProtocol | None],
        peer: str,
        protocols: str,
    ) -> None:
        self._transport = transport
        self._previous = previous
        # A protocol, or what builds one once the handshake is done (so that an
        # application's factory is never asked for a protocol it will not connect).
        self._receiver = receiver
        self._peer = peer
        self._protocols = protocols
        self.done: Deferred[TLSDetails] = Deferred(lambda _: transport.abortConnection())

    def watchFirstChunk(self, tls: Any) -> None:
        """
        Look at the first chunk the TLS layer receives, once: plaintext there
        (a reply or command sent after the go-ahead, in a later segment) is
        said in words rather than as OpenSSL's "wrong version number".
        """

        def first(data: bytes) -> None:
            del tls.dataReceived  # back to the class's method: one look per connection
            if not isTLSRecord(data) and not self.done.called:
                self.done.errback(
                    Failure(
                        StartTLSInjectionError(
                            f"{self._peer} sent {len(data)} plaintext bytes (starting {commandOf(data)}) after the "
                            "upgrade, where its TLS handshake should be; closed without processing them "
                            "(STARTTLS injection, CVE-2011-0411 class, or a peer that did not wait for TLS)"
                        )
                    )
                )
                self._transport.abortConnection()
                return
            tls.dataReceived(data)

        tls.dataReceived = first

    def handshakeCompleted(self) -> None:
        if self.done.called:  # the upgrade's deadline passed first
            return
        made = self._receiver
        receiver = made if IProtocol.providedBy(made) else made()  # type: ignore[operator]
        if receiver is None:
            self.done.errback(
                Failure(StartTLSError(f"the application refused the connection with {self._peer}"))
            )
            self._transport.abortConnection()
            return
        self._transport.protocol.wrappedProtocol = receiver
        self.done.callback(TLSDetails.fromConnection(self._transport.getHandle()))
        if IHandshakeListener.providedBy(receiver):
            receiver.handshakeCompleted()  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        """
        Dropped: the TLS layer delivers to the receiver once the handshake is
        done, so what reaches the gate came after the application refused the
        connection (in the chunk that completed the handshake).
        """

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        if not self.done.called:
            self.done.errback(Failure(handshakeError(reason, self._peer, self._protocols)))
        self._previous.connectionLost(reason)


class TLSUpgrade:
    """
    A prepared upgrade: certificates read and the TLS context built once, so
    that upgrading each connection costs only its handshake.  Build one with
    L{forServer} or L{forClient} (or take a C{starttls:} endpoint's
    C{upgrade}) and pass it to L{startTLS}.
    """

    def __init__(
        self,
        creator: Any,
        isClient: bool,
        protocols: str,
        handshakeTimeout: tuple[str, float] | None = None,
        maxHandshakes: int | None = None,
    ) -> None:
        self.creator = creator
        self.isClient = isClient
        self.protocols = protocols
        # (option, seconds): how long an upgrade started by the application may take.
        self.handshakeTimeout = handshakeTimeout
        self._guard = (
            None
            if maxHandshakes is None
            else HandshakeGuard(handshakeTimeout[1] if handshakeTimeout else 0.0, maxHandshakes, _reactor())
        )

    @classmethod
    def fromServerEndpoint(cls, endpoint: TLSServerEndpoint) -> TLSUpgrade:
        options = endpoint.options
        return cls(
            endpoint.creator,
            False,
            formatProtocols(options.policy.protocols),
            ("handshakeTimeout", options.handshakeTimeout),
            options.maxHandshakes,
        )

    @classmethod
    def fromClientEndpoint(cls, endpoint: TLSClientEndpoint) -> TLSUpgrade:
        options = endpoint.options
        return cls(
            endpoint.creator, True, formatProtocols(options.policy.protocols), ("timeout", options.timeout)
        )

    @classmethod
    def forServer(cls, options: ServerOptions | str) -> TLSUpgrade:
        """
        The server side, from L{ServerOptions} or a description such as
        C{"starttls:0:certificate=mail.pem:dialect=none"} (port and endpoint
        options are not used).
        """
        parsed = parseServer(options) if isinstance(options, str) else options
        if isinstance(parsed, str):
            raise DescriptionError(f"{parsed!r} is not a securesock description (tls:, starttls:, ...)")
        return cls.fromServerEndpoint(buildServer(_reactor(), replace(parsed, endpoint=None), _noNesting))

    @classmethod
    def forClient(cls, options: ClientOptions | str) -> TLSUpgrade:
        """
        The client side, from L{ClientOptions} or a description such as
        C{"tls:mail.example.com:587:trustRoots=ca.pem"}: the host (or
        C{hostname=}) is the name the server's certificate must carry.
        """
        parsed = parseClient(options) if isinstance(options, str) else options
        if isinstance(parsed, str):
            raise DescriptionError(f"{parsed!r} is not a securesock description (tls:, starttls:, ...)")
        return cls.fromClientEndpoint(buildClient(_reactor(), replace(parsed, endpoint=None), _noNesting))

    def start(
        self, transport: Any, receiver: IProtocol | Callable[[], IProtocol | None] | None = None
    ) -> Deferred[TLSDetails]:
        """
        Start TLS on C{transport} now.  What arrives after the handshake goes
        to C{receiver} (default: the transport's protocol, unchanged), or to
        the protocol C{receiver()} builds once the handshake is done.

        The handshake must complete within the options' C{handshakeTimeout=}
        (server) or C{timeout=} (client), and a server's upgrades in
        progress at once are capped by C{maxHandshakes=}, as on a C{tls:}
        endpoint: a peer that never sends its handshake holds nothing.
        """
        guard = self._guard
        if guard is not None and not guard.admit(transport.getPeer()):
            transport.abortConnection()
            return fail(
                StartTLSError(
                    f"{peerName(transport)}: closed, {guard.maxHandshakes} upgrades are in progress "
                    f"(maxHandshakes={guard.maxHandshakes})"
                )
            )
        done = self._start(transport, receiver)
        if done.called:  # refused at once
            return done
        timer = None
        if self.handshakeTimeout is not None:
            option, seconds = self.handshakeTimeout

            def expire() -> None:
                if not done.called:
                    done.errback(
                        Failure(
                            TLSHandshakeError(
                                f"{peerName(transport)}: no complete TLS handshake within {seconds:g} s of "
                                f"the upgrade ({option}={seconds:g})"
                            )
                        )
                    )
                    transport.abortConnection()

            timer = _reactor().callLater(seconds, expire)
        if guard is not None:
            guard.inProgress += 1

        def finished(result: object) -> object:
            if timer is not None and timer.active():
                timer.cancel()
            if guard is not None:
                guard.released()
            return result

        return done.addBoth(finished)

    def _start(
        self, transport: Any, receiver: IProtocol | Callable[[], IProtocol | None] | None
    ) -> Deferred[TLSDetails]:
        """L{start} without the deadline and cap: a C{starttls:} endpoint's dialect keeps its own."""
        if ISSLTransport.providedBy(transport):
            return fail(StartTLSError(f"the connection with {peerName(transport)} is already TLS"))
        previous = getattr(transport, "protocol", None)
        if not ITLSTransport.providedBy(transport) or previous is None:
            return fail(
                StartTLSError(
                    f"{type(transport).__name__} cannot start TLS: startTLS needs the TCP "
                    "transport of a plaintext connection (ITLSTransport)"
                )
            )
        tcp: Any = transport  # a Twisted TCP connection (tcp.Connection)
        gate = _Gate(tcp, previous, receiver or previous, peerName(tcp), self.protocols)
        # Twisted's TLS layer wraps whatever is the transport's protocol: the gate.
        tcp.protocol = gate
        # The TLS side follows the options, whichever side opened the TCP connection.
        normal = getattr(tcp, "_tlsClientDefault", self.isClient) == self.isClient
        try:
            tcp.startTLS(self.creator, normal)
        except Exception as e:
            tcp.protocol = previous
            return fail(StartTLSError(f"cannot start TLS with {peerName(transport)}: {e}"))
        gate.watchFirstChunk(tcp.protocol)
        return gate.done


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def _noNesting(reactor: Any, description: str) -> Any:
    raise DescriptionError("endpoint= is not used by an upgrade")


def startTLS(transport: Any, options: TLSUpgrade | ServerOptions | ClientOptions) -> Deferred[TLSDetails]:
    """
    Upgrade a connected plaintext TCP transport to TLS, server or client
    side as C{options} says.

    The returned Deferred fires with L{TLSDetails} once the handshake has
    completed (and, for clients, the server's certificate verified), and
    fails with L{TLSHandshakeError} or L{StartTLSError} otherwise: nothing
    counts as secure before it fires.  Pass a L{TLSUpgrade} prepared once;
    options are turned into a TLS context (files read) on every call.

    Call it only when no plaintext bytes are waiting to be processed (see
    L{StartTLSLineMixin}, which enforces this for line protocols).
    """
    if not isinstance(options, TLSUpgrade):
        options = (
            TLSUpgrade.forServer(options)
            if isinstance(options, ServerOptions)
            else TLSUpgrade.forClient(options)
        )
    return options.start(transport)


# --- starttls: endpoints ----------------------------------------------------


def _connectWithoutGreeting(application: IProtocol, transport: Any, dialect: ServerDialect) -> None:
    """
    Connect the application to the upgraded transport, dropping the greeting
    it writes from connectionMade: the client had the dialect's greeting
    before TLS, and RFC 3207, 3501, 2595 and 4217 all say the server does not
    greet again after the upgrade.
    """
    if hasattr(application, "greetingAlreadySent") and dialect.withoutGreeting is not noGreeting:
        # An application that greets later (a relay waiting for its backend)
        # drops the greeting itself.  Where the server does not greet (xmpp,
        # ldap, postgres: the client speaks first) there is none to wait for.
        application.greetingAlreadySent(dialect.withoutGreeting)
    tls = transport.protocol  # what the TCP transport hands writes to
    captured: list[bytes] = []
    tls.write = captured.append
    tls.writeSequence = captured.extend
    try:
        application.makeConnection(transport)
    finally:
        del tls.write, tls.writeSequence
    rest = dialect.withoutGreeting(b"".join(captured))
    if rest:
        transport.write(rest)


class _Upgrading(Protocol):
    """What the server and client sides share: the reader, the deadline, the hand-over."""

    dialect: Dialect
    _timer: IDelayedCall | None = None
    _upgrading = False
    _heard = False  # any byte from the peer yet
    _spokeFirst = False  # this side opened the conversation
    _handshaking = False  # the timer is the handshake's (handshakeTimeout=), no longer the exchange's
    _reported = False  # failed() was called: once per connection
    _expired = False  # the deadline ended it
    _counted = False  # holds a place under the server's maxHandshakes

    def __init__(self, factory: _DialectFactory, addr: Any) -> None:
        self.factory = factory
        self._addr = addr

    def connectionMade(self) -> None:
        factory = self.factory
        if factory.noDelay and ITCPTransport.providedBy(self.transport):
            self.transport.setTcpNoDelay(True)  # type: ignore[attr-defined]
        if factory.guard is not None:
            factory.guard.inProgress += 1
            self._counted = True
        self._timer = factory.reactor.callLater(factory.timeout, self._expire)
        self._reader = Reader(self.dialect)
        opening = self._reader.start()
        self._spokeFirst = bool(opening.send)
        self._act(opening)

    def dataReceived(self, data: bytes) -> None:
        if not self._heard:
            self._heard = True
            if isTLSRecord(data):
                # TLS where the dialect's plaintext belongs: a peer set up for implicit TLS.
                self._reader.finished = True
                self._act(Outcome(close=self.tlsAtOnce()))
                return
        self._act(self._reader.feed(data))

    def _act(self, outcome: Outcome) -> None:
        transport: Any = self.transport
        if outcome.send:
            transport.write(outcome.send)
        if outcome.close is not None:
            self._stopTimer()
            self.refused(outcome.close, outcome.injected)
            if outcome.injected:
                transport.abortConnection()
            else:
                transport.loseConnection()
        elif outcome.upgrade:
            # The application's protocol is built only once TLS is up: a factory
            # that counts or tracks what it builds never sees a connection that
            # failed its handshake.
            self._upgrading = True
            built: list[IProtocol] = []

            def build() -> IProtocol | None:
                application: IProtocol | None = self.factory.wrappedFactory.buildProtocol(self._addr)
                if application is not None:
                    built.append(application)
                return application

            handshakeTimeout = self.factory.handshakeTimeout
            if handshakeTimeout is not None and self._timer is not None and self._timer.active():
                self._timer.reset(handshakeTimeout)
                self._handshaking = True
            upgraded = self.factory.upgrade._start(transport, build)
            upgraded.addCallbacks(lambda details: self._upgraded(details, built[0]), self._failed)

    def _upgraded(self, details: TLSDetails, application: IProtocol) -> None:
        self._stopTimer()
        self._release()
        self.secured(application, details)

    def _failed(self, reason: Failure) -> None:
        self._stopTimer()
        self._report(reason)
        # Most failures have closed the connection already; one where TLS could
        # not start at all would leave it open, half-upgraded, with no deadline.
        self.transport.abortConnection()  # type: ignore[union-attr]

    def _report(self, reason: Failure) -> None:
        if not self._reported:
            self._reported = True
            self.failed(reason)

    def _release(self) -> None:
        """Give back this connection's place under maxHandshakes (once)."""
        if self._counted and self.factory.guard is not None:
            self._counted = False
            self.factory.guard.released()

    def _stopTimer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _expire(self) -> None:
        self._timer = None
        self._expired = True
        peer = peerName(self.transport)
        if self._handshaking:
            limit = self.factory.handshakeTimeout
            why = (
                f"{peer}: no complete TLS handshake within {limit:g} s of the {self.dialect.name} "
                f"upgrade (handshakeTimeout={limit:g})"
            )
        else:
            why = f"{peer}: no TLS session within {self.factory.timeout:g} seconds" + self.silenceHint()
        self._report(Failure(StartTLSError(why)))
        self.transport.abortConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stopTimer()
        self._release()
        if not self._upgrading and not self._reader.finished:
            self._report(
                Failure(
                    StartTLSError(
                        f"{peerName(self.transport)} closed the connection during the plaintext "
                        f"{self.dialect.name} exchange, before TLS" + self.silenceHint()
                    )
                )
            )

    def silenceHint(self) -> str:
        """Words for a peer that never said anything: a client may have reached an implicit-TLS port."""
        return ""

    def tlsAtOnce(self) -> str:
        """Why the connection closes when the peer's first bytes are TLS."""
        raise NotImplementedError

    # Overridden by each side.
    def refused(self, reason: str, injected: bool) -> None:
        raise NotImplementedError

    def secured(self, application: IProtocol, details: TLSDetails) -> None:
        raise NotImplementedError

    def failed(self, reason: Failure) -> None:
        raise NotImplementedError


class _ServerSide(_Upgrading):
    dialect: ServerDialect

    def connectionMade(self) -> None:
        self.dialect = self.factory.makeServer(self.factory.name)
        super().connectionMade()

    def tlsAtOnce(self) -> str:
        return (
            f"the client started TLS at once (implicit TLS, like ports 465, 993 and 995), but this "
            f"port speaks STARTTLS (starttls:...:dialect={self.dialect.name}): point the client at "
            "the implicit-TLS port, or make it use STARTTLS"
        )

    def _logsConnections(self) -> bool:
        """False under twistd securesock --log-connections none (its factory says so): no line per connection."""
        return getattr(self.factory.wrappedFactory, "connectionLog", "all") != "none"

    def refused(self, reason: str, injected: bool) -> None:
        if not self._logsConnections():
            return
        if injected:
            log.warn("{peer}: {reason}", peer=peerName(self.transport), reason=reason)
        else:
            log.info("{peer}: closed before TLS: {reason}", peer=peerName(self.transport), reason=reason)

    def secured(self, application: IProtocol, details: TLSDetails) -> None:
        _connectWithoutGreeting(application, self.transport, self.dialect)

    def failed(self, reason: Failure) -> None:
        if not self._logsConnections():
            return
        if self._upgrading:
            log.info(
                "{peer}: no TLS after {dialect} {command}: {why}",
                peer=peerName(self.transport),
                dialect=self.dialect.name,
                command=self.dialect.upgradeCommand,
                why=reason.getErrorMessage(),
            )
        else:
            # A client that left without a byte (a port probe, a health check) is not
            # news, as on a tls: server (docs/hardening.md); one kept waiting until the deadline is.
            level = log.info if self._heard or self._expired else log.debug
            level("{peer}: no TLS: {why}", peer=peerName(self.transport), why=reason.getErrorMessage())


class _ClientSide(_Upgrading):
    def __init__(self, factory: _DialectFactory, addr: Any) -> None:
        super().__init__(factory, addr)
        self.ready: Deferred[IProtocol] = Deferred(lambda _: self._abort())

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def connectionMade(self) -> None:
        host = self.transport.getHost().host  # type: ignore[union-attr]
        # RFC 5321 4.1.3 address literal: a client without a name says where it is.
        local = f"[IPv6:{host}]" if ":" in host else f"[{host}]"
        self.dialect = self.factory.makeClient(self.factory.name, local)
        super().connectionMade()

    def tlsAtOnce(self) -> str:
        return (
            f"the server answered with TLS where the plaintext {self.dialect.name} exchange belongs: "
            "this port speaks TLS from the first byte (implicit TLS); connect with tls:HOST:PORT"
        )

    def silenceHint(self) -> str:
        if self._heard:
            return ""
        said = "sent nothing" if not self._spokeFirst else "did not answer"
        return (
            f" (the server {said}: a port that speaks TLS from the first byte, like 465, 993 "
            "or 995, waits for a ClientHello; for such a port connect with tls:HOST:PORT)"
        )

    def refused(self, reason: str, injected: bool) -> None:
        error = StartTLSInjectionError if injected else StartTLSError
        self._report(Failure(error(f"{peerName(self.transport)}: {reason}")))

    def secured(self, application: IProtocol, details: TLSDetails) -> None:
        transport: Any = self.transport
        application.makeConnection(transport)
        if not self.ready.called:
            self.ready.callback(application)

    def failed(self, reason: Failure) -> None:
        if not self.ready.called:
            self.ready.errback(reason)


class _DialectFactory(Factory):
    """Builds, per connection, the protocol that speaks a dialect before TLS."""

    noisy = False

    def __init__(
        self,
        wrappedFactory: IProtocolFactory,
        side: type[_Upgrading],
        dialect: str,
        name: str,
        upgrade: TLSUpgrade,
        noDelay: bool,
        timeout: float,
        reactor: Any,
        handshakeTimeout: float | None = None,
        maxHandshakes: int | None = None,
    ) -> None:
        self.wrappedFactory = wrappedFactory
        self.side = side
        self.dialect = dialect
        self.makeServer, self.makeClient = dialectClasses(dialect)
        self.name = name
        self.upgrade = upgrade
        self.noDelay = noDelay
        self.timeout = timeout
        self.handshakeTimeout = handshakeTimeout
        # Connections not yet secured (plaintext exchange and handshake) count
        # against maxHandshakes, as handshakes do on a tls: server.
        self.guard = None if maxHandshakes is None else HandshakeGuard(timeout, maxHandshakes, reactor)
        self.reactor = reactor

    def doStart(self) -> None:
        self.wrappedFactory.doStart()

    def doStop(self) -> None:
        self.wrappedFactory.doStop()

    def buildProtocol(self, addr: Any) -> _Upgrading | None:
        if self.guard is not None and not self.guard.admit(addr):
            return None  # over maxHandshakes: the port closes the connection at once
        return self.side(self, addr)

    def logPrefix(self) -> str:
        """Ports log "PREFIX starting on PORT": name the application's factory, not this wrapper."""
        inner = getattr(self.wrappedFactory, "logPrefix", None)
        name = inner() if callable(inner) else type(self.wrappedFactory).__name__
        return f"{name} (starttls, dialect={self.dialect})"


def _serverName(endpoint: TLSServerEndpoint) -> str:
    """The name a server dialect greets with: the certificate's first DNS name."""
    identity = getattr(endpoint, "identity", None)
    certificate = getattr(identity, "certificate", None)
    if certificate is not None:
        try:
            names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            dns = names.get_values_for_type(x509.DNSName)
            if dns and not dns[0].startswith("*"):
                return str(dns[0])
        except x509.ExtensionNotFound:
            pass
    return socket.gethostname()


@implementer(IStreamServerEndpoint)
class StartTLSServerEndpoint:
    """
    Listens in plaintext, speaks the dialect's pre-TLS part, upgrades, and
    only then connects a protocol from the application's factory.  With
    C{dialect=none} the application gets the plaintext connection and
    upgrades it with C{startTLS(transport, endpoint.upgrade)}.
    """

    def __init__(self, tls: TLSServerEndpoint, options: ServerOptions, reactor: Any) -> None:
        self.options = options
        self.inner = tls.inner
        self.upgrade = TLSUpgrade.fromServerEndpoint(tls)
        self._tls = tls
        self._reactor = reactor
        self._name = _serverName(tls) if options.dialect != "none" else ""

    def reload(self) -> bool:
        """Re-read the certificate files now (SIGHUP), as a C{tls:} server does; True if anything changed."""
        return self._tls.reload()

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        if self.options.dialect == "none":
            return self.inner.listen(protocolFactory)
        factory = _DialectFactory(
            protocolFactory,
            _ServerSide,
            self.options.dialect or "",
            self._name,
            self.upgrade,
            self.options.policy.noDelay,
            SERVER_UPGRADE_TIMEOUT,
            self._reactor,
            handshakeTimeout=self.options.handshakeTimeout,
            maxHandshakes=self.options.maxHandshakes,
        )
        return self.inner.listen(factory)

    def __repr__(self) -> str:
        return f"<StartTLSServerEndpoint port={self.options.port} dialect={self.options.dialect}>"


@implementer(IStreamClientEndpoint)
class StartTLSClientEndpoint:
    """
    Connects in plaintext, speaks the dialect's pre-TLS part, upgrades and
    verifies; C{connect()} fires with the application's protocol once the
    connection is encrypted.  With C{dialect=none}, C{connect()} fires on the
    plaintext connection; upgrade it with C{startTLS(transport, endpoint.upgrade)}.
    """

    def __init__(self, tls: TLSClientEndpoint, options: ClientOptions, reactor: Any) -> None:
        self.options = options
        self.inner = tls.inner
        self.upgrade = TLSUpgrade.fromClientEndpoint(tls)
        self._reactor = reactor

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        if self.options.dialect == "none":
            return self.inner.connect(protocolFactory)  # type: ignore[no-any-return]
        factory = _DialectFactory(
            protocolFactory,
            _ClientSide,
            self.options.dialect or "",
            self.options.serverName,
            self.upgrade,
            self.options.policy.noDelay,
            self.options.timeout,
            self._reactor,
        )

        def engaged(side: Any) -> Deferred[IProtocol]:
            ready: Deferred[IProtocol] = side.ready
            return ready

        return self.inner.connect(factory).addCallback(engaged)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return (
            f"<StartTLSClientEndpoint {self.options.host}:{self.options.port} dialect={self.options.dialect}>"
        )


def buildStartTLSServer(reactor: Any, options: ServerOptions, nested: NestedParser) -> StartTLSServerEndpoint:
    """A C{starttls:} server: the policy of the same C{tls:} server, upgraded after the dialect."""
    return StartTLSServerEndpoint(buildServer(reactor, options, nested), options, reactor)


def buildStartTLSClient(reactor: Any, options: ClientOptions, nested: NestedParser) -> StartTLSClientEndpoint:
    """A C{starttls:} client: the policy of the same C{tls:} client, upgraded after the dialect."""
    return StartTLSClientEndpoint(buildClient(reactor, options, nested), options, reactor)
