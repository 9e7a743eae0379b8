"""
The C{securesock} command (also C{python -m securesock}).

Each command family registers itself on the parser (see L{COMMANDS}); its
handler returns the exit status.  Errors a user can cause are reported as
one line on standard error with a non-zero status: 2 for a malformed
command line, 1 for everything else.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from ._errors import DescriptionError

__all__ = ["main", "buildParser", "CommandError", "COMMANDS"]

PROG = "securesock"


class CommandError(Exception):
    """A command cannot do what was asked; the message is shown as is."""


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line (argparse prints the usage first)."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


def _addStore(subcommands: Any) -> None:
    from ._storecli import addStoreCommands

    addStoreCommands(subcommands)


# Functions adding a command family (a sub-parser whose handler is set with
# set_defaults(run=handler)); new families (check, probe) go here.
def _addCheck(subcommands: Any) -> None:
    from ._checkcli import addCheckCommands

    addCheckCommands(subcommands)


COMMANDS: list[Callable[[Any], None]] = [_addStore, _addCheck]


def buildParser() -> argparse.ArgumentParser:
    """The full command-line parser."""
    parser = _Parser(
        prog=PROG,
        description="TLS endpoints for Twisted: tools around securesock descriptions.",
    )
    parser.add_argument(
        "--store",
        metavar="DIR",
        help="certificate store directory (default: $SECURESOCK_STORE, else "
        "$XDG_DATA_HOME/securesock/store, i.e. ~/.local/share/securesock/store)",
    )
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subcommands.required = True
    for add in COMMANDS:
        add(subcommands)
    return parser


def _oneLine(text: str) -> str:
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status."""
    parser = buildParser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code) if isinstance(e.code, int) else 2
    try:
        return int(args.run(args))
    except (CommandError, DescriptionError) as e:
        sys.stderr.write(f"{PROG}: error: {_oneLine(str(e))}\n")
        return 1
    except BrokenPipeError:
        # The reader went away (securesock store list | head): nothing to say, and
        # Python must not complain again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        sys.stderr.write(f"{PROG}: error: {where}{e.strerror or e}\n")
        return 1
    except KeyboardInterrupt:
        return 130
