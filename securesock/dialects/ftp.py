"""
FTP control connections with AUTH TLS (RFC 4217).

Server: greets, lists AUTH TLS in FEAT, answers C{AUTH TLS} with C{234} and
everything else (USER, PASS, ...) with C{530}.  Client: greeting, C{AUTH
TLS}, C{234}; any other answer is an error, never a plaintext login.  Only
the control connection is upgraded here: data connections (PBSZ/PROT) are
the application's business after TLS.
"""

from __future__ import annotations

from . import FramingError, NumericReply, Step, dropGreeting, lines, quoted

__all__ = ["Server", "Client"]

_AUTH_WORDS = (b"TLS", b"TLS-C", b"SSL", b"TLS-P")


class Server:
    name = "ftp"
    upgradeCommand = "AUTH TLS"
    framing = staticmethod(lines(2048))

    def __init__(self, serverName: str) -> None:
        self._name = serverName.encode("ascii", "replace")

    def start(self) -> Step:
        return Step(b"220 %s FTP ready; AUTH TLS required\r\n" % self._name)

    def received(self, message: bytes) -> Step:
        verb, _, argument = message.strip().partition(b" ")
        verb, argument = verb.upper(), argument.strip().upper()
        if verb == b"AUTH":
            if argument in _AUTH_WORDS:
                return Step(b"234 AUTH %s successful\r\n" % argument, upgrade=True)
            return Step(b"504 AUTH %s not supported; use AUTH TLS\r\n" % argument[:40])
        if verb == b"FEAT":
            return Step(b"211-Features:\r\n AUTH TLS\r\n211 End\r\n")
        if verb == b"NOOP":
            return Step(b"200 NOOP ok\r\n")
        if verb == b"QUIT":
            return Step(b"221 Bye\r\n", close="the client quit before AUTH TLS")
        if not verb:
            return Step(b"500 Syntax error\r\n")
        return Step(b"530 Issue AUTH TLS first: this server requires TLS\r\n")

    def withoutGreeting(self, data: bytes) -> bytes:
        return dropGreeting(data, (b"220 ", b"220\r", b"220\n"), b"220-")


class Client:
    name = "ftp"
    upgradeCommand = "AUTH TLS"
    framing = staticmethod(lines(4096))

    def __init__(self, serverName: str, localName: str) -> None:
        self._reply = NumericReply()
        self._authSent = False

    def start(self) -> Step:
        return Step()

    def received(self, message: bytes) -> Step:
        try:
            reply = self._reply.add(message)
        except FramingError as e:
            return Step(close=f"the server does not speak FTP: {e}")
        if reply is None:
            return Step()
        code, found = reply
        text = f"{code} {quoted(b' / '.join(found))}"
        if not self._authSent:
            if code == 120:  # "service ready in nnn minutes": a 220 follows
                return Step()
            if code != 220:
                return Step(close=f"the server refused the session: {text}")
            self._authSent = True
            return Step(b"AUTH TLS\r\n")
        if code != 234:
            return Step(
                close=f"the server refused AUTH TLS: {text}; securesock never falls back to plaintext"
            )
        return Step(upgrade=True)
