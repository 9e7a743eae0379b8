"""docs/reference.md documents every option: its generated part matches the option table."""

from __future__ import annotations

from pathlib import Path

from securesock._optiontable import OPTIONS
from securesock._reference import BAD_VALUES, BEGIN, END, renderReference

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "reference.md"


def test_generated_part_is_current() -> None:
    text = REFERENCE.read_text()
    current = text[text.index(BEGIN) : text.index(END) + len(END)]
    assert current == renderReference(), "run: python3 -m securesock._reference --write"


def test_every_option_appears() -> None:
    text = REFERENCE.read_text()
    for option in OPTIONS:
        assert f"| `{option.name}` |" in text


def test_bad_value_examples_name_real_options() -> None:
    """Every option has an example of a bad value, and every example is of a current option."""
    assert set(BAD_VALUES) == {option.name for option in OPTIONS}
