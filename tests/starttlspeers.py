"""
Peers for the STARTTLS tests: starttls: descriptions for every dialect,
a scripted plaintext server (to play a server that injects bytes or does
not offer the upgrade), a raw blocking client (to pipeline commands as an
attacker would), and an application factory that counts what it built.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import globalLogPublisher

import securesock

from .conftest import PKI
from .peers import Collect, Shout


def serverDescription(pki: PKI, dialect: str, extra: str = "") -> str:
    return f"starttls:0:interface=127.0.0.1:certificate={pki.server_pem}:dialect={dialect}{extra}"


def clientDescription(pki: PKI, port: int, dialect: str, extra: str = "", timeout: float = 10) -> str:
    return f"starttls:127.0.0.1:{port}:trustRoots={pki.ca_pem}:timeout={timeout:g}:dialect={dialect}{extra}"


class Counting(Factory):
    """An application factory that records every protocol it builds."""

    def __init__(self, protocol: Any = Shout) -> None:
        self.protocol = protocol
        self.built: list[Protocol] = []

    def buildProtocol(self, addr: Any) -> Protocol:
        built: Protocol = self.protocol()
        built.factory = self
        self.built.append(built)
        return built


async def listenStartTLS(pki: PKI, dialect: str, factory: Any = None, extra: str = "") -> Any:
    endpoint = securesock.serverFromString(reactor, serverDescription(pki, dialect, extra))
    return await endpoint.listen(factory or Counting())


async def connectStartTLS(pki: PKI, port: int, dialect: str, extra: str = "", timeout: float = 10) -> Collect:
    endpoint = securesock.clientFromString(reactor, clientDescription(pki, port, dialect, extra, timeout))
    collect = Collect()
    await endpoint.connect(Factory.forProtocol(lambda: collect))
    return collect


class Scripted(Protocol):
    """A plaintext server that sends a greeting, then one scripted answer per chunk received."""

    def connectionMade(self) -> None:
        self.answers = list(self.factory.answers)  # type: ignore[attr-defined]
        self.factory.received = []  # type: ignore[attr-defined]
        if self.factory.greeting:  # type: ignore[attr-defined]
            self.transport.write(self.factory.greeting)  # type: ignore[attr-defined,union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.factory.received.append(data)  # type: ignore[attr-defined]
        if self.answers:
            self.transport.write(self.answers.pop(0))  # type: ignore[union-attr]


async def scriptedServer(greeting: bytes, answers: Sequence[bytes]) -> Any:
    factory = Factory.forProtocol(Scripted)
    factory.greeting = greeting  # type: ignore[attr-defined]
    factory.answers = answers  # type: ignore[attr-defined]
    return await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)


def rawSession(port: int, steps: Sequence[bytes], timeout: float = 10) -> list[bytes]:
    """
    Blocking: connect, collect the greeting (if any, within half a second),
    then for each step send it and collect what arrives until a short
    silence or the close.  Returns the greeting and one answer per step;
    a final b"" means the server closed the connection.
    """
    answers: list[bytes] = []
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        for index, step in enumerate([b"", *steps]):
            if step:
                s.sendall(step)
            got = b""
            s.settimeout(0.3)
            waitUntil = min(deadline, time.monotonic() + 0.5) if index == 0 else deadline
            while time.monotonic() < waitUntil:
                try:
                    chunk = s.recv(65536)
                except TimeoutError:
                    if got:
                        break
                    continue
                except ConnectionResetError:
                    chunk = b""
                if not chunk:
                    return [*answers, got, b""]
                got += chunk
            answers.append(got)
    return answers


class LogCapture:
    """Collects formatted log events while a test runs (use as a context manager)."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def __call__(self, event: dict[str, Any]) -> None:
        from twisted.logger import formatEvent

        self.events.append(formatEvent(event))

    def __enter__(self) -> LogCapture:
        globalLogPublisher.addObserver(self)
        return self

    def __exit__(self, *exc: object) -> None:
        globalLogPublisher.removeObserver(self)

    def text(self) -> str:
        return "\n".join(self.events)


def sleep(seconds: float) -> Deferred[None]:
    from twisted.internet.task import deferLater

    return deferLater(reactor, seconds, lambda: None)
