"""
SMTP (RFC 5321) with STARTTLS (RFC 3207): submission on 587, relay on 25.

Server: greets, answers EHLO advertising only STARTTLS, refuses every mail
command with RFC 3207's C{530 5.7.0 Must issue a STARTTLS command first}.
Client: greeting, EHLO, STARTTLS advertised?, STARTTLS, C{220}; a server
that does not advertise STARTTLS is an error, never a plaintext session.
"""

from __future__ import annotations

from . import FramingError, NumericReply, Step, dropGreeting, lines, quoted

__all__ = ["Server", "Client"]


def _text(code: int, found: list[bytes]) -> str:
    return f"{code} {quoted(b' / '.join(found))}"


class Server:
    name = "smtp"
    upgradeCommand = "STARTTLS"
    framing = staticmethod(lines(2048))

    def __init__(self, serverName: str) -> None:
        self._name = serverName.encode("ascii", "replace")

    def start(self) -> Step:
        return Step(b"220 %s ESMTP ready; STARTTLS required\r\n" % self._name)

    def received(self, message: bytes) -> Step:
        verb, _, argument = message.strip().partition(b" ")
        verb = verb.upper()
        if verb == b"EHLO":
            if not argument.strip():
                return Step(b"501 5.5.4 Syntax: EHLO hostname\r\n")
            return Step(b"250-%s\r\n250 STARTTLS\r\n" % self._name)
        if verb == b"HELO":
            return Step(b"250 %s\r\n" % self._name)
        if verb == b"STARTTLS":
            if argument.strip():
                return Step(b"501 5.5.4 Syntax error (no parameters allowed)\r\n")
            return Step(b"220 2.0.0 Ready to start TLS\r\n", upgrade=True)
        if verb in (b"NOOP", b"RSET"):
            return Step(b"250 2.0.0 OK\r\n")
        if verb == b"QUIT":
            return Step(b"221 2.0.0 Bye\r\n", close="the client quit before STARTTLS")
        if not verb:
            return Step(b"500 5.5.2 Error: bad syntax\r\n")
        return Step(b"530 5.7.0 Must issue a STARTTLS command first\r\n")

    def withoutGreeting(self, data: bytes) -> bytes:
        return dropGreeting(data, (b"220 ", b"220\r", b"220\n"), b"220-")


class Client:
    name = "smtp"
    upgradeCommand = "STARTTLS"
    framing = staticmethod(lines(4096))

    def __init__(self, serverName: str, localName: str) -> None:
        self._helo = localName.encode("ascii", "replace")
        self._reply = NumericReply()
        self._state = self._greeting

    def start(self) -> Step:
        return Step()

    def received(self, message: bytes) -> Step:
        try:
            reply = self._reply.add(message)
        except FramingError as e:
            return Step(close=f"the server does not speak SMTP: {e}")
        return Step() if reply is None else self._state(*reply)

    def _greeting(self, code: int, found: list[bytes]) -> Step:
        if code != 220:
            return Step(close=f"the server refused the session: {_text(code, found)}")
        self._state = self._ehlo
        return Step(b"EHLO %s\r\n" % self._helo)

    def _ehlo(self, code: int, found: list[bytes]) -> Step:
        if code != 250:
            return Step(close=f"the server refused EHLO: {_text(code, found)}")
        keywords = [line.split(None, 1)[0].upper() for line in found[1:] if line.strip()]
        if b"STARTTLS" not in keywords:
            return Step(
                close=(
                    f"the server does not offer STARTTLS (its EHLO reply: {_text(code, found)}); "
                    "securesock never falls back to plaintext"
                )
            )
        self._state = self._starttls
        return Step(b"STARTTLS\r\n")

    def _starttls(self, code: int, found: list[bytes]) -> Step:
        if code != 220:
            return Step(close=f"the server refused STARTTLS: {_text(code, found)}")
        return Step(upgrade=True)
