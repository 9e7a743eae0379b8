"""
securesock's exceptions.

Every mistake a user can make in a description surfaces as a
L{DescriptionError} (a L{ValueError}, like the errors of Twisted's own
C{serverFromString}), raised while the description is parsed or the endpoint
is built: never at the first connection.  Messages name the option, the value
and what would be accepted, and never contain a secret.
"""

from __future__ import annotations

import re

from OpenSSL import SSL

__all__ = [
    "redactSecrets",
    "opensslReasons",
    "DescriptionError",
    "ProtocolUnavailableError",
    "CertificateError",
    "TLSHandshakeError",
    "StartTLSError",
    "StartTLSInjectionError",
]

# passphrase=VALUE where VALUE is not a reference (env:NAME, file:PATH): a
# passphrase typed literally.  It ends at the next separator or quote; a
# backslash escapes the character after it (doubled when the text quotes the
# description with repr()), and pieces after an unescaped ':' that hold no
# '=' are taken as more of it (Twisted's syntax cut the passphrase there; they
# are not options).  (env\:NAME is the escaped spelling error messages suggest.)
# A quote after an even run of backslashes ends the quoted description (the
# value ended in a backslash: 'passphrase=x\\' in repr), after an odd run it is
# part of the value.
_ESCAPE = r"(?:(?:\\\\)*\\['\"]|\\+[^'\"\n])"
# A quote ends the value only where a quoted description ends in a message (at the
# end, before a space, ',', ';', ')', ']' or ': '): one inside a passphrase is part of it.
_QUOTE = r"['\"](?!$|[\s,;)\]]|:\s)"
# (A quote right after passphrase= opens a quoted value, passphrase='/run/pass' in a
# message about a file: not a typed passphrase.)
_FIRST_PIECE = rf"(?:{_ESCAPE}|[^&:'\"\s\\])(?:{_ESCAPE}|{_QUOTE}|[^&:'\"\n\\])*"
_MORE_PIECE = rf"(?:{_ESCAPE}|{_QUOTE}|[^&:'\"\s\\=])(?:{_ESCAPE}|{_QUOTE}|[^&:'\"\n\\=])*"
_LITERAL_PASSPHRASE = re.compile(
    rf"(passphrase=)(?!(?:env|file)\\*:)({_FIRST_PIECE}(?::{_MORE_PIECE}(?=[:&'\"\n]|$))*)", re.IGNORECASE
)


# The password of a URL's user information (scheme://user:PASSWORD@host), which an
# endpoint URL has no use for but a pasted one may carry.
_URL_PASSWORD = re.compile(r"(://[^/?#@\s:'\"]*:)[^/?#@\s'\"]*@")


def redactSecrets(text: str) -> str:
    """
    Hide literal passphrases in a text that quotes a description (errors
    echo what was written), keeping env:/file: references, which are not
    secret and say what to fix, and the password of a URL's user information.
    """
    return _URL_PASSWORD.sub(r"\1(not shown)@", _LITERAL_PASSPHRASE.sub(r"\1(not shown)", text))


def opensslReasons(error: SSL.Error) -> list[str]:
    """OpenSSL's reason texts in a pyOpenSSL error (C{no shared cipher}, C{ee key too small}), in order."""
    items = error.args[0] if error.args and isinstance(error.args[0], list) else []
    return [str(item[-1]) for item in items if isinstance(item, tuple) and item]


class DescriptionError(ValueError):
    """
    A description string, or an option in it, cannot be used.

    @ivar option: the offending option's name (C{"protocols"}, C{"port"}, ...),
        or C{None} when the description as a whole is at fault.
    @ivar value: the offending value as written, or C{None} when showing it
        could reveal a secret or when there is no single value at fault.
    """

    def __init__(self, message: str, *, option: str | None = None, value: str | None = None) -> None:
        super().__init__(redactSecrets(message))
        self.option = option
        self.value = None if value is None else redactSecrets(value)

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
    not match.  The message says which, in words.  (Also raised by
    L{TLSDetails.fromConnection} before the handshake has completed.)
    """


class StartTLSError(ConnectionError):
    """
    A connection could not be upgraded to TLS: the plaintext exchange before
    it failed (the server did not offer the upgrade, or refused it), or the
    transport cannot start TLS.  Never followed by a plaintext session.
    """


class StartTLSInjectionError(StartTLSError):
    """
    Bytes arrived after the upgrade command or the server's go-ahead and
    before TLS started (STARTTLS injection, CVE-2011-0411 class); the
    connection was closed without processing them.
    """
