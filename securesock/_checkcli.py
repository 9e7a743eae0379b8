"""
``securesock check DESCRIPTION`` and ``securesock probe DESCRIPTION``.

``check`` builds the endpoint (every file read, every option validated)
without listening or connecting, and prints what it would serve or how it
would verify: for operators validating a configuration before a deploy.
``probe`` connects as a client and prints what was negotiated and the peer's
chain with hashes, in the columns of ``securesock store list``.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, cast

from cryptography import x509
from OpenSSL import SSL
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure

from ._cli import CommandError
from ._context import serverContext
from ._description import Description, parseClient, parseServer, splitDescription
from ._errors import DescriptionError, TLSHandshakeError, opensslReasons
from ._hashes import spaced
from ._identity import selectClientIdentity
from ._material import fingerprint
from ._options import ClientOptions, ClientVerification, ServerOptions
from ._optiontable import seconds
from ._protocols import opensslBuild
from ._rehearsal import usableSuites
from ._reload import Served, hiddenWarning, presentedFlags, servedByName
from ._sessioninfo import TLSDetails, sslConnection
from ._storecli import _sans, _table
from ._versions import TLSVersion, formatProtocols

__all__ = ["addCheckCommands"]


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _isIP(name: str) -> bool:
    return bool(isIPAddress(name) or isIPv6Address(name))


def _names(certificate: x509.Certificate) -> str:
    dns, ips = _sans(certificate)
    return ", ".join(dns + ips) or "-"


def certificateRows(certificates: Sequence[x509.Certificate]) -> list[str]:
    """Certificates in the columns of C{securesock store list}."""
    rows = [("NAMES", "SUBJECT", "SHA-1", "SHA-256", "VALID UNTIL", "ISSUER")]
    for certificate in certificates:
        rows.append(
            (
                _names(certificate),
                certificate.subject.rfc4514_string() or "-",
                spaced(fingerprint(certificate, "sha1")),
                fingerprint(certificate).hex(),
                f"{certificate.not_valid_after_utc:%Y-%m-%d}",
                certificate.issuer.rfc4514_string() or "-",
            )
        )
    return _table(rows)


def _ciphers(context: SSL.Context, protocols: frozenset[TLSVersion], probe: SSL.Context | None = None) -> str:
    """
    The suites the context would offer, less those its protocol versions
    cannot use and (given C{probe}, a server's context asking no client
    certificate) those no client completes a handshake with.
    """
    tls13 = TLSVersion.TLS1_3 in protocols
    older = any(version != TLSVersion.TLS1_3 for version in protocols)
    usable = [
        name
        for name in SSL.Connection(context, None).get_cipher_list()
        if (tls13 if name.startswith("TLS_") else older)
    ]
    if probe is not None:
        usable = usableSuites(probe, protocols, usable)
    return ", ".join(usable) or "(none usable with these protocols)"


def _timeout(value: str) -> float:
    """probe --timeout: what a description's timeout= takes."""
    try:
        return seconds("--timeout", value)
    except DescriptionError as e:
        raise argparse.ArgumentTypeError(e.message) from None


def _side(description: str, forced: str | None) -> tuple[str, ServerOptions | ClientOptions | str]:
    """Decide whether a description is a server's or a client's."""
    if forced == "server":
        return "server", parseServer(description)
    if forced == "client":
        return "client", parseClient(description)
    split = None if "://" in description else splitDescription(description, "client")
    first = split.args[0].strip() if isinstance(split, Description) and split.args else None
    if first is not None and first.isdigit():
        return "server", parseServer(description)  # tls:PORT...; a client's first argument is its host
    # tls:HOST:PORT is a client's, tls:DIRECTORY:PORT (Twisted's) a server's; URLs and
    # keyword-only descriptions are tried as a server first (tls://[::1]:8443?certificate=... listens).
    sides = ["client", "server"] if first is not None and not os.path.isdir(first) else ["server", "client"]
    errors: list[str] = []
    for side in sides:
        try:
            return side, (parseServer if side == "server" else parseClient)(description)
        except DescriptionError as e:
            errors.append(f"read as a {side}'s: {e.message}")
    raise DescriptionError(f"{'; '.join(errors)} (--server or --client says which it is)")


def _listenAddresses(options: ServerOptions) -> str:
    """
    Where the server listens; a host name is resolved as a start resolves it,
    so that a name that does not resolve fails here as it would there.
    """
    interface = options.interface
    if interface is None:
        return "all interfaces (IPv6 and IPv4)"
    if _isIP(interface):
        return interface
    try:
        found = socket.getaddrinfo(interface, options.port, 0, socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise CommandError(
            f"interface={interface} does not resolve ({e}); give an address of this host or a name for one"
        ) from None
    return f"{interface} ({', '.join(dict.fromkeys(str(info[4][0]) for info in found))})"


def _checkServer(reactor: Any, options: ServerOptions) -> list[str]:
    """Print what a server would serve; returns the warnings a start would not log."""
    from . import serverFromString
    from ._endpoints import buildServer
    from ._starttls import StartTLSServerEndpoint

    # Everything a real start would check (serverFromString), building the endpoint once.
    tls = buildServer(reactor, options, serverFromString)
    if options.prefix == "starttls":
        StartTLSServerEndpoint(tls, options, reactor)
    where = _listenAddresses(options) if options.endpoint is None else ""
    _out(f"server: {options.prefix}: (OK, nothing listened)")
    if options.endpoint is not None:
        _out(f"  listens with: {options.endpoint}")
    else:
        extras = "".join(
            f", {name}"
            for name, on in (("reusePort", options.reusePort), ("exclusive", options.exclusive))
            if on
        )
        _out(f"  listens on: port {options.port}, {where}, backlog {options.backlog}{extras}")
    if options.dialect is not None:
        _out(f"  STARTTLS dialect: {options.dialect}")
    _out(f"  protocols: {formatProtocols(options.policy.protocols)} ({opensslBuild()})")
    served = tls.renewal.served if tls.renewal is not None else []
    chooser = tls.creator.chooser
    servedBy = servedByName(served, chooser.served if chooser is not None else None)
    # A certificate all of whose names another one takes is never presented (the first is the default).
    presented = presentedFlags(served, servedBy, chooser.served if chooser is not None else None)
    ciphers = [
        _ciphers(item.context, options.policy.protocols, _rehearsalContext(options, item)) if shown else ""
        for item, shown in zip(served, presented, strict=True)
    ]
    several = len({c for c in ciphers if c}) > 1  # the suites depend on the certificate (its key type)
    warnings: list[str] = []
    for index, item in enumerate(served):
        identity = item.selected.identity
        role = "certificate" if index == 0 else "certificate (SNI)"
        _out(f"  {role}: {identity.certificate.subject.rfc4514_string()} from {identity.source}")
        _out(f"    SHA-1: {spaced(fingerprint(identity.certificate, 'sha1'))}")
        _out(f"    SHA-256: {fingerprint(identity.certificate).hex()}")
        _out(f"    valid until: {identity.certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
        own = [name for name, winner in servedBy[index].items() if winner is item]
        taken = {name: winner for name, winner in servedBy[index].items() if winner is not item}
        if own:
            _out(f"    served for SNI: {', '.join(own)}")
        elif not presented[index]:
            _out("    served for SNI: none, never served (see the warning below)")
            warnings.append(hiddenWarning(item, taken, options.policy.identity.everyEntry))
        table = chooser.served if chooser is not None else None
        addresses = [
            a for a, context in (table.byAddress if table else {}).items() if context is item.context
        ]
        if addresses:
            _out(
                f"    served to clients of: {', '.join(addresses)} (the address they connect to, without SNI)"
            )
        for name, winner in taken.items():
            if presented[index]:
                _out(f"    not served for SNI: {name} (served with {winner.selected.identity.source})")
        for extra in identity.chain:
            _out(f"    chain: {extra.subject.rfc4514_string()} [sha1 {spaced(fingerprint(extra, 'sha1'))}]")
        if several and ciphers[index]:
            _out(f"    ciphers: {ciphers[index]}")
    if several:
        _out("  ciphers: depend on the certificate's key (listed with each certificate above)")
    elif served:
        _out(f"  ciphers: {ciphers[0]}")
    _out(f"  TCP_NODELAY: {'on' if options.policy.noDelay else 'off (noDelay=no)'}")
    _out(f"  ALPN: {','.join(p.decode() for p in options.policy.alpn) or '(the application decides)'}")
    client = options.verifyClient.value
    _out(f"  client certificates: {client}" + (f" (CA: {options.caCerts})" if options.caCerts else ""))
    if options.sniStrict:
        _out("  unknown SNI names: refused (sniStrict=yes)")
    _out(
        f"  handshake timeout: {options.handshakeTimeout:g} s, at most {options.maxHandshakes} handshakes at once"
    )
    return warnings


def _rehearsalContext(options: ServerOptions, item: Served) -> SSL.Context:
    """A context of C{item}'s certificate asking no client certificate: the suites a client completes."""
    return serverContext(
        replace(options, verifyClient=ClientVerification.NONE, caCerts=None), item.selected.identity
    )


def _checkClient(reactor: Any, description: str, options: ClientOptions) -> None:
    from . import clientFromString

    endpoint = clientFromString(reactor, description)
    _out(f"client: {options.prefix}: (OK, nothing connected)")
    _out(
        f"  connects to: {options.host}:{options.port}"
        + (f" through {options.endpoint}" if options.endpoint else "")
    )
    if options.dialect is not None:
        _out(f"  STARTTLS dialect: {options.dialect}")
    _out(f"  protocols: {formatProtocols(options.policy.protocols)} ({opensslBuild()})")
    if options.verify:
        roots = options.trustRoots or "the platform's trust store"
        sni = "; an IP address is never sent as SNI" if _isIP(options.serverName) else " and sent as SNI"
        _out(f"  verification: chain against {roots}; name {options.serverName!r} checked{sni}")
    else:
        _out("  verification: OFF (verify=no)" + ("; pins still checked" if options.pins else ""))
    for pin in options.pins:
        _out(f"  pin: {pin}")
    _out(f"  client certificate: {_clientCertificate(options)}")
    context = getattr(getattr(endpoint, "creator", None), "_context", None)
    if isinstance(context, SSL.Context):
        _out(f"  ciphers: {_ciphers(context, options.policy.protocols)}")
    _out(f"  ALPN offered: {','.join(p.decode() for p in options.policy.alpn) or '(none)'}")
    _out(f"  TCP_NODELAY: {'on' if options.policy.noDelay else 'off (noDelay=no)'}")


def _clientCertificate(options: ClientOptions) -> str:
    """The certificate a client presents and the file it is read from (a store entry's, for certificateHash=)."""
    selected = selectClientIdentity(options.policy.identity, options.policy.store)
    if selected is None:
        return "none"
    certificate = selected.identity.certificate
    how = f" (certificateHash={selected.label})" if options.policy.identity.certificateHash else ""
    return f"{certificate.subject.rfc4514_string() or '-'} from {selected.identity.source}{how}"


def _check(args: argparse.Namespace) -> int:
    from twisted.internet import reactor

    side, options = _side(args.description, args.side)
    if isinstance(options, str):
        raise CommandError(
            f"{args.description!r} is not a securesock description (prefix {options.split(':', 1)[0]!r}); "
            "check validates tls:, ssl:, tlsv1.x:, starttls: and securesock: descriptions"
        )
    with _warnings() as warned:
        if side == "server":
            assert isinstance(options, ServerOptions)
            warned.extend(_checkServer(reactor, options))
        else:
            assert isinstance(options, ClientOptions)
            _checkClient(reactor, args.description, options)
    # What a real start would log as warnings; once each (check builds a second
    # context, to list the suites a client can complete a handshake with).
    for warning in dict.fromkeys(warned):
        _out(f"warning: {warning}")
    return 0


@contextmanager
def _warnings() -> Iterator[list[str]]:
    """The warnings logged meanwhile (a key others can read, a certificate about to expire ...)."""
    from twisted.logger import ILogObserver, LogLevel, formatEvent, globalLogPublisher

    warned: list[str] = []

    def observe(event: dict[str, Any]) -> None:
        if event.get("log_level") in (LogLevel.warn, LogLevel.error, LogLevel.critical):
            warned.append(formatEvent(event))

    observer = cast(ILogObserver, observe)  # any callable taking an event is one
    globalLogPublisher.addObserver(observer)
    try:
        yield warned
    finally:
        globalLogPublisher.removeObserver(observer)


# Seconds a probe that completed a TLS 1.3 handshake waits for the server's verdict on it.
SETTLE = 1.0


class _ProbeRun:
    """One probe's state: what was found, until when it may run, and how it ends (the reactor stops)."""

    def __init__(self, clock: Any, timeout: float) -> None:
        self.clock = clock
        self.until = clock.seconds() + timeout
        self.result: dict[str, Any] = {}
        self.probes: list[_Probe] = []
        self._ended = False

    def end(self) -> None:
        if not self._ended:
            self._ended = True
            self.clock.callLater(0, self.clock.stop)

    def failed(self, failure: Failure) -> None:
        """The connection or its handshake failed (the probe protocol never started)."""
        self.result.setdefault("error", failure.value)
        self.end()


class _Probe(Protocol):
    """
    Records what was negotiated, then closes.  Under TLS 1.3 the client's
    handshake completes before the server has read the client's certificate
    (or its absence): the server's verdict comes after it, an alert or its
    first records (session tickets, data).  So the probe waits for that, at
    most L{SETTLE} seconds (within --timeout), before it says the connection
    succeeded.
    """

    def __init__(self, run: _ProbeRun) -> None:
        self._run = run
        self._timer: Any = None
        self._done = False
        self._lost = False

    def connectionMade(self) -> None:
        run = self._run
        connection = sslConnection(self.transport)
        if connection is not None:
            run.result["details"] = TLSDetails.fromConnection(connection)
            run.result["chain"] = connection.get_peer_cert_chain(as_cryptography=True) or []
            run.result["sni"] = connection.get_servername()
            settle = min(SETTLE, run.until - run.clock.seconds())
            if connection.get_protocol_version_name() == "TLSv1.3" and settle > 0:
                run.probes.append(self)
                self._timer = run.clock.callLater(settle, self.settled)
                return
        self.settled()

    def dataReceived(self, data: bytes) -> None:
        self.settled()  # the server read our last flight and went on

    def settled(self) -> None:
        """The server's verdict is in (or the wait is over): close, and end the probe."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        if self._done:
            return
        self._done = True
        if not self._lost:
            assert self.transport is not None
            self.transport.loseConnection()
        self._run.end()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._lost = True
        if not self._done and isinstance(reason.value, SSL.Error):
            self._run.result["refused"] = reason.value  # an alert after our handshake completed
        self.settled()


def _afterHandshake(options: ClientOptions, error: SSL.Error) -> str:
    """A TLS 1.3 server's refusal, after our side of the handshake completed, in the words of TLS 1.2's."""
    reasons = "; ".join(opensslReasons(error) or [str(error)])
    hint = (
        "the server refused our client certificate"
        if options.policy.identity.given
        else "the server requires a client certificate and got none"
    )
    return (
        f"TLS handshake with {options.host}:{options.port} failed: {reasons} ({hint}; under TLS 1.3 "
        "the server says so just after the handshake completed on our side)"
    )


def _settleWith(endpoint: Any, run: _ProbeRun) -> None:
    """
    End the wait of C{run}'s probes as soon as the server's session ticket
    arrives: the client's connection creator is told of each resumable
    session (the first ticket, under TLS 1.3), sent once the server has
    accepted the client.
    """
    creator: Any = getattr(endpoint, "creator", None)
    remember = getattr(creator, "rememberSession", None)
    if remember is None:
        return

    def rememberAndSettle(connection: SSL.Connection) -> None:
        remember(connection)
        for probe in run.probes:
            probe.settled()

    creator.rememberSession = rememberAndSettle  # this probe's own endpoint only


def _sniSent(options: ClientOptions, sent: bytes | None) -> str:
    """The server name the ClientHello carried (none for an IP address: RFC 6066 forbids it)."""
    if sent:
        return sent.decode("ascii", "replace")
    if _isIP(options.serverName):
        return "none (an IP address is never sent as SNI)"
    return "none"


def _probe(args: argparse.Namespace) -> int:
    from twisted.internet import reactor
    from twisted.internet.defer import CancelledError
    from twisted.internet.protocol import Factory

    from . import clientFromString

    options = parseClient(args.description)
    if isinstance(options, str):
        raise CommandError(
            f"{args.description!r}: probe needs a securesock client description (tls:HOST:PORT ...)"
        )
    endpoint = clientFromString(reactor, args.description)
    run = _ProbeRun(reactor, args.timeout)
    _settleWith(endpoint, run)
    connecting = endpoint.connect(Factory.forProtocol(lambda: _Probe(run)))
    deadline = run.clock.callLater(args.timeout, connecting.cancel)
    connecting.addErrback(run.failed)  # on success the probe ends the run, once the server had its say
    run.clock.run()
    result = run.result
    if deadline.active():
        deadline.cancel()
    error = result.get("error")
    if isinstance(error, TLSHandshakeError):
        raise CommandError(str(error))
    if error is not None:
        what = "timed out" if isinstance(error, CancelledError) else f"{type(error).__name__}: {error}"
        raise CommandError(f"could not probe {options.host}:{options.port}: {what}")
    if "refused" in result:
        raise CommandError(_afterHandshake(options, result["refused"]))
    if "details" not in result:
        raise CommandError(
            f"{options.host}:{options.port}: the connection is not TLS (dialect=none leaves the upgrade "
            "to the application); give the dialect the server speaks"
        )
    details: TLSDetails = result["details"]
    _out(
        f"connected to {options.host}:{options.port}"
        + (" (verified)" if options.verify else " (NOT verified: verify=no)")
    )
    _out(f"  Protocol version: {details.version}")
    _out(f"  Cipher: {details.cipher}")
    _out(f"  ALPN: {details.alpn.decode('ascii', 'replace') if details.alpn else '(none)'}")
    _out(f"  SNI sent: {_sniSent(options, result.get('sni'))}")
    _out("peer chain:")
    for line in certificateRows(result["chain"]):
        _out("  " + line)
    return 0


def addCheckCommands(subcommands: Any) -> None:
    """Register C{check} and C{probe}."""
    check = subcommands.add_parser(
        "check",
        help="build a description's endpoint without listening or connecting, and print what it would do",
    )
    check.add_argument("description", help="a server or client description")
    side = check.add_mutually_exclusive_group()
    side.add_argument(
        "--server", dest="side", action="store_const", const="server", help="read it as a server description"
    )
    side.add_argument(
        "--client", dest="side", action="store_const", const="client", help="read it as a client description"
    )
    check.set_defaults(run=_check, side=None)
    probe = subcommands.add_parser(
        "probe", help="connect with a client description and print what was negotiated"
    )
    probe.add_argument("description", help="a client description, e.g. tls:example.com:443")
    probe.add_argument(
        "--timeout", type=_timeout, default=30.0, help="seconds for the whole probe (default 30)"
    )
    probe.set_defaults(run=_probe)
