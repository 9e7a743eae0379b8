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
                f"description at that colon; escape the colon ({name}={value}\\:...), "
                f"or, in the URL form (securesock://HOST:PORT?...), write it as %3A ({value}%3A...)",
                option=name.strip(),
            )


_QUERY_COLONS = (
    "Twisted's tokenizer (twistd --listen, Twisted's endpoints with the securesock: prefix) split "
    "this URL at a ':' inside its query; write each ':' in a query value as %3A "
    "(env%3AKEYPASS, sha256%3AHEX), or give the URL to securesock's own parser "
    "(twistd securesock --listen, securesock.serverFromString), where it needs no escape"
)


def _authorityPieces(args: Sequence[str]) -> int:
    """How many of Twisted's pieces the URL's host takes: one, or an IPv6 literal's (cut at its colons)."""
    if not args[0].startswith("//["):
        return 1
    for index, piece in enumerate(args):
        if "]" in piece:
            return index + 1
    return len(args)


def _rejoinURL(prefix: str, args: Sequence[str], kwargs: Mapping[str, str]) -> tuple[str, bool]:
    """
    The URL Twisted cut at its colons, and whether it was cut inside its
    query too.  A URL has no ':' after its authority (a ':' inside the query
    is written %3A), so its pieces come in order: the authority's pieces as
    positional arguments, then at most one name=value piece holding '?' and
    the query (or, with no '=' in it, the port as one more positional piece).
    """
    url = prefix + ":" + ":".join([*args, *(f"{name}={value}" for name, value in kwargs.items())])
    if "@" in url.partition("//")[2].partition("?")[0].partition("/")[0]:
        return url, False  # user information (user:password@): its ':' cut it; the URL parser refuses it
    expected = (_authorityPieces(args) if args else 0) + (0 if kwargs else 1)
    return url, len(kwargs) > 1 or len(args) > expected


def fromArguments(prefix: str, args: Sequence[str], kwargs: Mapping[str, str], side: str) -> Description:
    """
    The L{Description} of a string Twisted split into C{prefix}, C{args}
    and C{kwargs}.
    """
    # securesock://HOST?a=b, without a port, is one name=value piece
    first = args[0] if args else next(iter(kwargs), "")
    if first.startswith("//"):
        url, cutInQuery = _rejoinURL(prefix, args, kwargs)
        query = url.partition("?")[2]
        items = [(unquote(n), unquote(v)) for n, _, v in (i.partition("=") for i in query.split("&"))]
        if cutInQuery:  # env:/file: cut at their colon are no passphrase typed in: the cut is the news
            items = [(n, v) for n, v in items if v.strip().lower() not in ("env", "file")]
        refuseTypedPassphrases(side, items)
        if cutInQuery:
            # Not quoted: the pieces cut off are parts of option values.
            raise DescriptionError(f"{prefix}://...: {_QUERY_COLONS}")
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
