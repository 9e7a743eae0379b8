"""
securesock: TLS endpoints for Twisted from one-line descriptions.

    serverFromString(reactor, "tls:8443:certificate=site.pem:protocols=TLS1_2+TLS1_3")
    clientFromString(reactor, "tls://example.com:443?alpn=h2,http/1.1")

Descriptions with securesock's prefixes (tls:, ssl:, tlsv1.0: .. tlsv1.3:,
sslv2:, sslv3:, securesock:) are handled here; every other prefix goes to
Twisted's own parser unchanged.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import endpoints as _twisted
from twisted.internet.interfaces import IStreamClientEndpoint, IStreamServerEndpoint

from ._description import Description, clientOptions, parseClient, parseServer, serverOptions
from ._endpoints import TLSClientEndpoint, TLSServerEndpoint, buildClient, buildServer
from ._errors import (
    CertificateError,
    DescriptionError,
    ProtocolUnavailableError,
    TLSHandshakeError,
)
from ._options import ClientOptions, ServerOptions, TLSPolicy
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
]


def _twistedParse(parse: Any, reactor: Any, description: str) -> Any:
    try:
        return parse(reactor, description)
    except DescriptionError:
        raise
    except (ValueError, TypeError, KeyError, IndexError) as e:
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
    return buildServer(reactor, parsed, serverFromString)


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
    return buildClient(reactor, parsed, clientFromString)


def serverFromArguments(
    reactor: Any, prefix: str, args: tuple[str, ...], kwargs: dict[str, str]
) -> TLSServerEndpoint:
    """Build a server from arguments Twisted has already split (plugins use this)."""
    return buildServer(
        reactor, serverOptions(Description(prefix, tuple(args), tuple(kwargs.items()))), serverFromString
    )


def clientFromArguments(
    reactor: Any, prefix: str, args: tuple[str, ...], kwargs: dict[str, str]
) -> TLSClientEndpoint:
    """Build a client from arguments Twisted has already split (plugins use this)."""
    return buildClient(
        reactor, clientOptions(Description(prefix, tuple(args), tuple(kwargs.items()))), clientFromString
    )
