"""
Hostile and broken clients against a securesock server: each one gets its
alert or its close, is logged exactly once, and the server goes on serving
(a normal client is served right after each).
"""

from __future__ import annotations

import os
import socket
import ssl
import time
from collections import Counter
from collections.abc import Callable

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.logger import LogLevel

from . import rawclients
from .conftest import PKI
from .logcapture import LogLines
from .peers import listen

# What the client saw: (its local port, as the server logs it; what it received or the error).
Outcome = tuple[int, bytes | str]


def _readAll(raw: socket.socket, timeout: float = 5) -> bytes:
    raw.settimeout(timeout)
    received = b""
    try:
        for _ in range(100):
            chunk = raw.recv(65536)
            if not chunk:
                break
            received += chunk
    except ConnectionResetError:
        pass
    return received


def garbage(port: int) -> Outcome:
    """Bytes that are no TLS at all."""
    with rawclients.connect("127.0.0.1", port) as raw:
        raw.sendall(b"\x00\x01\x02\x03 not a ClientHello \xff\xfe\r\n")
        return raw.getsockname()[1], _readAll(raw)


def garbageRecord(port: int) -> Outcome:
    """A TLS record header (handshake, TLS 1.0) with random bytes as its body."""
    with rawclients.connect("127.0.0.1", port) as raw:
        raw.sendall(b"\x16\x03\x01\x00\x40" + os.urandom(64))
        return raw.getsockname()[1], _readAll(raw)


def sslv2Hello(port: int) -> Outcome:
    """An SSL 2.0 CLIENT-HELLO (the record format, with a 2-byte header)."""
    body = b"\x01\x00\x02\x00\x03\x00\x00\x00\x10" + b"\x01\x00\x80" + os.urandom(16)
    with rawclients.connect("127.0.0.1", port) as raw:
        raw.sendall(bytes([0x80 | (len(body) >> 8), len(body) & 0xFF]) + body)
        return raw.getsockname()[1], _readAll(raw)


def plainHTTP(port: int) -> Outcome:
    with rawclients.connect("127.0.0.1", port) as raw:
        raw.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        return raw.getsockname()[1], _readAll(raw)


def resetMidHandshake(port: int) -> Outcome:
    """Half a ClientHello, then a RST (SO_LINGER 0)."""
    raw = rawclients.connect("127.0.0.1", port, rawclients.clientHello()[:80])
    local = raw.getsockname()[1]
    time.sleep(0.1)  # the server has read the half hello
    rawclients.reset(raw)
    return local, b""


def oldProtocolsOnly(port: int) -> Outcome:
    return rawclients.refusedClient(
        port, minimum=ssl.TLSVersion.TLSv1, maximum=ssl.TLSVersion.TLSv1_1, ciphers="DEFAULT:@SECLEVEL=0"
    )


def weakCiphersOnly(port: int) -> Outcome:
    """TLS 1.2 offering only suites without forward secrecy or AEAD."""
    return rawclients.refusedClient(
        port, maximum=ssl.TLSVersion.TLSv1_2, ciphers="AES128-SHA:AES256-SHA:AES128-GCM-SHA256:@SECLEVEL=0"
    )


# (client, check of what it saw, what the one log line about it says)
CASES: dict[str, tuple[Callable[[int], Outcome], Callable[[bytes | str], bool], str]] = {
    "garbage": (garbage, lambda seen: seen == b"", "not a TLS ClientHello"),
    # 0x15: a TLS alert record, then the close.
    "garbage-record": (garbageRecord, lambda seen: seen[:1] == b"\x15", "TLS handshake failed: "),
    "sslv2-hello": (sslv2Hello, lambda seen: seen == b"", "not a TLS ClientHello"),
    "plain-http": (plainHTTP, lambda seen: seen.startswith(b"HTTP/1.1 400 "), "plain HTTP request"),
    "reset": (resetMidHandshake, lambda seen: True, "TLS handshake failed: the connection was lost"),
    "old-protocols": (
        oldProtocolsOnly,
        lambda seen: "PROTOCOL_VERSION" in str(seen).upper(),
        "TLS handshake failed: unsupported protocol",
    ),
    "weak-ciphers": (
        weakCiphersOnly,
        lambda seen: "HANDSHAKE_FAILURE" in str(seen).upper(),
        "TLS handshake failed: no shared cipher",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest_twisted.ensureDeferred
async def test_hostile_client(pki: PKI, logLines: LogLines, case: str) -> None:
    client, sawExpected, logged = CASES[case]
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}")
    number = port.getHost().port
    try:
        local, seen = await deferToThread(client, number)
        assert sawExpected(seen), f"{case}: the client saw {seen!r}"
        deadline = time.monotonic() + 5
        while not logLines.about(local) and time.monotonic() < deadline:
            await deferLater(reactor, 0.02, lambda: None)
        await deferLater(reactor, 0.2, lambda: None)  # room for a second line, which must not come
        lines = logLines.about(local)
        assert len(lines) == 1, f"{case}: expected one log line about 127.0.0.1:{local}, got {lines}"
        assert logged in lines[0], lines[0]
        assert not [e for e in logLines.events if e[0] in (LogLevel.error, LogLevel.critical)], (
            logLines.events
        )
        # ... and the server goes on serving.
        seconds, reply = await deferToThread(rawclients.normalClient, number, pki.ca_pem)
        assert reply == b"HELLO alpn=none\n"
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_all_at_once_then_served(pki: PKI, logLines: LogLines) -> None:
    """Every kind of hostile client, ten of each, interleaved; then a normal client."""
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}")
    number = port.getHost().port
    try:

        def storm() -> list[int]:
            return [CASES[case][0](number)[0] for _ in range(10) for case in CASES]

        locals_ = await deferToThread(storm)
        # The kernel may give a later client the local port of an earlier one
        # that was reset or closed by the server (no TIME_WAIT on the client's
        # side): such a port is named once per connection that used it.
        expected = Counter(locals_)
        deadline = time.monotonic() + 10
        while any(len(logLines.about(p)) < n for p, n in expected.items()) and time.monotonic() < deadline:
            await deferLater(reactor, 0.05, lambda: None)
        await deferLater(reactor, 0.2, lambda: None)  # room for second lines, which must not come
        counts = {p: len(logLines.about(p)) for p in expected}
        assert counts == dict(expected), counts
        seconds, reply = await deferToThread(rawclients.normalClient, number, pki.ca_pem)
        assert reply == b"HELLO alpn=none\n"
        assert port.factory.guard.inProgress == 0
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_applications_that_log_failures_themselves_are_not_doubled(
    pki: PKI, logLines: LogLines
) -> None:
    """A protocol with logsHandshakeFailures (securesock's twistd protocols) gets the only line."""
    from twisted.internet.protocol import Factory, Protocol

    class SelfLogging(Protocol):
        logsHandshakeFailures = True

    port = await listen(
        f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}", Factory.forProtocol(SelfLogging)
    )
    try:
        local, seen = await deferToThread(garbageRecord, port.getHost().port)
        assert seen[:1] == b"\x15"
        await deferLater(reactor, 0.3, lambda: None)
        assert logLines.about(local) == []
    finally:
        await port.stopListening()
