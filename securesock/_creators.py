"""
Connection creators: the per-connection half of the policy.

The server creator hands out connections on the endpoint's shared context.
The client creator adds what differs per connection: SNI, ALPN, and the
verification of the server's certificate (chain, then name with
service-identity, then pins), recording in words why a check failed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import idna
from cryptography import x509
from OpenSSL import SSL
from service_identity import CertificateError as ServiceIdentityCertificateError
from service_identity import VerificationError
from service_identity.cryptography import (
    verify_certificate_hostname,
    verify_certificate_ip_address,
)
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ._clienthello import Unreadable, requestedServerName
from ._context import acceptableProtocols
from ._errors import TLSHandshakeError
from ._material import describeCertificate, fingerprint
from ._options import ClientOptions
from ._sessioninfo import printableName, sessionReused
from ._sessionname import resumedSessionName

__all__ = ["ServerCreator", "ServedContexts", "ServerNameChooser", "ClientCreator", "verifyErrorText"]

log = Logger()

# X.509 verification results (OpenSSL's X509_V_ERR_*) users meet most.
_VERIFY_ERRORS = {
    2: "the issuer certificate is unknown",
    7: "the certificate signature is invalid",
    9: "the certificate is not yet valid",
    10: "the certificate has expired",
    18: "the certificate is self-signed and not trusted",
    19: "the chain ends in a self-signed certificate that is not trusted",
    20: "the issuer is not in the trust roots (unable to get local issuer certificate)",
    21: "the first certificate cannot be verified",
    23: "the certificate has been revoked",
    24: "an intermediate is not a valid CA certificate",
    26: "the certificate may not be used for this purpose",
}


def verifyErrorText(errno: int) -> str:
    """OpenSSL's verification result number, in words."""
    return _VERIFY_ERRORS.get(errno, f"X.509 verification error {errno}")


@dataclass(frozen=True)
class ServedContexts:
    """
    What a server presents right now: a context per SNI name (lower case,
    C{*.example.com} for wildcards) and the default for clients that send
    no name (or an unknown one, unless strict).
    """

    default: SSL.Context
    byName: Mapping[bytes, SSL.Context]
    # By the IP addresses of certificates' subjectAltNames (compressed text): for
    # clients that send no SNI (RFC 6066 sends none for an address) and connected
    # to that address, and for those that send the address as SNI anyway.
    byAddress: Mapping[str, SSL.Context] = field(default_factory=dict)

    @cached_property
    def several(self) -> bool:
        """Whether more than one context is served (else any name gets the same certificate)."""
        return any(
            context is not self.default for context in (*self.byName.values(), *self.byAddress.values())
        )


class ServerNameChooser:
    """
    The servername callback of a server's contexts: switches each
    connection to the context of the certificate its client asked for.
    C{served} is replaced as a whole when a certificate is renewed.
    """

    def __init__(self, served: ServedContexts | None = None, *, strict: bool = False) -> None:
        self.served = served
        self.strict = strict

    def __call__(self, connection: SSL.Connection) -> bool:
        served = self.served
        if served is None:
            return True
        name = connection.get_servername()
        if (served.several or self.strict) and sessionReused(connection):
            if connection.get_protocol_version_name() == "TLSv1.3":
                # OpenSSL gave the name asked for; the session's own is in the session.
                asked: bytes | None | Unreadable = name
                made = resumedSessionName(connection)
                version, rule = "TLS 1.3", "RFC 8446, 4.6.1"
            else:
                # OpenSSL gave the session's name; the one asked for is in the ClientHello.
                asked = requestedServerName(getattr(connection.get_app_data(), "firstBytes", None) or b"")
                made = name
                version, rule = "TLS 1.2", "RFC 6066"
            if (
                not isinstance(asked, Unreadable)
                and not isinstance(made, Unreadable)
                and not self._sameContext(served, asked, made, connection)
            ):
                # Resumed, the connection would go on authenticated by the other certificate.
                return _refused(
                    connection,
                    f"the client asked for {_named(asked)} resuming a {version} session made for "
                    f"{_named(made)}, which another certificate serves; refused ({rule}): it "
                    "must connect again without that session",
                )
        target = _chosen(served, name, connection)
        if target is None:
            if self.strict:
                return _refused(
                    connection,
                    f"the client asked for {_named(name)}, which no certificate serves (sniStrict=yes)",
                )
            target = served.default
        if connection.get_context() is not target:
            connection.set_context(target)
        return True

    def _sameContext(
        self, served: ServedContexts, asked: bytes | None, made: bytes | None, connection: SSL.Connection
    ) -> bool:
        """
        Whether the certificate a client gets for C{asked} is the one it got
        for C{made}.  Without a name the address it connected to decides for
        both (a session cache keeps sessions per host and port).
        """
        unknown = None if self.strict else served.default  # an unknown name: refused, or the default
        return (_chosen(served, asked, connection) or unknown) is (
            _chosen(served, made, connection) or unknown
        )


def _chosen(served: ServedContexts, name: bytes | None, connection: SSL.Connection) -> SSL.Context | None:
    """
    The context for C{name}: by name; by address for a name that is an
    address, or for no name (the local address the client connected to);
    the default for no name otherwise; None for a name no certificate has.
    """
    target = _contextFor(served, name)
    if served.byAddress and (not name or target is None):
        target = _contextForAddress(served, name, connection) or target
    return target


def _named(name: bytes | None) -> str:
    return f"the server name {printableName(name)}" if name else "no server name"


def _refused(connection: SSL.Connection, why: str) -> bool:
    """
    Refuse the handshake (an unrecognized_name alert) with C{why} as its
    reason: the one log line of the failed handshake says it, instead of
    OpenSSL's "callback failed".
    """
    protocol = connection.get_app_data()
    if protocol is not None and getattr(protocol, "_reason", None) is None:
        protocol._reason = Failure(TLSHandshakeError(why))
    else:
        log.info("{why}", why=why)
    return False


def _contextForAddress(
    served: ServedContexts, name: bytes | None, connection: SSL.Connection
) -> SSL.Context | None:
    """
    The context of the certificate for the address asked for by SNI (not
    RFC 6066's way, but openssl s_client's), or, without SNI, for the local
    address the client connected to.
    """
    if name:
        address = _address(name.decode("ascii", "replace"))
    else:
        transport = getattr(connection.get_app_data(), "transport", None)
        host = getattr(transport.getHost(), "host", None) if transport is not None else None
        address = _address(host) if isinstance(host, str) else None
    return served.byAddress.get(address) if address is not None else None


def _address(text: str) -> str | None:
    """An IP address as the table keys it (an IPv4-mapped IPv6 address as IPv4), or None."""
    try:
        address = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.compressed
    return address.compressed


def _contextFor(served: ServedContexts, name: bytes | None) -> SSL.Context | None:
    """The context serving C{name}: the default for no name, None for a name no certificate has."""
    if not name:
        return served.default
    key = name.lower()
    found = served.byName.get(key)
    if found is None and b"." in key:
        found = served.byName.get(b"*" + key[key.index(b".") :])
    return found


@implementer(IOpenSSLServerConnectionCreator)
class ServerCreator:
    """
    Connections for a server endpoint.  Every connection starts on
    C{context}, which keeps the session cache and ticket keys; when the
    contexts carry a L{ServerNameChooser} it moves the connection to the
    context of the certificate asked for by SNI, or renewed since.
    C{beforeConnection} runs first for each connection (the renewal check).
    Connections already made keep the context they have.
    """

    def __init__(
        self,
        context: SSL.Context,
        chooser: ServerNameChooser | None = None,
        beforeConnection: Callable[[], None] | None = None,
    ) -> None:
        self.context = context
        self.chooser = chooser
        self._before = beforeConnection

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        if self._before is not None:
            self._before()
        connection = SSL.Connection(self.context, None)
        connection.set_app_data(tlsProtocol)  # the chooser reads the ClientHello it received
        return connection


@implementer(IOpenSSLClientConnectionCreator)
class ClientCreator:
    """
    Connections for a client endpoint, verifying the server as configured.

    It remembers the last resumable session per (host, port, SNI), so a
    reused endpoint resumes instead of paying a full handshake; sessions
    come only from handshakes that passed this endpoint's verification.
    """

    def __init__(self, context: SSL.Context, options: ClientOptions) -> None:
        self._context = context
        self._options = options
        name = options.serverName
        self._isIP = isIPAddress(name) or isIPv6Address(name)
        self._sni: bytes | None = None
        if not self._isIP:
            try:
                self._sni = idna.encode(name, uts46=True)
            except idna.IDNAError:
                self._sni = name.encode("ascii", "replace")
        self._sessions: dict[tuple[str, int, bytes | None], SSL.Session] = {}

    def _sessionKey(self) -> tuple[str, int, bytes | None]:
        return (self._options.host, self._options.port, self._sni)

    def rememberSession(self, connection: SSL.Connection) -> None:
        """Keep C{connection}'s session (called by the TLS layer once it is resumable)."""
        session = connection.get_session()
        if session is not None:
            self._sessions[self._sessionKey()] = session

    def forgetSession(self, connection: SSL.Connection) -> None:
        """
        Offer no session for C{connection}'s server any more: a TLS 1.0
        connection ended without close_notify (RFC 2246, 7.2.1).  The kept
        session is that connection's, or an older one of the same server.
        """
        self._sessions.pop(self._sessionKey(), None)

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection = SSL.Connection(self._context, None)
        if self._sni is not None:
            connection.set_tlsext_host_name(self._sni)
        session = self._sessions.get(self._sessionKey())
        if session is not None:
            connection.set_session(session)
        alpn = acceptableProtocols(tlsProtocol, self._options.policy.alpn)
        if alpn:
            connection.set_alpn_protos(alpn)
        if not self._options.verify and not self._options.pins:
            log.warn(
                "verify=no: the certificate of {host}:{port} is not checked; "
                "anyone on the path can read and change this connection",
                host=self._options.host,
                port=self._options.port,
            )
            connection.set_verify(SSL.VERIFY_NONE)
            return connection
        connection.set_verify(SSL.VERIFY_PEER, self._verifier(tlsProtocol))
        return connection

    def _verifier(self, tlsProtocol: Any) -> Any:
        options = self._options
        name = options.serverName

        def fail(message: str, chainFailed: bool = False) -> bool:
            reason = Failure(TLSHandshakeError(message))
            if chainFailed:
                # OpenSSL found the chain bad: returning False fails the handshake with its
                # alert (unknown CA, expired certificate ...), which the TLS layer sends before
                # it closes, so the server's log says why.  Our own checks (name, pins) leave
                # OpenSSL nothing to name: it would say "internal error", so those abort.
                tlsProtocol._reason = reason
            else:
                tlsProtocol.failVerification(reason)
            return False

        def check(connection: SSL.Connection, cert: Any, errno: int, depth: int, ok: int) -> bool:
            try:
                certificate = cert.to_cryptography()
                if not options.verify:
                    return depth > 0 or self._pinned(certificate) or fail(self._pinMessage(certificate))
                if not ok:
                    return fail(
                        f"the certificate of {name} did not verify: {verifyErrorText(errno)} "
                        f"(at depth {depth}: {describeCertificate(certificate)})",
                        chainFailed=True,
                    )
                if depth > 0:
                    return True
                if not self._pinned(certificate):
                    return fail(self._pinMessage(certificate))
                problem = self._nameProblem(certificate, name)
                return fail(problem) if problem else True
            except Exception:
                log.failure("while verifying the server certificate")
                return fail("the server certificate could not be checked (see the log)")

        return check

    def _pinned(self, certificate: x509.Certificate) -> bool:
        pins = self._options.pins
        return not pins or any(fingerprint(certificate, p.algorithm) == p.digest for p in pins)

    def _pinMessage(self, certificate: x509.Certificate) -> str:
        return (
            f"the certificate of {self._options.serverName} {describeCertificate(certificate)} "
            f"has sha256 {fingerprint(certificate).hex()}, which matches none of "
            f"pin={','.join(str(p) for p in self._options.pins)}"
        )

    def _nameProblem(self, certificate: x509.Certificate, name: str) -> str | None:
        try:
            if self._isIP:
                verify_certificate_ip_address(certificate, name)
            else:
                verify_certificate_hostname(certificate, name)
        except (VerificationError, ServiceIdentityCertificateError):
            return (
                f"the certificate {describeCertificate(certificate)} is not valid for "
                f"{name!r} (checked against its subjectAltName); connect with the name "
                "it was issued for, or set hostname="
            )
        return None
