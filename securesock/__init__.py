"""
securesock: TLS endpoints for Twisted from one-line descriptions.

    serverFromString(reactor, "tls:8443:certificate=site.pem:protocols=TLS1_2+TLS1_3")
    clientFromString(reactor, "tls://example.com:443?alpn=h2,http/1.1")

Descriptions with securesock's prefixes (tls:, ssl:, tlsv1.0: .. tlsv1.3:,
sslv2:, sslv3:, securesock:, starttls:) are handled here; every other prefix
goes to Twisted's own parser unchanged.  startTLS() upgrades a plaintext
connection the application has negotiated itself (docs/starttls.md).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import endpoints as _twisted
from twisted.internet.interfaces import IStreamClientEndpoint, IStreamServerEndpoint

from ._arguments import fromArguments
from ._description import clientOptions, parseClient, parseServer, serverOptions
from ._endpoints import TLSClientEndpoint, TLSServerEndpoint, buildClient, buildServer
from ._errors import (
    CertificateError,
    DescriptionError,
    ProtocolUnavailableError,
    StartTLSError,
    StartTLSInjectionError,
    TLSHandshakeError,
)
from ._linemixin import StartTLSLineMixin
from ._options import ClientOptions, ServerOptions, TLSPolicy
from ._optiontable import CLIENT, SERVER
from ._starttls import (
    StartTLSClientEndpoint,
    StartTLSServerEndpoint,
    TLSDetails,
    TLSUpgrade,
    buildStartTLSClient,
    buildStartTLSServer,
    startTLS,
)
from ._versions import TLSVersion

__all__ = [
    "serverFromString",
    "clientFromString",
    "serverFromArguments",
    "clientFromArguments",
    "DescriptionError",
    "ProtocolUnavailableError",
    "CertificateError",
    "TLSHandshakeError",
    "ServerOptions",
    "ClientOptions",
    "TLSPolicy",
    "TLSVersion",
    "TLSServerEndpoint",
    "TLSClientEndpoint",
    "startTLS",
    "TLSUpgrade",
    "TLSDetails",
    "StartTLSLineMixin",
    "StartTLSError",
    "StartTLSInjectionError",
    "StartTLSServerEndpoint",
    "StartTLSClientEndpoint",
]


def _twistedParse(parse: Any, reactor: Any, description: str) -> Any:
    try:
        return parse(reactor, description)
    except DescriptionError:
        raise
    except (KeyError, IndexError) as e:
        if description.strip().lower().startswith("systemd:"):
            raise DescriptionError(
                f"{description!r}: systemd passed this process no such socket ({type(e).__name__}: {e}); "
                "start it from a .socket unit (Twisted reads LISTEN_PID, LISTEN_FDS and "
                "LISTEN_FDNAMES) and name the socket with index=N or name=FileDescriptorName",
                option="endpoint",
                value=description,
            ) from None
        raise DescriptionError(f"{description!r}: Twisted cannot parse this description: {e}") from None
    except (ValueError, TypeError) as e:
        raise DescriptionError(f"{description!r}: Twisted cannot parse this description: {e}") from None


def serverFromString(reactor: Any, description: str) -> IStreamServerEndpoint:
    """
    Build a listening endpoint from a description.

    @raise DescriptionError: when the description, or a file it names, cannot
        be used; the message names the option and what it accepts.
    """
    parsed = parseServer(description)
    if isinstance(parsed, str):
        return _twistedParse(_twisted.serverFromString, reactor, parsed)  # type: ignore[no-any-return]
    return _buildServer(reactor, parsed)


def clientFromString(reactor: Any, description: str) -> IStreamClientEndpoint:
    """
    Build a connecting endpoint from a description.  For securesock's
    prefixes, C{connect()} fires once the TLS handshake has completed and the
    server has been verified.

    @raise DescriptionError: when the description, or a file it names, cannot
        be used.
    """
    parsed = parseClient(description)
    if isinstance(parsed, str):
        return _twistedParse(_twisted.clientFromString, reactor, parsed)  # type: ignore[no-any-return]
    return _buildClient(reactor, parsed)


def serverFromArguments(
    reactor: Any, prefix: str, args: tuple[str, ...], kwargs: dict[str, str]
) -> TLSServerEndpoint | StartTLSServerEndpoint:
    """Build a server from arguments Twisted has already split (plugins use this)."""
    return _buildServer(reactor, serverOptions(fromArguments(prefix, args, kwargs, SERVER)))


def clientFromArguments(
    reactor: Any, prefix: str, args: tuple[str, ...], kwargs: dict[str, str]
) -> TLSClientEndpoint | StartTLSClientEndpoint:
    """Build a client from arguments Twisted has already split (plugins use this)."""
    return _buildClient(reactor, clientOptions(fromArguments(prefix, args, kwargs, CLIENT)))


def _buildServer(reactor: Any, options: ServerOptions) -> TLSServerEndpoint | StartTLSServerEndpoint:
    if options.prefix == "starttls":
        return buildStartTLSServer(reactor, options, serverFromString)
    return buildServer(reactor, options, serverFromString)


def _buildClient(reactor: Any, options: ClientOptions) -> TLSClientEndpoint | StartTLSClientEndpoint:
    if options.prefix == "starttls":
        return buildStartTLSClient(reactor, options, clientFromString)
    return buildClient(reactor, options, clientFromString)
