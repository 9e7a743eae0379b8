"""
Descriptions that Twisted's own tokenizer has already split (the
C{securesock:} plugin, so C{twistd web --listen securesock:...}) -> a
L{Description}.  Pure, like the parser it feeds.

Twisted reads every C{:} as a separator before securesock sees the string.
Two things suffer, and both are dealt with here: a URL is cut at its colons
(so it is put back together), and the colon of C{passphrase=env:VAR} or
C{pin=sha256:HEX} is taken as a separator (so the user is told to escape it,
instead of hearing about a stray positional argument).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from urllib.parse import unquote

from ._description import _SCHEMED_VALUES, Description, refuseTypedPassphrases, splitDescription
from ._errors import DescriptionError

__all__ = ["fromArguments"]


def _checkSchemedValues(kwargs: Mapping[str, str]) -> None:
    for name, value in kwargs.items():
        pattern = _SCHEMED_VALUES.get(name.strip().lower())
        if pattern is not None and re.fullmatch(r"(.*,)?\s*" + pattern, value, re.IGNORECASE):
            raise DescriptionError(
                f"{name}={value}: has nothing after '{value.split(',')[-1].strip()}:' because "
                "Twisted's tokenizer (twistd --listen, the securesock: plugin) split the "
                f"description at that colon; escape the colon ({name}={value}\\:...) "
                "or use the URL form",
                option=name.strip(),
            )


def _rejoinURL(prefix: str, args: Sequence[str], kwargs: Mapping[str, str]) -> str:
    # A URL has no ':' after its authority (a ':' inside the query is written
    # %3A), so its pieces come in order: the authority's pieces as positional
    # arguments, then at most one name=value piece holding '?' and the query.
    url = prefix + ":" + ":".join(args)
    url += "".join(f":{name}={value}" for name, value in kwargs.items())
    if len(kwargs) > 1:
        raise DescriptionError(
            f"{url!r}: Twisted's tokenizer split this URL at colons inside its query; "
            "write a ':' in a query value as %3A"
        )
    return url


def fromArguments(prefix: str, args: Sequence[str], kwargs: Mapping[str, str], side: str) -> Description:
    """
    The L{Description} of a string Twisted split into C{prefix}, C{args}
    and C{kwargs}.
    """
    if args and args[0].startswith("//"):
        url = _rejoinURL(prefix, args, kwargs)
        query = url.partition("?")[2]
        refuseTypedPassphrases(
            side, [(unquote(n), unquote(v)) for n, _, v in (i.partition("=") for i in query.split("&"))]
        )
        try:
            split = splitDescription(url, side)
        except DescriptionError as e:
            raise DescriptionError(
                f"{e} (Twisted's tokenizer split this URL at its colons before securesock "
                "read it; write a ':' inside a query value as %3A)",
                option=e.option,
            ) from None
        assert isinstance(split, Description)  # the prefix is securesock's
        return split
    _checkSchemedValues(kwargs)
    return Description(prefix, tuple(args), tuple(kwargs.items()))
