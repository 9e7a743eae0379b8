"""
Protocol flags -> what OpenSSL needs: a minimum and maximum version plus
C{OP_NO_*} options for the holes, so that a server's set like C{TLS1+TLS1_2}
is kept exactly (TLS 1.1 refused).  A client's set must be one unbroken
range: OpenSSL's client offers only the versions below a hole.

Whether the linked OpenSSL can speak a version is found out at run time, by
asking it to write a ClientHello restricted to that version: a build without
SSLv3 (every OpenSSL 3 and 4 wheel) or without TLS 1.0 says so there, and no
table of versions needs updating when OpenSSL changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from OpenSSL import SSL

from ._errors import DescriptionError, ProtocolUnavailableError
from ._versions import TLSVersion, formatProtocols

__all__ = ["VersionSettings", "versionSettings", "canSpeak", "speakable", "opensslBuild"]

_NO_OPTION = {
    TLSVersion.SSL2: getattr(SSL, "OP_NO_SSLv2", 0),
    TLSVersion.SSL3: getattr(SSL, "OP_NO_SSLv3", 0),
    TLSVersion.TLS1: SSL.OP_NO_TLSv1,
    TLSVersion.TLS1_1: SSL.OP_NO_TLSv1_1,
    TLSVersion.TLS1_2: SSL.OP_NO_TLSv1_2,
    TLSVersion.TLS1_3: getattr(SSL, "OP_NO_TLSv1_3", 0),
}


def opensslBuild() -> str:
    """The linked OpenSSL's own version line, e.g. C{OpenSSL 3.0.13 30 Jan 2024}."""
    return SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode("ascii", "replace")


@cache
def canSpeak(version: TLSVersion) -> bool:
    """
    Can the linked OpenSSL produce a ClientHello for exactly C{version}?
    """
    if version is TLSVersion.SSL2:
        # OpenSSL removed SSLv2 in 1.1.0; no version number reaches it.
        return False
    context = SSL.Context(SSL.TLS_METHOD)
    try:
        context.set_min_proto_version(int(version))
        context.set_max_proto_version(int(version))
        context.set_cipher_list(b"ALL:@SECLEVEL=0")
    except SSL.Error:
        return False
    connection = SSL.Connection(context, None)
    connection.set_connect_state()
    try:
        connection.do_handshake()
    except SSL.WantReadError:
        return True  # the ClientHello was written; we would now wait for a reply
    except SSL.Error:
        return False
    return False


def speakable() -> frozenset[TLSVersion]:
    """Every version the linked OpenSSL can speak."""
    return frozenset(v for v in TLSVersion if canSpeak(v))


@dataclass(frozen=True)
class VersionSettings:
    """How a protocol set is expressed to OpenSSL."""

    minimum: int
    maximum: int
    options: int  # OP_NO_* bits for versions inside [minimum, maximum] not asked for
    legacy: bool  # TLS 1.0/1.1 asked for: needs security level 0 on OpenSSL 3+


def versionSettings(
    versions: frozenset[TLSVersion], option: str = "protocols", *, client: bool = False
) -> VersionSettings:
    """
    Map a protocol set onto OpenSSL settings.

    @param client: the set is a client's, which cannot have a hole.
    @raise ProtocolUnavailableError: naming each version the linked OpenSSL
        cannot speak and the versions it can.
    @raise DescriptionError: for a client's set with a hole.
    """
    missing = [v for v in sorted(versions) if not canSpeak(v)]
    if missing:
        names = ", ".join(f"{v.name} ({v.displayName})" for v in missing)
        available = formatProtocols(speakable()) or "none"
        # SSL 2.0 left OpenSSL in 1.1.0: no build speaks it; SSL 3.0 needs a build made with enable-ssl3.
        remedy = (
            "no OpenSSL since 1.1.0 speaks SSL 2.0"
            if missing == [TLSVersion.SSL2]
            else "or run with an OpenSSL built with that version enabled"
            + (" (no OpenSSL since 1.1.0 speaks SSL 2.0)" if TLSVersion.SSL2 in missing else "")
        )
        raise ProtocolUnavailableError(
            f"{option}: {names} cannot be spoken by the linked {opensslBuild()}; "
            f"this build speaks {available}.  Remove {'it' if len(missing) == 1 else 'them'} "
            f"from the description{';' if missing == [TLSVersion.SSL2] else ','} {remedy}",
            option=option,
            value=formatProtocols(versions),
        )
    low, high = min(versions), max(versions)
    missingInside = [v for v in TLSVersion if low < v < high and v not in versions]
    if client and missingInside:
        _refuseClientHole(versions, missingInside, option)
    holes = 0
    for version in missingInside:
        holes |= _NO_OPTION[version]
    return VersionSettings(
        minimum=int(low),
        maximum=int(high),
        options=holes,
        legacy=any(v.deprecated for v in versions),
    )


def _refuseClientHole(versions: frozenset[TLSVersion], missing: list[TLSVersion], option: str) -> None:
    """
    OpenSSL's client offers min..(first hole) only: C{TLS1+TLS1_2} would offer
    TLS 1.0 alone, a silent downgrade; name the two sets that can be kept.
    """
    low, high = min(versions), max(versions)
    whole = frozenset(v for v in TLSVersion if low <= v <= high)
    upper = frozenset(v for v in versions if v > max(missing))
    raise DescriptionError(
        f"{option}={formatProtocols(versions)!r}: a client offers one unbroken range of versions "
        f"(OpenSSL's would offer only those below the missing {formatProtocols(frozenset(missing))}, "
        f"never {formatProtocols(upper)}); accepted for a client: {formatProtocols(whole)} or "
        f"{formatProtocols(upper)} (a server keeps a set with a hole exactly)",
        option=option,
        value=formatProtocols(versions),
    )
