"""
Certificate thumbprints as people copy them: C{certificateHash=} values.

The Windows certificate manager (and WinDev's C{CertificateHash}) shows a
SHA-1 thumbprint as spaced pairs, C{9d a4 84 fc ...}; browsers and
C{openssl x509 -fingerprint} show colon-separated upper case.  Both are
accepted.  A mistyped thumbprint is the commonest mistake, so the error
names the first character that is not a hex digit and where it is (a letter
C{o} typed for a zero is reported as the letter C{o}), or how many digits
were given against the two lengths accepted.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from ._errors import DescriptionError

__all__ = [
    "CertificateHash",
    "HASH_ACCEPTED",
    "parseCertificateHash",
    "parseCertificateHashes",
    "looksLikeHash",
    "spaced",
]

HASH_ACCEPTED = (
    "a SHA-1 thumbprint (40 hex digits) or a SHA-256 one (64), spaces or ':' between "
    "digits ignored, any case; several joined with ',' (servers: one per SNI name)"
)
_ALGORITHMS = {40: "sha1", 64: "sha256"}
_SEPARATORS = frozenset(" :\t")
_HEX = frozenset("0123456789abcdefABCDEF")
# Letters that look like digits, and the digit probably meant.
_LOOKALIKES = {"o": "0", "O": "0", "l": "1", "I": "1", "i": "1", "S": "5", "s": "5"}


@dataclass(frozen=True)
class CertificateHash:
    """A thumbprint that selects a certificate: its SHA-1 or SHA-256 digest."""

    algorithm: str  # "sha1" or "sha256"
    digest: bytes

    def __str__(self) -> str:
        return spaced(self.digest)


def spaced(digest: bytes) -> str:
    """The WinDev / Windows certificate manager form: C{9d a4 84 ...}."""
    return " ".join(f"{byte:02x}" for byte in digest)


def _describe(char: str) -> str:
    if char.isalpha() and char.isascii():
        return f"the letter {char!r}"
    if char.isdigit():
        return f"the digit {char!r} (not an ASCII digit)"
    name = unicodedata.name(char, "")
    if unicodedata.category(char) in ("Cf", "Zs", "Cc") or not char.isprintable():
        return f"the invisible character U+{ord(char):04X}{f' ({name})' if name else ''}"
    return f"the character {char!r}"


def parseCertificateHash(value: str, option: str = "certificateHash") -> CertificateHash:
    """
    One thumbprint.

    @raise DescriptionError: naming the first character that is not a hex
        digit and its position (counted from 1 in the value as written), or
        the number of digits found.
    """
    return _parse(value, 0, value, option, "")


def _parse(part: str, offset: int, whole: str, option: str, which: str) -> CertificateHash:
    named = re.match(r"\s*((?:sha|md)[-_]?\d*)\s*:", part, re.IGNORECASE)
    if named is not None:  # pin='s form, or Windows' "sha1: ..." copied whole
        raise DescriptionError(
            f"{option}={whole!r}{which}: a thumbprint is its hex digits alone (SHA-1 or SHA-256 told "
            f"apart by their number): drop {named.group(0).strip()!r} (the digest name goes in "
            f"pin=sha256:..., not in {option}=); accepted: {HASH_ACCEPTED}",
            option=option,
            value=whole,
        )
    digits: list[str] = []
    for position, char in enumerate(part, start=offset + 1):
        if char in _HEX:
            digits.append(char)
        elif char not in _SEPARATORS:
            hint = _LOOKALIKES.get(char)
            meant = f" (the digit {hint} was probably meant)" if hint else ""
            if char == "\u200e":
                meant = (
                    " (Windows adds it when a thumbprint is copied from the certificate manager: delete it)"
                )
            raise DescriptionError(
                f"{option}={whole!r}: character {position}{which} is {_describe(char)}, not a "
                f"hexadecimal digit (0-9, a-f){meant}; accepted: {HASH_ACCEPTED}",
                option=option,
                value=whole,
            )
    compact = "".join(digits).lower()
    algorithm = _ALGORITHMS.get(len(compact))
    if algorithm is None:
        raise DescriptionError(
            f"{option}={whole!r}: {len(compact)} hex digit{'s' if len(compact) != 1 else ''} "
            f"found{which}; a SHA-1 thumbprint has 40 and a SHA-256 one 64 (spaces and ':' do "
            f"not count); accepted: {HASH_ACCEPTED}",
            option=option,
            value=whole,
        )
    return CertificateHash(algorithm, bytes.fromhex(compact))


def parseCertificateHashes(option: str, value: str) -> tuple[CertificateHash, ...]:
    """The option converter: one thumbprint, or several joined with ','."""
    parts = value.split(",")
    if any(not part.strip() for part in parts):
        raise DescriptionError(
            f"{option}={value!r}: an empty thumbprint; accepted: {HASH_ACCEPTED}",
            option=option,
            value=value,
        )
    result = []
    offset = 0
    for number, part in enumerate(parts, start=1):
        which = f" (in thumbprint {number})" if len(parts) > 1 else ""
        result.append(_parse(part, offset, value, option, which))
        offset += len(part) + 1
    return tuple(result)


def looksLikeHash(text: str) -> bool:
    """Whether C{text} was probably meant as a thumbprint rather than a name."""
    compact = [c for c in text if c not in _SEPARATORS]
    if len(compact) < 20 or any(c in "./@*" for c in compact):
        return False
    hexCount = sum(1 for c in compact if c in _HEX)
    return hexCount >= 0.85 * len(compact)
