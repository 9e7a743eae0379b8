"""securesock._sessioninfo: what a peer sent, made safe to log."""

from __future__ import annotations

import pytest

from securesock._sessioninfo import printableName


@pytest.mark.parametrize(
    "name, shown",
    [
        (b"www.example.com", "www.example.com"),
        (b"evil\nforged line", "evil\\x0aforged\\x20line"),
        (b"tab\there\r", "tab\\x09here\\x0d"),
        (b"back\\slash", "back\\x5cslash"),  # so that \\x0a cannot be written by the client itself
        ("b\u00fccher.example".encode(), "b\\xc3\\xbccher.example"),
        (b"\x1b[31mred", "\\x1b[31mred"),
    ],
)
def test_a_name_from_a_peer_is_printable_ascii_without_spaces(name: bytes, shown: str) -> None:
    assert printableName(name) == shown
