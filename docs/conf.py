"""
Sphinx configuration for the securesock site (furo theme, MyST Markdown).

Build with warnings as errors, as CI does:

    python3 -m sphinx -W --keep-going -b html docs /tmp/securesock-site
"""

from __future__ import annotations

import re

project = "securesock"
author = "the securesock authors"
copyright = "the securesock authors"

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# Pages link to each other as they do on GitHub (reference.md#errors); MyST
# resolves those links and makes heading anchors for them.
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}

html_theme = "furo"
html_title = "securesock"


# The docstrings are written in epytext, Twisted's convention (C{code},
# L{link}, @param, @raise); turn that into reST as autodoc reads them.
_FIELDS = {"param": "param", "type": "type", "ivar": "ivar", "raise": "raises", "return": "returns"}
_MARKUP = re.compile(r"([CLIBU])\{([^{}]*)\}")


def _epytext(app: object, what: str, name: str, obj: object, options: object, lines: list[str]) -> None:
    for index, line in enumerate(lines):
        line = _MARKUP.sub(lambda m: f"*{m.group(2)}*" if m.group(1) == "I" else f"``{m.group(2)}``", line)
        field = re.match(r"(\s*)@(\w+)(\s+[^:]+)?:(.*)", line)
        if field and field.group(2) in _FIELDS:
            line = f"{field.group(1)}:{_FIELDS[field.group(2)]}{field.group(3) or ''}:{field.group(4)}"
        elif field and field.group(2) == "rtype":
            line = f"{field.group(1)}:rtype:{field.group(4)}"
        lines[index] = line


def setup(app: object) -> None:
    app.connect("autodoc-process-docstring", _epytext)  # type: ignore[attr-defined]
