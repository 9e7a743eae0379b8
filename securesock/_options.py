"""
The typed, immutable result of parsing a description.

Nothing here touches a file, OpenSSL or a reactor: these objects only say
what was asked for.  The policy and endpoint modules turn them into contexts
and endpoints.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ._versions import DEFAULT_PROTOCOLS, TLSVersion

__all__ = [
    "Passphrase",
    "IdentitySpec",
    "Pin",
    "ClientVerification",
    "TLSPolicy",
    "ServerOptions",
    "ClientOptions",
]


@dataclass(frozen=True)
class Passphrase:
    """
    Where to read a key's passphrase: an environment variable or a file.
    Literal passphrases are never accepted in descriptions, so none ends up
    in a config file, a process list or a log line.
    """

    source: str  # "env" or "file"
    reference: str  # variable name or path

    def __str__(self) -> str:
        return f"{self.source}:{self.reference}"


@dataclass(frozen=True)
class IdentitySpec:
    """
    The files that make up a certificate identity.  Twisted's C{ssl:} names
    are kept: C{privateKey} (key, may also hold the certificate), C{certKey}
    (certificate), C{extraCertChain} (intermediates).  C{certificate} is a PEM
    bundle or a PKCS#12 file.
    """

    certificate: str | None = None
    privateKey: str | None = None
    extraCertChain: str | None = None
    passphrase: Passphrase | None = None

    @property
    def given(self) -> bool:
        return self.certificate is not None or self.privateKey is not None


@dataclass(frozen=True)
class Pin:
    """A certificate fingerprint the peer's leaf certificate must match."""

    algorithm: str  # "sha256" or "sha1"
    digest: bytes

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.digest.hex()}"


class ClientVerification(enum.Enum):
    """What a server asks of its clients' certificates (C{verifyClient=})."""

    NONE = "none"
    OPTIONAL = "optional"
    REQUIRE = "require"


@dataclass(frozen=True)
class TLSPolicy:
    """The settings servers and clients share."""

    protocols: frozenset[TLSVersion] = DEFAULT_PROTOCOLS
    ciphers: str | None = None
    alpn: tuple[bytes, ...] = ()
    identity: IdentitySpec = field(default_factory=IdentitySpec)
    noDelay: bool = True


@dataclass(frozen=True)
class ServerOptions:
    """A parsed server description."""

    prefix: str
    port: int
    policy: TLSPolicy
    interface: str | None = None
    backlog: int = 50
    dhParameters: str | None = None
    verifyClient: ClientVerification = ClientVerification.NONE
    caCerts: str | None = None
    endpoint: str | None = None


@dataclass(frozen=True)
class ClientOptions:
    """A parsed client description."""

    prefix: str
    host: str
    port: int
    policy: TLSPolicy
    timeout: float = 30.0
    bindAddress: str | None = None
    hostname: str | None = None
    verify: bool = True
    trustRoots: str | None = None
    pins: tuple[Pin, ...] = ()
    endpoint: str | None = None

    @property
    def serverName(self) -> str:
        """The name checked against the certificate and sent as SNI."""
        return self.hostname if self.hostname is not None else self.host
