"""
The typed, immutable result of parsing a description.

Nothing here touches a file, OpenSSL or a reactor: these objects only say
what was asked for.  The policy and endpoint modules turn them into contexts
and endpoints.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from ._hashes import CertificateHash
from ._versions import DEFAULT_PROTOCOLS, TLSVersion

__all__ = [
    "Passphrase",
    "IdentitySpec",
    "Pin",
    "ClientVerification",
    "TLSPolicy",
    "ServerOptions",
    "ClientOptions",
    "DIALECTS",
    "HANDSHAKE_TIMEOUT",
    "MAX_HANDSHAKES",
]

# The pre-TLS conversations a starttls: endpoint can speak (dialect=);
# "none" leaves the upgrade to the application (securesock.startTLS).
DIALECTS = ("smtp", "imap", "pop3", "ftp", "xmpp", "ldap", "postgres", "none")

# Server defaults for hostile clients (docs/hardening.md says how they were chosen).
# Twisted's ssl: server has always read this key file when given no other.
TWISTED_SSL_DEFAULT_KEY = "server.pem"

HANDSHAKE_TIMEOUT = 10.0
MAX_HANDSHAKES = 1000


@dataclass(frozen=True)
class Passphrase:
    """
    Where to read a key's passphrase: an environment variable or a file.
    Literal passphrases are never accepted in descriptions, so none ends up
    in a config file, a process list or a log line.
    """

    source: str  # "env" or "file"
    reference: str  # variable name or path

    @property
    def shownReference(self) -> str:
        """
        The reference as messages show it: a variable's name (capitals, digits,
        '_') or a path (holding '/' or '.'); anything else may be the
        passphrase itself, typed after env: or file: by mistake.
        """
        looksRight = (
            re.fullmatch(r"[A-Z_][A-Z0-9_]*", self.reference)
            if self.source == "env"
            else re.search(r"[/.]", self.reference)
        )
        return self.reference if looksRight else "(not shown)"

    def __str__(self) -> str:
        return f"{self.source}:{self.shownReference}"


@dataclass(frozen=True)
class IdentitySpec:
    """
    The files that make up a certificate identity.  Twisted's C{ssl:} names
    are kept: C{privateKey} (key, may also hold the certificate), C{certKey}
    (certificate), C{extraCertChain} (intermediates).  C{certificate} is a PEM
    bundle or a PKCS#12 file, or names in the certificate store (several,
    comma-separated, for SNI); C{certificateHash} picks store entries by
    thumbprint; C{everyEntry} serves the whole store (Twisted's
    C{tls:DIRECTORY:PORT}).
    """

    certificate: str | None = None
    privateKey: str | None = None
    extraCertChain: str | None = None
    passphrase: Passphrase | None = None
    certificateHash: tuple[CertificateHash, ...] = ()
    everyEntry: bool = False

    @property
    def given(self) -> bool:
        return (
            self.certificate is not None
            or self.privateKey is not None
            or bool(self.certificateHash)
            or self.everyEntry
        )


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
    store: str | None = None  # the certificate store directory (None: the default)
    protocolsOption: str = "protocols"  # the option that chose the versions, for messages (or "sslmethod")


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
    sniStrict: bool = False
    reusePort: bool = False
    exclusive: bool = False
    dialect: str | None = None  # starttls: only
    handshakeTimeout: float = HANDSHAKE_TIMEOUT  # seconds a client has to finish its handshake
    maxHandshakes: int = MAX_HANDSHAKES  # handshakes in progress at once; more are closed at once


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
    dialect: str | None = None  # starttls: only

    @property
    def serverName(self) -> str:
        """The name checked against the certificate and sent as SNI."""
        return self.hostname if self.hostname is not None else self.host
