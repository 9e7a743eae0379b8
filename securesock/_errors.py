"""
securesock's exceptions.

Every mistake a user can make in a description surfaces as a
L{DescriptionError} (a L{ValueError}, like the errors of Twisted's own
C{serverFromString}), raised while the description is parsed or the endpoint
is built: never at the first connection.  Messages name the option, the value
and what would be accepted, and never contain a secret.
"""

from __future__ import annotations

__all__ = [
    "DescriptionError",
    "ProtocolUnavailableError",
    "CertificateError",
    "TLSHandshakeError",
]


class DescriptionError(ValueError):
    """
    A description string, or an option in it, cannot be used.

    @ivar option: the offending option's name (C{"protocols"}, C{"port"}, ...),
        or C{None} when the description as a whole is at fault.
    @ivar value: the offending value as written, or C{None} when showing it
        could reveal a secret or when there is no single value at fault.
    """

    def __init__(self, message: str, *, option: str | None = None, value: str | None = None) -> None:
        super().__init__(message)
        self.option = option
        self.value = value

    @property
    def message(self) -> str:
        return str(self.args[0])


class ProtocolUnavailableError(DescriptionError):
    """
    A protocol version was asked for that the linked OpenSSL cannot speak.
    """


class CertificateError(DescriptionError):
    """
    A certificate, key, chain or trust root named by a description cannot be
    loaded or does not fit together.
    """


class TLSHandshakeError(ConnectionError):
    """
    A TLS connection was set up but its handshake failed: the peer refused our
    versions or ciphers, its certificate did not verify, its name or pin did
    not match.  The message says which, in words.
    """
