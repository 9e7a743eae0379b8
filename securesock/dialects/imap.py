"""
IMAP (RFC 3501/9051) with STARTTLS.

Server: greets with its capabilities (STARTTLS, LOGINDISABLED), answers
CAPABILITY, NOOP and LOGOUT, and every other command with C{NO
[PRIVACYREQUIRED]} (RFC 5530) until STARTTLS.  Client: greeting (a
PREAUTH greeting cannot be upgraded, RFC 3501 6.2.1), CAPABILITY (STARTTLS
listed?), STARTTLS, tagged C{OK}.
"""

from __future__ import annotations

import re

from . import Step, dropGreeting, lines, quoted

__all__ = ["Server", "Client"]

_CAPABILITIES = b"IMAP4rev1 STARTTLS LOGINDISABLED"
# An IMAP tag: ASTRING-CHAR except '+' (RFC 3501 9).
_TAG = re.compile(rb"[^\x00-\x20\x7f(){%*\"\\\]+]+\Z")


class Server:
    name = "imap"
    upgradeCommand = "STARTTLS"
    framing = staticmethod(lines(8192))

    def __init__(self, serverName: str) -> None:
        self._name = serverName.encode("ascii", "replace")

    def start(self) -> Step:
        return Step(b"* OK [CAPABILITY %s] %s ready; STARTTLS required\r\n" % (_CAPABILITIES, self._name))

    def received(self, message: bytes) -> Step:
        parts = message.rstrip(b"\r\n").split(b" ", 2)
        if len(parts) < 2 or not _TAG.match(parts[0]) or not parts[1]:
            return Step(b"* BAD Missing tag or command\r\n")
        tag, command = parts[0], parts[1].upper()
        if command == b"CAPABILITY":
            return Step(b"* CAPABILITY %s\r\n%s OK CAPABILITY completed\r\n" % (_CAPABILITIES, tag))
        if command == b"NOOP":
            return Step(b"%s OK NOOP completed\r\n" % tag)
        if command == b"LOGOUT":
            return Step(
                b"* BYE Logging out\r\n%s OK LOGOUT completed\r\n" % tag,
                close="the client logged out before STARTTLS",
            )
        if command == b"STARTTLS":
            if len(parts) > 2:
                return Step(b"%s BAD STARTTLS takes no arguments\r\n" % tag)
            return Step(b"%s OK Begin TLS negotiation now\r\n" % tag, upgrade=True)
        return Step(b"%s NO [PRIVACYREQUIRED] Issue STARTTLS first\r\n" % tag)

    def withoutGreeting(self, data: bytes) -> bytes:
        return dropGreeting(data, (b"* OK", b"* PREAUTH"))


class Client:
    name = "imap"
    upgradeCommand = "STARTTLS"
    framing = staticmethod(lines(65536))

    def __init__(self, serverName: str, localName: str) -> None:
        self._state = self._greeting
        self._capabilities: set[bytes] = set()

    def start(self) -> Step:
        return Step()

    def received(self, message: bytes) -> Step:
        return self._state(message.rstrip(b"\r\n"))

    def _greeting(self, line: bytes) -> Step:
        if line.startswith(b"* PREAUTH"):
            return Step(
                close=(
                    f"the server greeted with PREAUTH ({quoted(line)}): a pre-authenticated "
                    "connection cannot be upgraded with STARTTLS (RFC 3501 6.2.1)"
                )
            )
        if not line.startswith(b"* OK"):
            return Step(close=f"the server refused the session: {quoted(line)}")
        self._state = self._capability
        return Step(b"a001 CAPABILITY\r\n")

    def _capability(self, line: bytes) -> Step:
        if line.upper().startswith(b"* CAPABILITY "):
            self._capabilities.update(word.upper() for word in line.split()[2:])
            return Step()
        if line.startswith(b"* "):
            return Step()
        if line.startswith(b"a001 OK"):
            if b"STARTTLS" not in self._capabilities:
                listed = quoted(b" ".join(sorted(self._capabilities)))
                return Step(
                    close=(
                        f"the server does not offer STARTTLS (CAPABILITY lists {listed}); "
                        "securesock never falls back to plaintext"
                    )
                )
            self._state = self._starttls
            return Step(b"a002 STARTTLS\r\n")
        return Step(close=f"the server refused CAPABILITY: {quoted(line)}")

    def _starttls(self, line: bytes) -> Step:
        if line.startswith(b"* "):
            return Step()
        if line.startswith(b"a002 OK"):
            return Step(upgrade=True)
        return Step(close=f"the server refused STARTTLS: {quoted(line)}")
