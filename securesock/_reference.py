"""
The options reference, rendered from the option table.

docs/reference.md holds this rendering between two markers; a test compares
them, and ``python -m securesock._reference --write`` refreshes the file, so
a new option cannot go undocumented.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ._description import TLS_PREFIXES
from ._optiontable import CLIENT, OPTIONS, SERVER, Option
from ._versions import formatProtocols

__all__ = ["renderReference", "BEGIN", "END"]

BEGIN = "<!-- generated from securesock/_optiontable.py: begin -->"
END = "<!-- generated from securesock/_optiontable.py: end -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _table(side: str) -> list[str]:
    rows = [
        "| option | aliases | accepted | default | what it does |",
        "|---|---|---|---|---|",
    ]
    for option in OPTIONS:
        if side in option.sides:
            rows.append(_row(option))
    return rows


def _row(option: Option) -> str:
    aliases = ", ".join(f"`{a}`" for a in option.aliases) or ""
    return (
        f"| `{option.name}` | {aliases} | {_cell(option.accepted)} | {_cell(option.default)} "
        f"| {_cell(option.help)} |"
    )


def renderReference() -> str:
    """The generated part of docs/reference.md."""
    lines = [BEGIN, "", "### Prefixes", "", "| prefix | protocol versions |", "|---|---|"]
    for prefix, pinned in TLS_PREFIXES.items():
        versions = formatProtocols(pinned) if pinned else "`protocols=` (default TLS1_2+TLS1_3)"
        lines.append(f"| `{prefix}:` | {versions} |")
    lines += [
        "",
        "### Server options",
        "",
        *_table(SERVER),
        "",
        "### Client options",
        "",
        *_table(CLIENT),
        "",
        END,
    ]
    return "\n".join(lines)


def _write(path: Path) -> None:
    text = path.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    path.write_text(text[:start] + renderReference() + text[end:])


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        _write(Path(__file__).resolve().parent.parent / "docs" / "reference.md")
    else:
        print(renderReference())
