"""
Reading DER's tag-length-value elements, the little of ASN.1 that securesock
needs where the bindings give only an encoding (a session's server name,
the size of DH parameters).
"""

from __future__ import annotations

__all__ = ["DERError", "element"]


class DERError(ValueError):
    """The bytes are not the DER element expected (cut short, another tag, a length past the end)."""


def element(der: bytes, position: int, tag: int | None = None) -> tuple[int, int, int]:
    """
    The element at C{position}: its tag and where its content starts and
    ends.  Single-byte tags only (all that SSL_SESSION and DH parameters use).

    @raise DERError: when it does not fit in C{der}, or its tag is not C{tag}.
    """
    if position + 2 > len(der):
        raise DERError("DER element past the end")
    found = der[position]
    if tag is not None and found != tag:
        raise DERError(f"DER tag {found:#x}, not {tag:#x}")
    length = der[position + 1]
    start = position + 2
    if length & 0x80:
        count = length & 0x7F
        if not 1 <= count <= 4 or start + count > len(der):
            raise DERError("unsupported DER length")
        length = int.from_bytes(der[start : start + count], "big")
        start += count
    end = start + length
    if end > len(der):
        raise DERError("DER element past the end")
    return found, start, end
