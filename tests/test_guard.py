"""
The handshake deadline (handshakeTimeout=) and the cap on handshakes in
progress (maxHandshakes=), against real sockets on loopback.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.logger import LogLevel
from twisted.python.failure import Failure

import securesock
from securesock import DescriptionError, TLSHandshakeError
from securesock._description import parseServer
from securesock._options import HANDSHAKE_TIMEOUT, MAX_HANDSHAKES

from . import rawclients
from .benchscripts import loadBenchScript
from .conftest import PKI
from .logcapture import LogLines
from .peers import listen

ROOT = Path(__file__).resolve().parent.parent


def serverDescription(pki: PKI, **options: object) -> str:
    extra = "".join(f":{name}={value}" for name, value in options.items())
    return f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}:backlog=1024{extra}"


async def until(condition: Any, timeout: float = 5) -> None:
    """Let the reactor run until condition() holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await deferLater(reactor, 0.01, lambda: None)


# --- options -------------------------------------------------------------------


def test_defaults() -> None:
    options = parseServer("tls:8443:certificate=site.pem")
    assert not isinstance(options, str)
    assert (options.handshakeTimeout, options.maxHandshakes) == (HANDSHAKE_TIMEOUT, MAX_HANDSHAKES)
    assert (HANDSHAKE_TIMEOUT, MAX_HANDSHAKES) == (10.0, 1000)


def test_values() -> None:
    options = parseServer("tls://:8443?certificate=site.pem&handshakeTimeout=2.5&maxHandshakes=7")
    assert not isinstance(options, str)
    assert (options.handshakeTimeout, options.maxHandshakes) == (2.5, 7)


@pytest.mark.parametrize(
    "option, message",
    [
        (
            "handshakeTimeout=0",
            "handshakeTimeout='0': out of range; accepted: a number of seconds greater than 0",
        ),
        ("handshakeTimeout=soon", "handshakeTimeout='soon': not a number; accepted: a number of seconds"),
        ("maxHandshakes=0", "maxHandshakes='0': out of range 1..1000000; accepted: 1..1000000"),
        ("maxHandshakes=many", "maxHandshakes='many': not a whole number; accepted: 1..1000000"),
    ],
)
def test_bad_values(option: str, message: str) -> None:
    with pytest.raises(
        DescriptionError, match="^" + message.replace("(", r"\(").replace(".", r"\.")
    ) as caught:
        parseServer(f"tls:8443:certificate=site.pem:{option}")
    assert caught.value.option == option.split("=")[0]


@pytest.mark.parametrize("option", ["handshakeTimeout=5", "maxHandshakes=5"])
def test_server_only(option: str) -> None:
    with pytest.raises(DescriptionError, match="is a server option"):
        securesock.clientFromString(reactor, f"tls:localhost:443:{option}")


# --- the deadline ------------------------------------------------------------------

STALLED = 500
TIMEOUT = 4.0


def _stalledFirstBytes(hellos: list[bytes]) -> Any:
    """Connection i sends: nothing, the first 60 bytes of a ClientHello, or a whole one."""

    def first(i: int) -> bytes:
        kind = i % 3
        return b"" if kind == 0 else hellos[i][:60] if kind == 1 else hellos[i]

    return first


@pytest_twisted.ensureDeferred
async def test_500_stalled_handshakes_are_dropped_and_others_served(pki: PKI, logLines: LogLines) -> None:
    rawclients.raiseFileLimit(2 * STALLED + 200)  # both ends of each connection are in this process
    port = await listen(serverDescription(pki, handshakeTimeout=f"{TIMEOUT:g}", maxHandshakes=2000))
    guard = port.factory.guard
    number = port.getHost().port
    hellos = [rawclients.clientHello() for _ in range(STALLED)]
    try:
        opened = time.monotonic()
        stalled = await deferToThread(
            rawclients.openMany, "127.0.0.1", number, STALLED, _stalledFirstBytes(hellos), 30
        )
        try:
            allOpen = time.monotonic()
            await until(lambda: guard.inProgress == STALLED)
            # A normal client is served while the 500 hang on: not after the
            # deadline has cleared them away (an order, not a speed).
            seconds, reply = await deferToThread(rawclients.normalClient, number, pki.ca_pem)
            assert reply == b"HELLO alpn=none\n"
            # None of the 500 was dropped early, nor before the normal client was served ...
            assert time.monotonic() - allOpen < TIMEOUT - 0.5, "setup too slow to check before the deadline"
            assert all(await deferToThread(rawclients.stillOpen, stalled)), (
                f"the normal client ({seconds:.2f} s) was served only once stalled connections were dropped"
            )
            # ... and every one of them is dropped by the deadline.
            closedAt = await deferToThread(rawclients.waitClosed, stalled, TIMEOUT + 10)
            assert None not in closedAt, f"{closedAt.count(None)} stalled connections were never closed"
            earliest = min(t for t in closedAt if t is not None)
            latest = max(t for t in closedAt if t is not None)
            # None was accepted before `opened`, so none may close before opened + TIMEOUT
            # (a little slack for the clocks), and the last one accepted, before allOpen, not long after.
            assert earliest - opened >= TIMEOUT - 0.25, "closed before the deadline"
            assert latest - allOpen <= TIMEOUT + 5, "closed long after the deadline"
        finally:
            rawclients.closeAll(stalled)
        await until(lambda: guard.inProgress == 0)
        # Logged once each, with the option that did it.
        timedOut = logLines.matching(f"(handshakeTimeout={TIMEOUT:g}); disconnected", level=LogLevel.info)
        assert len(timedOut) == STALLED, timedOut[:3]
        assert len({line.split(": ", 1)[0] for line in timedOut}) == STALLED  # one line per peer
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_the_application_learns_why(pki: PKI) -> None:
    lost: Deferred[None] = Deferred()
    reasons: list[Failure] = []

    class Recorder(Protocol):
        def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
            reasons.append(reason)
            lost.callback(None)

    port = await listen(serverDescription(pki, handshakeTimeout="0.5"), Factory.forProtocol(Recorder))
    try:
        raw = await deferToThread(rawclients.connect, "127.0.0.1", port.getHost().port)
        try:
            await lost
        finally:
            raw.close()
        [reason] = reasons
        assert reason.check(TLSHandshakeError)
        assert "no complete TLS handshake within 0.5 s (handshakeTimeout=0.5)" in str(reason.value)
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_handshake_that_completes_is_not_timed_out(pki: PKI) -> None:
    """An established connection stays open past handshakeTimeout."""
    port = await listen(serverDescription(pki, handshakeTimeout="0.5"))
    try:
        import ssl

        def hold() -> bytes:
            context = ssl.create_default_context(cafile=pki.ca_pem)
            with rawclients.connect("127.0.0.1", port.getHost().port) as raw:
                with context.wrap_socket(raw, server_hostname="localhost") as tls:
                    time.sleep(1.2)  # idle after the handshake, well past the deadline
                    tls.sendall(b"still here\n")
                    return tls.recv(4096)

        assert await deferToThread(hold) == b"STILL HERE alpn=none\n"
    finally:
        await port.stopListening()


# --- the cap ---------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_connections_beyond_the_cap_are_closed_at_once(pki: PKI, logLines: LogLines) -> None:
    port = await listen(serverDescription(pki, maxHandshakes=5, handshakeTimeout=30))
    guard = port.factory.guard
    number = port.getHost().port
    try:
        held = await deferToThread(rawclients.openMany, "127.0.0.1", number, 5, lambda i: b"")
        try:
            await until(lambda: guard.inProgress == 5)
            extra = await deferToThread(rawclients.openMany, "127.0.0.1", number, 3, lambda i: b"")
            # Closed by the cap, not by the deadline (handshakeTimeout=30): well before it.
            closedAt = await deferToThread(rawclients.waitClosed, extra, 10)
            rawclients.closeAll(extra)
            assert None not in closedAt, "a connection beyond maxHandshakes was kept"
            assert all(await deferToThread(rawclients.stillOpen, held)), "the admitted ones must stay"
            with pytest.raises(OSError):
                await deferToThread(rawclients.normalClient, number, pki.ca_pem)
        finally:
            rawclients.closeAll(held)
        await until(lambda: guard.inProgress == 0)
        # Leaving the cap is logged when it happens, not when the next client comes.
        assert logLines.matching("maxHandshakes=5: below the cap again; 4 connection(s) were closed")
        seconds, reply = await deferToThread(rawclients.normalClient, number, pki.ca_pem)
        assert reply == b"HELLO alpn=none\n"
        # A flood is two lines: reaching the cap, and leaving it with the count.
        reached = logLines.matching("maxHandshakes=5 reached", level=LogLevel.warn)
        below = logLines.matching("maxHandshakes=5: below the cap again; 4 connection(s) were closed")
        assert len(reached) == 1 and len(below) == 1, logLines.events
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_completed_handshakes_free_their_place(pki: PKI) -> None:
    """Under maxHandshakes=2, established connections do not count: many clients in turn, two held open."""
    port = await listen(serverDescription(pki, maxHandshakes=2))
    number = port.getHost().port
    try:
        import ssl

        context = ssl.create_default_context(cafile=pki.ca_pem)

        def openTLS() -> Any:
            return context.wrap_socket(rawclients.connect("127.0.0.1", number), server_hostname="localhost")

        held = [await deferToThread(openTLS) for _ in range(2)]
        try:
            for _ in range(6):
                seconds, reply = await deferToThread(rawclients.normalClient, number, pki.ca_pem)
                assert reply == b"HELLO alpn=none\n"
        finally:
            rawclients.closeAll(held)
        assert port.factory.guard.inProgress == 0
    finally:
        await port.stopListening()


# --- measured, not guessed -----------------------------------------------------


def _bench() -> Any:
    return loadBenchScript("handshake_memory")


def test_memory_of_a_handshake_in_progress_is_what_the_docs_say() -> None:
    """
    docs/hardening.md quotes bench/handshake_memory.py: about 54 KiB per
    stalled handshake, which sets maxHandshakes's default.  A small run of the
    same measurement must agree within a factor of two.
    """
    rawclients.raiseFileLimit(1000)
    before, after = _bench().measureKind("full", 300)
    perConnection = (after - before) / 300 / 1024
    assert 27 <= perConnection <= 108, f"{perConnection:.1f} KiB per handshake in progress"
    docs = (ROOT / "docs" / "hardening.md").read_text()
    assert f"| `maxHandshakes=` | {MAX_HANDSHAKES} |" in docs
