"""
``twistd securesock``: a TLS terminator and originator in one command.

    twistd -n securesock --listen "tls:8443:certificate=site.pem" --connect tcp:localhost:8080

Every listening and connecting side is a securesock description.  With no
``--connect`` a diagnostic responder answers; with no ``--listen`` it listens
on ``tls:8443`` on loopback with a development certificate for localhost.
"""

from __future__ import annotations

import atexit
import os
import re
import signal
import sys
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import quoteStringArgument
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

import securesock

from ._connlog import CONNECTION_LOGS, LoggedProtocol
from ._description import TLS_PREFIXES
from ._errors import DescriptionError, redactSecrets
from ._options import DIALECTS, Passphrase

__all__ = ["Options", "makeService", "SecuresockService"]

log = Logger(namespace="securesock.twistd")


class Options(usage.Options):
    synopsis = (
        "[--listen DESCRIPTION ...] [--connect DESCRIPTION] [--workers N|auto] [--grace SECONDS] "
        "[--idle-timeout SECONDS] [--log-connections all|failures|none]"
    )
    longdesc = (
        "Listen with securesock descriptions (tls:, ssl:, starttls:, securesock:, or Twisted's "
        "tcp:, unix:, systemd: ...) and relay each connection to --connect, or answer with a "
        "diagnostic summary of the TLS session. SIGHUP reloads certificates; SIGTERM stops "
        "accepting and lets open connections finish for --grace seconds."
    )
    optParameters = [
        ["workers", "w", "1", "Processes sharing the listening ports (a number, or auto = CPU count)."],
        ["grace", None, "10", "Seconds open connections may finish after SIGTERM."],
        [
            "idle-timeout",
            None,
            "43200",
            "Seconds a relayed connection may carry nothing either way before it is closed "
            "(stunnel's TIMEOUTidle; 0: never).",
        ],
        [
            "log-connections",
            None,
            "all",
            "Which connections get a log line when they close: all, failures (failed handshakes, "
            "TLS errors, unreachable backends) or none.",
        ],
    ]
    optFlags = [["worker", None, "Run as a worker started by another securesock process (internal)."]]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["connect"] = None

    def opt_listen(self, description: str) -> None:
        """A server description to listen with (may be repeated)."""
        self["listen"].append(description)

    opt_l = opt_listen

    def opt_connect(self, description: str) -> None:
        """Client description each accepted connection is relayed to."""
        if self["connect"] is not None:
            raise usage.UsageError(
                f"--connect is given twice ({_shown(self['connect'])} and {_shown(description)}); "
                "a relay has one backend: keep one (--listen may be repeated)"
            )
        self["connect"] = description

    opt_c = opt_connect

    def postOptions(self) -> None:
        # Where relative paths in the descriptions are (twistd -d changes it later): the workers'
        # supervisor reads them again there.
        self["directory"] = os.getcwd()
        workers = self["workers"]
        if workers == "auto":
            self["workers"] = os.cpu_count() or 1
        else:
            try:
                self["workers"] = int(workers)
            except ValueError:
                raise usage.UsageError(f"--workers={workers!r}: give a number of processes or auto") from None
            if not 1 <= self["workers"] <= 256:
                raise usage.UsageError(f"--workers={workers!r}: give 1..256 or auto")
        self["grace"] = _seconds(
            "grace",
            self["grace"],
            86400,
            "give a number of seconds",
            "give 0 (close at once) to 86400 seconds (a day)",
        )
        self["idle-timeout"] = _seconds(
            "idle-timeout",
            self["idle-timeout"],
            31536000,
            "give a number of seconds, or 0 (never)",
            "give 0 (never) or up to 31536000 seconds (a year), such as 300",
        )
        if self["log-connections"] not in CONNECTION_LOGS:
            raise usage.UsageError(
                f"--log-connections={self['log-connections']!r}: give one of {', '.join(CONNECTION_LOGS)}"
            )
        from twisted.internet import reactor

        self["reactor"] = reactor
        if not self["listen"]:
            try:
                self["listen"] = [defaultListen()]
            except DescriptionError as e:
                raise usage.UsageError(
                    f"no --listen given, and the development certificate cannot be made: {e}"
                ) from None
        self["endpoints"] = []
        for written in self["listen"]:  # messages quote it as written, without reusePort=yes
            description = _withReusePort(written, self["workers"]) if self["workers"] > 1 else written
            try:
                endpoint = _serverEndpoint(reactor, description)
            except DescriptionError as e:
                added = (
                    f" (--workers {self['workers']} adds reusePort=yes: its processes share the port)"
                    if description != written and "reusePort" in str(e)
                    else ""
                )
                raise usage.UsageError(f"--listen {_shown(written)}: {e}{added}") from None
            port = getattr(endpoint, "port", getattr(getattr(endpoint, "options", None), "port", None))
            if self["workers"] > 1 and port == 0:
                raise usage.UsageError(
                    f"--listen {_shown(written)}: --workers needs a fixed port (port 0 would give "
                    "each worker a different one)"
                )
            _refuseAppDrivenUpgrade(endpoint, f"--listen {_shown(written)}")
            self["endpoints"].append((description, endpoint))
        self["backend"] = None
        if self["connect"] is not None:
            try:
                self["backend"] = securesock.clientFromString(reactor, self["connect"])
            except DescriptionError as e:
                raise usage.UsageError(f"--connect {_shown(self['connect'])}: {e}") from None
            _refuseAppDrivenUpgrade(self["backend"], f"--connect {_shown(self['connect'])}")


def _refuseAppDrivenUpgrade(endpoint: Any, quoted: str) -> None:
    """
    dialect=none leaves the plaintext exchange and the upgrade to the
    application; the relay and the diagnostic page have none, so such a
    listener (or backend) would carry plaintext, credentials included.
    """
    if getattr(getattr(endpoint, "options", None), "dialect", None) == "none":
        raise usage.UsageError(
            f"{quoted}: dialect=none leaves the plaintext exchange and the upgrade to the "
            "application, and twistd securesock has none to do it (the connection would stay "
            "plaintext); give the protocol: dialect=" + ", ".join(d for d in DIALECTS if d != "none")
        )


def _seconds(name: str, written: str, most: float, notNumber: str, outOfRange: str) -> float:
    """A --name of seconds from 0 to C{most}; the two messages say what is accepted."""
    try:
        seconds = float(written)
    except ValueError:
        raise usage.UsageError(f"--{name}={written!r}: {notNumber}") from None
    if not 0 <= seconds <= most:  # nan fails too
        raise usage.UsageError(f"--{name}={written!r}: {outOfRange}")
    return seconds


# An option that may hold a passphrase, spelled right or not (pasphrase=, password=),
# and its value: an env:/file: reference, or the passphrase itself.
_PASSWORD_OPTION = re.compile(
    r"(?P<option>[A-Za-z]*pas+[A-Za-z]*=)(?P<source>(?:env|file)\\*:)?(?P<value>[^:&'\"\s]*)", re.IGNORECASE
)


def _hidePassword(match: re.Match[str]) -> str:
    option, source, value = match.group("option", "source", "value")
    if value.startswith("(not"):
        return match.group(0)  # hidden already: "(not shown)" (redactSecrets)
    if source is not None:
        kind = source.rstrip("\\:").lower()
        return f"{option}{source}{Passphrase(kind, value).shownReference}"  # a variable's name, a path: kept
    return f"{option}(not shown)"


def _shown(description: str) -> str:
    """
    A description as quoted in a usage error: without a passphrase typed into
    it, after env: or file: by mistake, or into a misspelled option.
    """
    return _PASSWORD_OPTION.sub(_hidePassword, redactSecrets(repr(description)))


def _serverEndpoint(reactor: Any, description: str) -> IStreamServerEndpoint:
    """securesock's descriptions, and Twisted's tcp: with reusePort=/exclusive= too."""
    from ._listen import plainTCPServer

    return plainTCPServer(reactor, description) or securesock.serverFromString(reactor, description)


def defaultListen() -> str:
    """tls:8443 on loopback with a development certificate for localhost."""
    from ._devcert import developmentCertificate

    certificate, authority = developmentCertificate()
    log.info(
        "no --listen given: serving tls:8443 on 127.0.0.1 with the development certificate "
        "{certificate}; trust it with: curl --cacert {authority} https://localhost:8443/",
        certificate=certificate,
        authority=authority,
    )
    return f"tls:8443:interface=127.0.0.1:certificate={quoteStringArgument(certificate)}"


# Prefixes whose listeners take reusePort=yes (securesock's own, and tcp: through _listen).
_SHAREABLE = frozenset(TLS_PREFIXES) | {"tcp", "tcp6"}


def _withReusePort(description: str, workers: int) -> str:
    """Workers share ports through SO_REUSEPORT."""
    refused = re.search(r"reuseport=(no|false|off|0)\b", description, re.IGNORECASE)
    if refused:
        raise usage.UsageError(
            f"--listen {_shown(description)}: {refused.group(0)}, but --workers {workers} shares each "
            "port between its processes with SO_REUSEPORT: remove it, or use --workers 1"
        )
    if "reuseport=" in description.lower():
        return description
    prefix = re.split(r"[:?]", description, maxsplit=1)[0].lower()
    if prefix not in _SHAREABLE:
        raise usage.UsageError(
            f"--listen {_shown(description)}: --workers shares ports with SO_REUSEPORT, which {prefix}: "
            f"listeners cannot do; use one of {', '.join(p + ':' for p in sorted(_SHAREABLE))} or --workers 1"
        )
    if re.match(r"[A-Za-z][A-Za-z0-9+.\-]*://", description):
        return description + ("&" if "?" in description else "?") + "reusePort=yes"
    return description + ":reusePort=yes"


class _Tracker:
    """Remembers open connections so SIGTERM can let them finish."""

    def __init__(self) -> None:
        self.open: set[Any] = set()
        self._idle: list[Deferred[None]] = []

    def add(self, protocol: Any) -> None:
        self.open.add(protocol)

    def remove(self, protocol: Any) -> None:
        self.open.discard(protocol)
        if not self.open:
            idle, self._idle = self._idle, []
            for d in idle:
                d.callback(None)

    def whenIdle(self) -> Deferred[None]:
        if not self.open:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._idle.append(d)
        return d


class _TrackingFactory(Factory):
    """Wraps the application factory to track its connections."""

    noisy = False

    def __init__(self, wrapped: IProtocolFactory, tracker: _Tracker, connectionLog: str = "all") -> None:
        self.wrappedFactory = wrapped
        self._tracker = tracker
        self.connectionLog = connectionLog

    def buildProtocol(self, addr: Any) -> Any:
        protocol = self.wrappedFactory.buildProtocol(addr)
        if protocol is None:
            return None
        if isinstance(protocol, LoggedProtocol):
            protocol.connectionLog = self.connectionLog
        tracker = self._tracker
        original = protocol.connectionLost
        tracker.add(protocol)

        def connectionLost(reason: Failure) -> None:
            tracker.remove(protocol)
            original(reason)

        protocol.connectionLost = connectionLost  # type: ignore[method-assign]
        return protocol

    def logPrefix(self) -> str:
        """The application's name in Twisted's log lines ("Site (TLS) starting on 8443")."""
        wrapped = self.wrappedFactory
        prefix = getattr(wrapped, "logPrefix", None)
        return prefix() if callable(prefix) else type(wrapped).__name__  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        # ALPN (IProtocolNegotiationFactory) and the like pass through.
        return getattr(self.wrappedFactory, name)


class _ListenService(Service):
    def __init__(self, description: str, endpoint: IStreamServerEndpoint, factory: IProtocolFactory) -> None:
        self.description = description
        self.endpoint = endpoint
        self.factory = factory
        self.port: IListeningPort | None = None
        self._listening: Deferred[IListeningPort] | None = None

    def privilegedStartService(self) -> None:
        # Before twistd drops privileges (--uid/--gid), as stunnel binds before setuid.
        super().privilegedStartService()
        self._listen()

    def startService(self) -> None:
        super().startService()
        self._listen()

    def _listen(self) -> None:
        if self._listening is not None:
            return
        self._listening = d = self.endpoint.listen(self.factory)

        def listening(port: IListeningPort) -> Any:
            if self._listening is not d:  # stopped while the listen was under way (a host name resolving)
                return port.stopListening()
            self.port = port
            log.info(
                "listening: {description} on {address}", description=self.description, address=port.getHost()
            )

        def failed(reason: Failure) -> None:
            log.error(
                "cannot listen with {description}: {reason}",
                description=self.description,
                reason=reason.getErrorMessage(),
            )
            _stopWithFailure()

        d.addCallbacks(listening, failed)

    def stopService(self) -> Deferred[Any] | None:  # type: ignore[override]
        super().stopService()
        self._listening = None
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()  # type: ignore[return-value]
        return None


def _stopWithFailure() -> None:
    """Stop twistd and make it exit with status 1 (twistd itself always exits 0)."""
    from twisted.internet import reactor

    def exitFailed() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)

    atexit.register(exitFailed)  # after twistd has removed its pid file
    reactor.callWhenRunning(reactor.stop)  # type: ignore[attr-defined]


def _backendGreeting(backend: Any) -> bytes | None:
    """The greeting relayed clients get when --connect is a starttls: description."""
    from ._options import ClientOptions
    from ._relay import greetingFor

    options = getattr(backend, "options", None)  # securesock's client endpoints keep their parsed options
    if not isinstance(options, ClientOptions):
        return None
    return greetingFor(options.dialect, options.serverName or options.host)


class SecuresockService(MultiService):
    """Listeners, the relay or responder behind them, reload and drain."""

    def __init__(
        self,
        reactor: Any,
        endpoints: list[tuple[str, Any]],
        backend: Any,
        connect: str | None,
        grace: float,
        connectionLog: str = "all",
        idleTimeout: float = 0.0,
    ) -> None:
        super().__init__()
        from ._diagnostic import DiagnosticFactory
        from ._relay import RelayFactory

        self._reactor = reactor
        self._grace = grace
        self.tracker = _Tracker()
        self.endpoints = [endpoint for _, endpoint in endpoints]
        application: IProtocolFactory = (
            DiagnosticFactory(reactor)
            if backend is None
            else RelayFactory(backend, connect or "", _backendGreeting(backend), idleTimeout, reactor)
        )
        for description, endpoint in endpoints:
            _ListenService(
                description, endpoint, _TrackingFactory(application, self.tracker, connectionLog)
            ).setServiceParent(self)

    def privilegedStartService(self) -> None:
        # Before the listeners and the workers' supervisor start, not once the reactor
        # runs: a SIGHUP meanwhile (a reload right after a start) would end twistd.
        self._handleSIGHUP()
        super().privilegedStartService()

    def startService(self) -> None:
        super().startService()
        self._handleSIGHUP()

    def _handleSIGHUP(self) -> None:
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, lambda *_: self._reactor.callFromThread(self.reload))

    def reload(self) -> None:
        """Re-read every listener's certificate (SIGHUP), here and in the workers."""
        for child in self:
            if hasattr(child, "signalAll"):
                child.signalAll("HUP")
        for endpoint in self.endpoints:
            reload = getattr(endpoint, "reload", None)
            if reload is None:
                continue
            # Renewal logs what changed, and keeps the old certificate when the new files are unusable.
            if not reload():
                log.info("SIGHUP: certificates of {endpoint!r} unchanged", endpoint=endpoint)

    def stopService(self) -> Deferred[Any]:  # type: ignore[override]
        stopping = super().stopService()

        def drain(_: Any) -> Deferred[Any]:
            if not self.tracker.open:
                return succeed(None)
            log.info(
                "stopped listening; {count} open connection(s) may finish for {grace} s",
                count=len(self.tracker.open),
                grace=self._grace,
            )
            idle = self.tracker.whenIdle()
            timer = self._reactor.callLater(self._grace, self._abortRemaining)
            return idle.addBoth(lambda result: timer.cancel() if timer.active() else None)

        return stopping.addCallback(drain)  # type: ignore[no-any-return]

    def _abortRemaining(self) -> None:
        for protocol in list(self.tracker.open):
            transport = getattr(protocol, "transport", None)
            if transport is not None:
                if isinstance(
                    protocol, LoggedProtocol
                ):  # its line says why, not "lost in a non-clean fashion"
                    protocol.closeNote = f"cut at the end of --grace {self._grace:g} s after SIGTERM"
                transport.abortConnection()


def makeService(options: Options) -> MultiService:
    """
    The service twistd runs.  With --workers N (N > 1) this process only
    supervises: the N workers listen, forked after their TLS contexts were
    built so that they share session ticket keys (L{securesock._prefork}).
    """
    supervising = options["workers"] > 1 and not options["worker"]
    if hasattr(signal, "SIGHUP"):
        # A reload before anything is served is moot (certificates are read as the
        # listeners start): not the end of twistd, until the service takes SIGHUP over.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    service = SecuresockService(
        options["reactor"],
        [] if supervising else options["endpoints"],
        options["backend"],
        options["connect"],
        options["grace"],
        options["log-connections"],
        options["idle-timeout"],
    )
    if options["worker"]:
        from ._workers import ParentWatch

        ParentWatch(options["reactor"]).setServiceParent(service)
    elif supervising:
        from ._workers import WorkerPool, supervisorArguments

        arguments = supervisorArguments(options["workers"], options["grace"], _workerArguments(options))
        WorkerPool(options["reactor"], arguments, options["directory"]).setServiceParent(service)
    return service


def _workerArguments(options: Options) -> list[str]:
    """The twistd command line of one worker."""
    args = ["-n", "--pidfile="]
    twistdOptions = getattr(options, "parent", None) or {}
    for name in ("uid", "gid"):  # each worker binds as the parent did, then drops privileges itself
        if twistdOptions.get(name) is not None:
            args.append(f"--{name}={twistdOptions[name]}")
    args += ["securesock", "--worker", "--grace", str(options["grace"])]
    args += ["--log-connections", options["log-connections"], "--idle-timeout", repr(options["idle-timeout"])]
    for description, _ in options["endpoints"]:
        args += ["--listen", description]
    if options["connect"] is not None:
        args += ["--connect", options["connect"]]
    return args
