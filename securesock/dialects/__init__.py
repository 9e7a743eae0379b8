"""
The plaintext conversations that come before TLS on STARTTLS ports.

Each dialect (one small module per protocol) is a state machine with no I/O:
it is handed one complete message at a time and answers with a L{Step}:
bytes to send, and whether to upgrade now or to close.  The one L{Reader}
here frames the bytes of the wire into messages and enforces the injection
rule for every dialect, both sides:

    Bytes that arrive after the upgrade command (server side) or after the
    server's go-ahead (client side), before TLS has started, were sent in
    plaintext by someone who did not wait for TLS: an attacker on the path
    can put them there (CVE-2011-0411 and its kin in IMAP, POP3, FTP,
    XMPP, LDAP and PostgreSQL clients and servers).  The connection is
    closed without processing them, and the rest of the chunk they came in
    is dropped too (Postfix's rule).

Dialects know their protocol and nothing about endpoints or TLS.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib import import_module
from typing import NamedTuple, Protocol

from .._options import DIALECTS

__all__ = [
    "Step",
    "Outcome",
    "Dialect",
    "ServerDialect",
    "Framing",
    "FramingError",
    "Reader",
    "lines",
    "NumericReply",
    "dropGreeting",
    "noGreeting",
    "quoted",
    "commandOf",
    "dialectClasses",
    "NEGOTIATED",
]

# The dialects that have a pre-TLS conversation ("none" has not).
NEGOTIATED = tuple(name for name in DIALECTS if name != "none")

# Bound on the messages of one pre-TLS conversation: a real peer needs a
# handful; more is a client probing or wasting the server's time.
MAX_MESSAGES = 32


class Step(NamedTuple):
    """What a dialect wants done after a message."""

    send: bytes = b""
    upgrade: bool = False  # start TLS right after sending (nothing may follow)
    close: str | None = None  # end the connection after sending; why, in words


class Outcome(NamedTuple):
    """What the reader made of a chunk of bytes: send, then upgrade or close."""

    send: bytes = b""
    upgrade: bool = False
    close: str | None = None
    injected: bool = False  # closed by the injection rule


class FramingError(Exception):
    """The peer sent something that cannot be a message of the dialect."""


# The length of the first complete message in the buffer, 0 while incomplete.
Framing = Callable[[bytes], int]


class Dialect(Protocol):
    """One side of one protocol's pre-TLS conversation."""

    name: str
    upgradeCommand: str  # what asks for TLS in this protocol, for messages: "STARTTLS", "STLS"
    framing: Framing

    def start(self) -> Step:
        """What to send when the connection opens (a greeting, a first request)."""

    def received(self, message: bytes) -> Step:
        """React to one complete message."""


class ServerDialect(Dialect, Protocol):
    def withoutGreeting(self, data: bytes) -> bytes:
        """
        C{data} (what the application wrote when it was connected, after the
        upgrade) without its greeting: the client already had ours.
        """


def quoted(data: bytes, limit: int = 80) -> str:
    """Bytes from the wire, shown safely in a message."""
    text = data[:limit].decode("latin-1")
    return repr(text) + ("..." if len(data) > limit else "")


def commandOf(data: bytes) -> str:
    """
    What a peer sent, for a message or a log line, named by its command only
    (C{'PASS'}, C{'a3 LOGIN'}, C{'<auth'}): what follows a command may be a
    password or an AUTH response, sent in plaintext by a client that did not
    wait for TLS, and must not end up in a log.
    """
    line = data.split(b"\n", 1)[0].rstrip(b"\r")
    words = line.split()
    if not words:
        return "an empty line" if data[:1] in (b"\r", b"\n") else f"{len(data)} bytes of white space"
    if not (words[0][:1].isalnum() or words[0][:1] in b"<+-*.") or any(c < 0x20 and c != 0x09 for c in line):
        return "binary data"
    # An IMAP tag, then its command: "a3 LOGIN".
    keep = 2 if len(words) > 1 and any(c in b"0123456789" for c in words[0]) and words[1].isalpha() else 1
    if not _COMMAND.fullmatch(words[keep - 1]):
        # Not a command word: the first word itself may be the secret (an AUTH
        # response, "AGJvYgBTM2NyZXRQVw==", sent on its own line, or a password).
        return f"a line of {len(line)} bytes that is no command (not shown)"
    shown = b" ".join(words[:keep])
    return quoted(shown, 40) + (" and more" if len(words) > keep or len(data) > len(line) + 2 else "")


# What a command of these protocols looks like: a short word of letters (EHLO,
# STARTTLS, AUTH, STLS, LOGIN), or an XML element's name (<starttls, <stream:stream).
_COMMAND = re.compile(rb"[A-Za-z]{1,16}|<[A-Za-z][A-Za-z0-9:_-]{0,40}")


def lines(limit: int) -> Framing:
    """Line framing (CRLF or LF), lines of at most C{limit} bytes."""

    def frame(buffer: bytes) -> int:
        end = buffer.find(b"\n", 0, limit + 1)
        if end >= 0:
            return end + 1
        if len(buffer) > limit:
            raise FramingError(f"a line longer than {limit} bytes (starting {commandOf(buffer)})")
        return 0

    return frame


class Reader:
    """
    Frames bytes into messages for a dialect and applies its steps, with the
    injection rule.  Used by both sides of every dialect.
    """

    def __init__(self, dialect: Dialect, maxMessages: int = MAX_MESSAGES) -> None:
        self.dialect = dialect
        self._buffer = b""
        self._messages = 0
        self._maxMessages = maxMessages
        self.finished = False

    def _named(self, message: bytes) -> str:
        """The message that asked for TLS (or allowed it): as sent when it is text, else by name."""
        text = message.strip()
        if text and all(0x20 <= c < 0x7F for c in text):
            return quoted(text)
        return f"the {self.dialect.name} {self.dialect.upgradeCommand} exchange"

    @property
    def pending(self) -> bytes:
        """Bytes received but not yet framed into a message."""
        return self._buffer

    def start(self) -> Outcome:
        step = self.dialect.start()
        return (
            self._finish([step.send], step.upgrade, step.close)
            if step.upgrade or step.close
            else Outcome(step.send)
        )

    def feed(self, data: bytes) -> Outcome:
        """Take a chunk from the wire; return what to send and do."""
        if self.finished:
            return Outcome()
        self._buffer += data
        out: list[bytes] = []
        while True:
            try:
                size = self.dialect.framing(self._buffer)
            except FramingError as e:
                return self._finish(out, close=f"{self.dialect.name}: {e}")
            if not size:
                return Outcome(b"".join(out))
            message, self._buffer = self._buffer[:size], self._buffer[size:]
            self._messages += 1
            if self._messages > self._maxMessages:
                return self._finish(
                    out, close=f"{self.dialect.name}: more than {self._maxMessages} messages before TLS"
                )
            step = self.dialect.received(message)
            if step.upgrade and self._buffer:
                extra = self._buffer
                return self._finish(
                    out,
                    close=(
                        f"{len(extra)} bytes (starting {commandOf(extra)}) arrived after {self._named(message)} "
                        "and before TLS started; closed without processing them (STARTTLS "
                        "injection, CVE-2011-0411 class: nothing sent in plaintext may count "
                        "as sent over TLS)"
                    ),
                    injected=True,
                )
            out.append(step.send)
            if step.upgrade or step.close:
                return self._finish(out, step.upgrade, step.close)

    def _finish(
        self, out: list[bytes], upgrade: bool = False, close: str | None = None, injected: bool = False
    ) -> Outcome:
        # Whatever is left of the chunk is dropped: after an upgrade only TLS
        # bytes may follow, after a close nothing.
        self.finished = True
        self._buffer = b""
        return Outcome(b"".join(out), upgrade, close, injected)


def dropGreeting(data: bytes, last: tuple[bytes, ...], continued: bytes | None = None) -> bytes:
    """
    C{data} without a leading greeting: one line starting with one of
    C{last}, or a multi-line reply, whose first line starts with
    C{continued} and whose end is the first line starting with one of
    C{last} (RFC 959, 4.2: the lines between may be anything).  C{data} is
    returned whole if it does not start with a greeting.
    """
    if not data.startswith(last) and (continued is None or not data.startswith(continued)):
        return data
    start = 0
    while True:
        end = data.find(b"\n", start)
        if end < 0:
            return b""  # the greeting is not complete: nothing after it yet
        line, start = data[start : end + 1], end + 1
        if line.startswith(last):
            return data[start:]


def noGreeting(data: bytes) -> bytes:
    """For dialects whose server does not greet: nothing to drop."""
    return data


class NumericReply:
    """
    SMTP and FTP replies: C{250-first}, ..., C{250 last}.  (FTP lets the
    lines between the first and the last be anything; SMTP does not use that.)
    """

    def __init__(self) -> None:
        self._code: bytes | None = None
        self._lines: list[bytes] = []

    def add(self, line: bytes) -> tuple[int, list[bytes]] | None:
        """Add a line; the code and text lines once the reply is complete."""
        line = line.rstrip(b"\r\n")
        if self._code is None:
            if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in (b"", b" ", b"-"):
                raise FramingError(f"{quoted(line)} is not a numeric reply")
            self._code = line[:3]
        self._lines.append(line[4:] if line[:3] == self._code else line)
        if line[:3] == self._code and line[3:4] != b"-":
            code, self._code, found, self._lines = int(self._code), None, self._lines, []
            return code, found
        return None


ServerFactory = Callable[[str], ServerDialect]  # (our name) -> a fresh server side
ClientFactory = Callable[[str, str], Dialect]  # (server name, our name) -> a fresh client side


def dialectClasses(name: str) -> tuple[ServerFactory, ClientFactory]:
    """The server and client sides of dialect C{name} (module C{securesock.dialects.NAME})."""
    if name not in NEGOTIATED:
        raise ValueError(f"no dialect {name!r}; known: {', '.join(NEGOTIATED)}")
    module = import_module(f"{__name__}.{name}")
    return module.Server, module.Client
