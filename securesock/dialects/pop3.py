"""
POP3 (RFC 1939) with STLS (RFC 2595), capabilities from CAPA (RFC 2449).

Server: greets, lists only STLS in CAPA, refuses USER, PASS, APOP, AUTH and
the rest until STLS.  Client: greeting, CAPA (STLS listed?), STLS, C{+OK};
a server whose CAPA lacks STLS, or that refuses STLS, is an error.
"""

from __future__ import annotations

from . import Step, dropGreeting, lines, quoted

__all__ = ["Server", "Client"]


class Server:
    name = "pop3"
    upgradeCommand = "STLS"
    framing = staticmethod(lines(2048))

    def __init__(self, serverName: str) -> None:
        self._name = serverName.encode("ascii", "replace")

    def start(self) -> Step:
        return Step(b"+OK %s POP3 ready; STLS required\r\n" % self._name)

    def received(self, message: bytes) -> Step:
        words = message.strip().split(b" ", 1)
        verb = words[0].upper()
        if verb == b"CAPA":
            return Step(b"+OK Capability list follows\r\nSTLS\r\n.\r\n")
        if verb == b"STLS" and len(words) > 1:  # RFC 2595 4: STLS takes no arguments
            return Step(b"-ERR STLS takes no arguments\r\n")
        if verb == b"STLS":
            return Step(b"+OK Begin TLS negotiation\r\n", upgrade=True)
        if verb == b"QUIT":
            return Step(b"+OK Bye\r\n", close="the client quit before STLS")
        return Step(b"-ERR Issue STLS first: this server accepts nothing else in plaintext\r\n")

    def withoutGreeting(self, data: bytes) -> bytes:
        return dropGreeting(data, (b"+OK",))


class Client:
    name = "pop3"
    upgradeCommand = "STLS"
    framing = staticmethod(lines(4096))

    def __init__(self, serverName: str, localName: str) -> None:
        self._state = self._greeting
        self._capabilities: list[bytes] = []

    def start(self) -> Step:
        return Step()

    def received(self, message: bytes) -> Step:
        return self._state(message.rstrip(b"\r\n"))

    def _greeting(self, line: bytes) -> Step:
        if not line.startswith(b"+OK"):
            return Step(close=f"the server refused the session: {quoted(line)}")
        self._state = self._capa
        return Step(b"CAPA\r\n")

    def _capa(self, line: bytes) -> Step:
        if line.startswith(b"+OK"):
            self._state = self._capaList
            return Step()
        # No CAPA (a pre-RFC 2449 server): ask for STLS all the same.
        return self._stls()

    def _capaList(self, line: bytes) -> Step:
        if line != b".":
            self._capabilities.append(line[1:] if line.startswith(b".") else line)
            return Step()
        if not any(c.split(b" ", 1)[0].upper() == b"STLS" for c in self._capabilities):
            listed = quoted(b" ".join(self._capabilities))
            return Step(
                close=f"the server does not offer STLS (CAPA lists {listed}); securesock never falls back to plaintext"
            )
        return self._stls()

    def _stls(self) -> Step:
        self._state = self._stlsReply
        return Step(b"STLS\r\n")

    def _stlsReply(self, line: bytes) -> Step:
        if not line.startswith(b"+OK"):
            return Step(close=f"the server refused STLS: {quoted(line)}")
        return Step(upgrade=True)
