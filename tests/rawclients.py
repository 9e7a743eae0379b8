"""
Hostile and half-finished clients made of raw sockets: ClientHello bytes
from Python's ssl module (its own OpenSSL), sent whole, cut short, or not
at all.  Blocking code: call it from a thread in reactor-driven tests.
Everything is bounded in count and time, and talks to loopback only.
"""

from __future__ import annotations

import resource
import select
import socket
import ssl
import struct
import time
import warnings
from collections.abc import Callable, Sequence

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def clientHello(
    serverName: str = "localhost",
    *,
    minimum: ssl.TLSVersion | None = None,
    maximum: ssl.TLSVersion | None = None,
    ciphers: str | None = None,
) -> bytes:
    """The first flight of a TLS client (its ClientHello record), as bytes."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if minimum is not None:
        context.minimum_version = minimum
    if maximum is not None:
        context.maximum_version = maximum
    if ciphers is not None:
        context.set_ciphers(ciphers)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=serverName)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def raiseFileLimit(needed: int) -> None:
    """Raise the soft limit on open files to at least C{needed}, within the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def connect(host: str, port: int, first: bytes = b"", timeout: float = 5) -> socket.socket:
    """A TCP connection to a loopback server that sends C{first} and then nothing."""
    assert host in LOOPBACK, host
    raw = socket.create_connection((host, port), timeout=timeout)
    if first:
        raw.sendall(first)
    return raw


def openMany(
    host: str, port: int, count: int, first: Callable[[int], bytes], timeout: float = 30
) -> list[socket.socket]:
    """C{count} connections, the i-th sending C{first(i)}; all closed again if any fails."""
    sockets: list[socket.socket] = []
    deadline = time.monotonic() + timeout
    try:
        for i in range(count):
            if time.monotonic() > deadline:
                raise TimeoutError(f"opened only {i} of {count} connections in {timeout} s")
            sockets.append(connect(host, port, first(i)))
    except BaseException:
        closeAll(sockets)
        raise
    return sockets


def closeAll(sockets: Sequence[socket.socket]) -> None:
    for s in sockets:
        s.close()


def reset(raw: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer gets a RST, not a FIN."""
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    raw.close()


def _closedByPeer(raw: socket.socket) -> bool:
    """True: EOF or reset; False: still open (after draining what the server sent)."""
    raw.setblocking(False)
    try:
        while True:
            chunk = raw.recv(65536)
            if not chunk:
                return True
    except BlockingIOError:
        return False
    except (ConnectionResetError, BrokenPipeError):
        return True


def stillOpen(sockets: Sequence[socket.socket]) -> list[bool]:
    """For each socket: has the server kept it open (so far)?"""
    return [_closedByPeer(s) is False for s in sockets]


def waitClosed(sockets: Sequence[socket.socket], timeout: float) -> list[float | None]:
    """
    Wait until the server has closed each socket, up to C{timeout}: for each,
    the time (monotonic) its close was seen, or None if still open.
    """
    seen: list[float | None] = [None] * len(sockets)
    index = {s.fileno(): i for i, s in enumerate(sockets)}
    poller = select.poll()  # not select(): descriptors above 1024 are expected here
    for fd in index:
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    deadline = time.monotonic() + timeout
    while index and time.monotonic() < deadline:
        for fd, _ in poller.poll(50):
            i = index.get(fd)
            if i is not None and _closedByPeer(sockets[i]):
                seen[i] = time.monotonic()
                poller.unregister(fd)
                del index[fd]
    return seen


def normalClient(port: int, cafile: str, host: str = "127.0.0.1", timeout: float = 10) -> tuple[float, bytes]:
    """
    A well-behaved client (Python's ssl, verifying the server): the seconds
    from connect to the complete reply of the Shout test server, and the reply.
    """
    context = ssl.create_default_context(cafile=cafile)
    started = time.monotonic()
    with connect(host, port, timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"hello\n")
            reply = b""
            for _ in range(100):
                chunk = tls.recv(4096)
                if not chunk:
                    break
                reply += chunk
    return time.monotonic() - started, reply


def refusedClient(
    port: int,
    *,
    minimum: ssl.TLSVersion | None = None,
    maximum: ssl.TLSVersion | None = None,
    ciphers: str | None = None,
    timeout: float = 10,
) -> tuple[int, str]:
    """
    A client offering what the server should refuse: its local port (as the
    server logs it) and the error its own OpenSSL reported (the server's alert).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # ssl.TLSVersion.TLSv1 is the point here
        if minimum is not None:
            context.minimum_version = minimum
        if maximum is not None:
            context.maximum_version = maximum
    if ciphers is not None:
        context.set_ciphers(ciphers)
    with connect("127.0.0.1", port, timeout=timeout) as raw:
        localPort = raw.getsockname()[1]
        try:
            with context.wrap_socket(raw, server_hostname="localhost"):
                pass
        except (ssl.SSLError, ConnectionError) as e:
            return localPort, str(e)
    raise AssertionError("the handshake succeeded; the server should have refused it")
