"""
What was negotiated on a TLS connection, read from any transport securesock
hands an application: an endpoint's TLS layer, or a TCP transport upgraded
with startTLS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography import x509
from OpenSSL import SSL

from ._errors import TLSHandshakeError
from ._hashes import spaced
from ._material import fingerprint

__all__ = ["TLSDetails", "sslConnection", "sessionInfo", "handshakeDone", "printableName", "sessionReused"]


def printableName(name: bytes) -> str:
    """
    A name a peer sent (SNI), as it may go into a log line: every byte
    outside printable ASCII, space included, as C{\\xNN}, so a client
    cannot add a forged line or field to the log.
    """
    return "".join(chr(b) if 0x20 < b < 0x7F and b != 0x5C else f"\\x{b:02x}" for b in name)


def sessionReused(connection: SSL.Connection) -> bool:
    """
    Whether the handshake resumed a session: pyOpenSSL 26 has no method for
    it, so OpenSSL's C{SSL_session_reused} through its bindings (False if a
    release lacks them).
    """
    try:
        from OpenSSL.SSL import _lib  # type: ignore[attr-defined]

        return bool(_lib.SSL_session_reused(connection._ssl))  # type: ignore[attr-defined]
    except (ImportError, AttributeError):  # pragma: no cover - other pyOpenSSL versions
        return False


@dataclass(frozen=True)
class TLSDetails:
    """What a completed handshake negotiated."""

    version: str  # "TLSv1.3"
    cipher: str  # OpenSSL's name, "TLS_AES_256_GCM_SHA384"
    alpn: bytes | None  # the ALPN protocol, if one was agreed
    peerCertificate: x509.Certificate | None  # verified (clients), or as presented (servers)
    sni: str | None = None  # the server name the client sent
    localCertificate: x509.Certificate | None = None  # the certificate this side presented
    resumed: bool = False  # an earlier session was resumed (no full handshake)

    @classmethod
    def fromConnection(cls, connection: SSL.Connection | Any) -> TLSDetails:
        """
        What C{connection} negotiated; from an application,
        C{TLSDetails.fromConnection(transport.getHandle())} (or the TLS
        transport itself) in
        C{handshakeCompleted()} (a server protocol's C{connectionMade} runs
        before the handshake, as everywhere in Twisted).

        @raise TLSHandshakeError: the handshake has not completed, so there
            is nothing negotiated to report (OpenSSL would answer with the
            highest version enabled and no peer certificate).
        """
        if not isinstance(connection, SSL.Connection):
            handle = sslConnection(connection)
            if handle is None:
                raise TypeError(
                    f"TLSDetails.fromConnection takes a TLS transport or its pyOpenSSL connection "
                    f"(transport.getHandle()), not {type(connection).__name__}"
                )
            connection = handle
        if not handshakeDone(connection):
            raise TLSHandshakeError(
                "no TLS details yet: the handshake has not completed (a server protocol's "
                "connectionMade runs before it); read them in handshakeCompleted(), declaring "
                "twisted.internet.interfaces.IHandshakeListener"
            )
        return cls._negotiated(connection)

    @classmethod
    def _negotiated(cls, connection: SSL.Connection) -> TLSDetails:
        """What C{connection}, whose handshake is done, negotiated."""
        sni = connection.get_servername()
        return cls(
            version=connection.get_protocol_version_name(),
            cipher=connection.get_cipher_name() or "",
            alpn=connection.get_alpn_proto_negotiated() or None,
            peerCertificate=connection.get_peer_certificate(as_cryptography=True),
            sni=printableName(sni) if sni else None,
            localCertificate=connection.get_certificate(as_cryptography=True),
            resumed=sessionReused(connection),
        )

    def lines(self) -> list[str]:
        """A human summary, one fact per line."""
        out = [
            f"Protocol version: {self.version}",
            f"Cipher: {self.cipher}",
            f"ALPN: {self.alpn.decode('ascii', 'replace') if self.alpn else '(none)'}",
            f"SNI: {self.sni or '(none)'}",
            f"Session: {'resumed' if self.resumed else 'new (full handshake)'}",
        ]
        for label, certificate in (
            ("Client certificate", self.peerCertificate),
            ("Server certificate", self.localCertificate),
        ):
            if certificate is None:
                out.append(f"{label}: (none)")
            else:
                out += [
                    f"{label}: {certificate.subject.rfc4514_string()}",
                    f"  issuer: {certificate.issuer.rfc4514_string()}",
                    f"  SHA-1: {spaced(fingerprint(certificate, 'sha1'))}",
                    f"  SHA-256: {fingerprint(certificate).hex()}",
                    f"  valid until: {certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC",
                ]
        return out


def sslConnection(transport: Any) -> SSL.Connection | None:
    """The pyOpenSSL connection under C{transport}, if it has one."""
    for candidate in (transport, getattr(transport, "protocol", None)):
        getHandle = getattr(candidate, "getHandle", None)
        if getHandle is not None:
            handle = getHandle()
            if isinstance(handle, SSL.Connection):
                return handle
    return None


def handshakeDone(connection: SSL.Connection) -> bool:
    """Has this connection finished its handshake (the peer's Finished arrived)?"""
    return connection.get_peer_finished() is not None


def sessionInfo(transport: Any) -> TLSDetails | None:
    """What was negotiated on C{transport}, or None if it is not TLS (yet)."""
    connection = sslConnection(transport)
    if connection is None or not handshakeDone(connection):
        return None
    return TLSDetails._negotiated(connection)
