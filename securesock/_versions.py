"""
Protocol version flags: the C{protocols=} option's words, parsed without
touching OpenSSL.

Flags are joined with C{+} in the style of WinDev's C{SocketCreateSSL}
options (C{TLS1_2+TLS1_3}), case-insensitively, and may also be written with
WinDev's C{Protocol} prefix (C{ProtocolTLS1_2}) or OpenSSL's names
(C{TLSv1.2}).
"""

from __future__ import annotations

import difflib
import enum
import re

from ._errors import DescriptionError

__all__ = ["TLSVersion", "parseProtocols", "formatProtocols", "DEFAULT_PROTOCOLS"]


class TLSVersion(enum.IntEnum):
    """
    A protocol version, valued by its number on the wire so that versions
    order naturally.
    """

    SSL2 = 0x0002
    SSL3 = 0x0300
    TLS1 = 0x0301
    TLS1_1 = 0x0302
    TLS1_2 = 0x0303
    TLS1_3 = 0x0304

    @property
    def displayName(self) -> str:
        """The name OpenSSL and most tools print (C{TLSv1.2})."""
        return _DISPLAY[self]

    @property
    def deprecated(self) -> bool:
        """RFC 8996 deprecates everything below TLS 1.2."""
        return self < TLSVersion.TLS1_2


_DISPLAY = {
    TLSVersion.SSL2: "SSLv2",
    TLSVersion.SSL3: "SSLv3",
    TLSVersion.TLS1: "TLSv1",
    TLSVersion.TLS1_1: "TLSv1.1",
    TLSVersion.TLS1_2: "TLSv1.2",
    TLSVersion.TLS1_3: "TLSv1.3",
}

DEFAULT_PROTOCOLS: frozenset[TLSVersion] = frozenset({TLSVersion.TLS1_2, TLSVersion.TLS1_3})

# Canonical spelling -> version.  Every accepted spelling is normalised to one
# of these keys by _normalise().
_CANONICAL = {
    "ssl2": TLSVersion.SSL2,
    "ssl3": TLSVersion.SSL3,
    "tls1": TLSVersion.TLS1,
    "tls1_1": TLSVersion.TLS1_1,
    "tls1_2": TLSVersion.TLS1_2,
    "tls1_3": TLSVersion.TLS1_3,
}

_ACCEPTED = (
    "SSL2, SSL3, TLS1, TLS1_1, TLS1_2, TLS1_3 joined with '+' (also written ProtocolTLS1_2 or TLSv1.2)"
)


def _normalise(token: str) -> str:
    word = token.strip().lower()
    if word.startswith("protocol"):
        word = word[len("protocol") :]
    word = re.sub(r"^(ssl|tls)v", r"\1", word)  # TLSv1.2 -> tls1.2
    word = word.replace(".", "_").replace("-", "_")
    word = re.sub(r"_0$", "", word)  # TLS1_0 / TLSv1.0 / SSLv3.0
    return word


def parseProtocols(value: str, option: str = "protocols") -> frozenset[TLSVersion]:
    """
    Parse C{TLS1_2+TLS1_3}-style flags into the exact set of versions named.

    @raise DescriptionError: for an empty flag or a word that names no
        version, with the nearest accepted spelling.
    """
    versions: set[TLSVersion] = set()
    for token in value.split("+"):
        if not token.strip():
            raise DescriptionError(
                f"{option}={value!r} has an empty flag; accepted: {_ACCEPTED}",
                option=option,
                value=value,
            )
        version = _CANONICAL.get(_normalise(token))
        if version is None and any(separator in token for separator in ",;|/ "):
            raise DescriptionError(
                f"{option}={value!r}: flags are joined with '+' (TLS1_2+TLS1_3), not with "
                f"{next(c for c in ',;|/ ' if c in token)!r}; accepted: {_ACCEPTED}",
                option=option,
                value=value,
            )
        if version is None:
            hint = ""
            close = difflib.get_close_matches(_normalise(token), list(_CANONICAL), n=1, cutoff=0.6)
            if close:
                hint = f" (did you mean {_CANONICAL[close[0]].name}?)"
            raise DescriptionError(
                f"{option}={value!r}: unknown protocol flag {token.strip()!r}{hint}; accepted: {_ACCEPTED}",
                option=option,
                value=value,
            )
        versions.add(version)
    return frozenset(versions)


def formatProtocols(versions: frozenset[TLSVersion]) -> str:
    """The flags of C{versions}, lowest first, joined with C{+}."""
    return "+".join(v.name for v in sorted(versions))
