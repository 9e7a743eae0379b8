"""securesock._der: DER elements, short and long lengths, and what does not fit."""

from __future__ import annotations

import pytest

from securesock._der import DERError, element


def test_short_and_long_lengths() -> None:
    assert element(b"\x04\x02ab", 0) == (0x04, 2, 4)
    body = b"x" * 200
    assert element(b"\x04\x81\xc8" + body, 0, 0x04) == (0x04, 3, 203)


@pytest.mark.parametrize(
    "der, tag",
    [
        (b"\x04", None),  # no length
        (b"\x04\x05abc", None),  # content past the end
        (b"\x04\x85\x00\x00\x00\x00\x01a", None),  # a length of five bytes
        (b"\x30\x00", 0x04),  # another tag
    ],
)
def test_what_does_not_fit_is_refused(der: bytes, tag: int | None) -> None:
    with pytest.raises(DERError):
        element(der, 0, tag)
