"""
The benchmark's Python servers: one application, three TLS stacks (and two without TLS).

    python3 bench/servers.py securesock|twisted|asyncio|pyopenssl|tcp|plain|bare|bare-close PORT CERT KEY

securesock and twisted run the same Twisted protocol; only the endpoint
differs (securesock's C{tls:} or Twisted's own C{ssl:}).  asyncio runs the
same commands on C{asyncio} with the standard library's C{ssl}.  pyopenssl
is the floor of the stack securesock and C{ssl:} share: a blocking,
single-threaded pyOpenSSL server on the accepted socket (OpenSSL's socket
BIO, no memory BIO, no event loop), one connection at a time, with a
context configured like securesock's.  tcp and plain serve the same
commands without TLS (CERT and KEY unused), for bench/transport_floor.py:
tcp is the Twisted protocol on Twisted's own C{tcp:} endpoint, plain a
blocking loop of one connection at a time, as pyopenssl's.  bare and
bare-close are the least a TLS layer on Twisted's transport can be
(pages only; see bareServer).  The commands
(the first line of each connection; bench/loadgen.c speaks them):

  E           echo everything that follows
  S n         send n bytes (with back-pressure)
  R n         read n bytes, answer OK
  GET ...     an HTTP/1.0 page, then close (openssl s_time -www)

Prints "READY <port>" when listening; runs until stopped (by its PID) or
for at most an hour.
"""

from __future__ import annotations

import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

CHUNK = b"s" * (1 << 18)
PAGE = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nhello\n"
LIFETIME = 3600.0


def twistedServer(kind: str, port: int, cert: str, key: str) -> None:
    from twisted.internet import reactor
    from twisted.internet.interfaces import IPushProducer
    from twisted.internet.protocol import Factory, Protocol
    from zope.interface import implementer

    @implementer(IPushProducer)
    class Bench(Protocol):
        mode = b""
        head = b""
        remaining = 0
        paused = False

        def dataReceived(self, data: bytes) -> None:
            mode = self.mode
            if mode == b"E":
                self.transport.write(data)
                return
            if mode == b"R":
                self.remaining -= len(data)
                if self.remaining <= 0:
                    self.mode = b"done"
                    self.transport.write(b"OK\n")
                return
            if mode:
                return
            self.head += data
            if b"\n" not in self.head:
                if len(self.head) > 4096:
                    self.transport.loseConnection()
                return
            line, rest = self.head.split(b"\n", 1)
            self.head = b""
            if line.startswith(b"GET"):
                self.mode = b"done"
                self.transport.write(PAGE)
                self.transport.loseConnection()
            elif line == b"E":
                self.mode = b"E"
                if rest:
                    self.transport.write(rest)
            elif line.startswith(b"S "):
                self.mode = b"S"
                self.remaining = int(line[2:])
                self.transport.registerProducer(self, True)
                self.resumeProducing()
            elif line.startswith(b"R "):
                self.mode = b"R"
                self.remaining = int(line[2:])
                self.dataReceived(rest)
            else:
                self.transport.loseConnection()

        def pauseProducing(self) -> None:
            self.paused = True

        def resumeProducing(self) -> None:
            self.paused = False
            write = self.transport.write
            for _ in range(100000):  # bounded; the transport pauses us long before
                if self.paused or self.remaining <= 0:
                    break
                if self.remaining >= len(CHUNK):
                    write(CHUNK)
                else:
                    write(CHUNK[: self.remaining])
                self.remaining -= len(CHUNK)
            if self.remaining <= 0 and self.mode == b"S":
                self.mode = b"done"
                self.transport.unregisterProducer()

        def stopProducing(self) -> None:
            self.remaining = 0

    if kind == "securesock":
        import securesock

        endpoint = securesock.serverFromString(
            reactor,
            f"tls:{port}:interface=127.0.0.1:certificate={cert}:privateKey={key}:backlog=4096:"
            "maxHandshakes=100000:handshakeTimeout=600",
        )
    else:
        from twisted.internet.endpoints import serverFromString

        if kind == "tcp":  # no TLS: what Twisted's event loop and TCP transport cost alone
            description = f"tcp:{port}:interface=127.0.0.1:backlog=4096"
        else:
            description = f"ssl:{port}:interface=127.0.0.1:certKey={cert}:privateKey={key}:backlog=4096"
        endpoint = serverFromString(reactor, description)
    runTwisted(endpoint, Factory.forProtocol(Bench))


def runTwisted(endpoint: Any, factory: Any) -> None:
    """Listen with C{factory} on C{endpoint}, say READY and the port, and run the reactor for at most LIFETIME."""
    from twisted.internet import reactor

    factory.noisy = False

    def ready(listening: Any) -> None:
        print("READY", listening.getHost().port, flush=True)

    endpoint.listen(factory).addCallback(ready)
    reactor.callLater(LIFETIME, reactor.stop)
    reactor.run()


def bareServer(kind: str, port: int, cert: str, key: str) -> None:
    """
    The least a memory-BIO TLS layer on Twisted's TCP transport can be, to
    compare securesock's with: a protocol on Twisted's C{tcp:} endpoint that
    feeds one pyOpenSSL connection (the floor's context) and serves only
    the C{GET} page of C{openssl s_time -www}, with none of a real layer's
    duties (no producers, half-close, ALPN, handshake notification, errors
    reported, writes before the handshake).  C{bare} then waits for the
    client's close_notify (or its close) before closing, as Twisted's TLS
    and securesock do; C{bare-close} closes at once, as the floor does.
    """
    from OpenSSL import SSL
    from twisted.internet.endpoints import serverFromString
    from twisted.internet.protocol import Factory, Protocol

    context = floorContext(cert, key)
    waits = kind == "bare"

    class Bare(Protocol):
        head = b""
        answered = False

        def connectionMade(self) -> None:
            self.tls = SSL.Connection(context, None)
            self.tls.set_accept_state()
            self.transport.setTcpNoDelay(True)  # type: ignore[attr-defined]  # as securesock and the floor

        def flush(self) -> None:
            out = []
            for _ in range(1000):  # bounded; the send BIO empties long before
                try:
                    out.append(self.tls.bio_read(65536))
                except SSL.WantReadError:
                    break
            if out:
                self.transport.write(b"".join(out))  # type: ignore[union-attr]

        def dataReceived(self, data: bytes) -> None:
            tls = self.tls
            tls.bio_write(data)
            try:
                for _ in range(1000):  # bounded; a read ends in WantReadError long before
                    chunk = tls.recv(32768)
                    if self.answered:
                        continue
                    self.head += chunk
                    if b"\n" in self.head:
                        self.answered = True
                        tls.sendall(PAGE)
                        tls.shutdown()  # our close_notify
                        self.flush()
                        if not waits:
                            self.transport.loseConnection()  # type: ignore[union-attr]
                        return
            except SSL.WantReadError:
                self.flush()
            except SSL.ZeroReturnError:  # the client's close_notify
                self.flush()
                self.transport.loseConnection()  # type: ignore[union-attr]
            except SSL.Error:
                self.transport.loseConnection()  # type: ignore[union-attr]

    from twisted.internet import reactor

    runTwisted(
        serverFromString(reactor, f"tcp:{port}:interface=127.0.0.1:backlog=4096"), Factory.forProtocol(Bare)
    )


def asyncioServer(port: int, cert: str, key: str) -> None:
    import asyncio
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    class Bench(asyncio.Protocol):
        mode = b""
        head = b""
        remaining = 0
        paused = False

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: asyncio.Transport = transport  # type: ignore[assignment]

        def data_received(self, data: bytes) -> None:
            mode = self.mode
            if mode == b"E":
                self.transport.write(data)
                return
            if mode == b"R":
                self.remaining -= len(data)
                if self.remaining <= 0:
                    self.mode = b"done"
                    self.transport.write(b"OK\n")
                return
            if mode:
                return
            self.head += data
            if b"\n" not in self.head:
                if len(self.head) > 4096:
                    self.transport.close()
                return
            line, rest = self.head.split(b"\n", 1)
            self.head = b""
            if line.startswith(b"GET"):
                self.mode = b"done"
                self.transport.write(PAGE)
                self.transport.close()
            elif line == b"E":
                self.mode = b"E"
                if rest:
                    self.transport.write(rest)
            elif line.startswith(b"S "):
                self.mode = b"S"
                self.remaining = int(line[2:])
                self.resume_writing()
            elif line.startswith(b"R "):
                self.mode = b"R"
                self.remaining = int(line[2:])
                self.data_received(rest)
            else:
                self.transport.close()

        def pause_writing(self) -> None:
            self.paused = True

        def resume_writing(self) -> None:
            self.paused = False
            for _ in range(100000):
                if self.paused or self.remaining <= 0 or self.transport.is_closing():
                    break
                self.transport.write(CHUNK if self.remaining >= len(CHUNK) else CHUNK[: self.remaining])
                self.remaining -= len(CHUNK)

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(
            Bench, "127.0.0.1", port, ssl=context, backlog=4096
        )
        print("READY", server.sockets[0].getsockname()[1], flush=True)
        await asyncio.sleep(LIFETIME)

    asyncio.run(main())


def floorContext(cert: str, key: str) -> Any:
    """
    The floors' server context, as securesock's (securesock/_context.py): a
    TLS 1.2 session cache with a session id context, OpenSSL's tickets
    (default: on), released buffers, and whole writes (pyOpenSSL turns
    partial writes on, which would stop every SSL_write after one 16 KiB
    record).
    """
    from OpenSSL import SSL

    context = SSL.Context(SSL.TLS_METHOD)
    context.use_certificate_file(cert)
    context.use_privatekey_file(key)
    context.check_privatekey()
    context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION | SSL.OP_CIPHER_SERVER_PREFERENCE)
    context.set_session_id(b"bench")
    context.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
    context.set_mode(SSL.MODE_RELEASE_BUFFERS)
    context.clear_mode(0x1)  # SSL_MODE_ENABLE_PARTIAL_WRITE
    return context


def pyopensslServer(port: int, cert: str, key: str) -> None:
    """
    The floor: what pyOpenSSL itself costs per handshake and per byte, with
    no event loop.  Serves one connection at a time (so no concurrent loads:
    echo with 50 clients, TTFB and idle memory are not measured on it).
    """
    from OpenSSL import SSL

    context = floorContext(cert, key)
    view = memoryview(CHUNK)

    def serve(conn: SSL.Connection) -> None:
        conn.set_accept_state()
        conn.do_handshake()
        head = b""
        while b"\n" not in head:
            head += conn.recv(4096)
            if len(head) > 4096:
                return
        line, rest = head.split(b"\n", 1)
        if line.startswith(b"GET"):
            conn.sendall(PAGE)
            conn.shutdown()
            return
        if line == b"E":
            if rest:
                conn.sendall(rest)
            while time.monotonic() < deadline:
                conn.sendall(conn.recv(1 << 16))
            return
        if line.startswith(b"S "):
            remaining = int(line[2:])
            while remaining > 0:
                conn.sendall(view[: min(remaining, len(CHUNK))])
                remaining -= len(CHUNK)
        elif line.startswith(b"R "):
            remaining = int(line[2:]) - len(rest)
            while remaining > 0:
                remaining -= len(conn.recv(1 << 16))
            conn.sendall(b"OK\n")
        else:
            return
        # until the client closes (as the other servers, which close when the client does)
        while time.monotonic() < deadline:
            conn.recv(1 << 16)

    def handle(sock: socket.socket) -> None:
        conn = SSL.Connection(context, sock)  # OpenSSL reads and writes the descriptor itself
        try:
            serve(conn)
        except SSL.ZeroReturnError:  # the client's close_notify: answer it
            conn.shutdown()

    deadline = time.monotonic() + LIFETIME
    # errors that end their connection only: peer reset, EOF without close_notify, bad command, timeout
    oneAtATime("pyopenssl", port, deadline, handle, (SSL.Error, OSError, ValueError))


def plainServer(port: int) -> None:
    """
    The floor of plain TCP: the pyopenssl floor's loop without TLS (one
    connection at a time, blocking, no event loop), serving pages and echo:
    what the pyopenssl floor costs above it is what TLS itself costs.
    """

    def handle(sock: socket.socket) -> None:
        head = b""
        while b"\n" not in head and len(head) <= 4096:
            data = sock.recv(4096)
            if not data:
                return
            head += data
        line, _, rest = head.partition(b"\n")
        if line.startswith(b"GET"):
            sock.sendall(PAGE)
        elif line == b"E":
            if rest:
                sock.sendall(rest)
            while time.monotonic() < deadline and (data := sock.recv(1 << 16)):
                sock.sendall(data)

    deadline = time.monotonic() + LIFETIME
    oneAtATime("plain", port, deadline, handle, (OSError,))  # peer reset, timeout: that connection only


def oneAtATime(
    name: str,
    port: int,
    deadline: float,
    handle: Callable[[socket.socket], None],
    quiet: tuple[type[Exception], ...],
) -> None:
    """
    The floors' loop: accept on 127.0.0.1 and C{handle} each connection in
    turn (a blocking socket, TCP_NODELAY, 30 s per call) until C{deadline}.
    An error of C{quiet} ends its connection silently; any other is printed
    and ends its connection too, never the server.
    """
    timeouts = struct.pack("ll", 30, 0)  # per blocking call on a connection (SO_RCVTIMEO / SO_SNDTIMEO)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(4096)
    print("READY", listener.getsockname()[1], flush=True)
    while (left := deadline - time.monotonic()) > 0:
        listener.settimeout(left)
        try:
            sock, _ = listener.accept()
        except TimeoutError:
            break
        except OSError:  # e.g. ECONNABORTED, EMFILE: try again
            time.sleep(0.01)
            continue
        try:
            sock.setblocking(True)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeouts)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeouts)
            handle(sock)
        except quiet:
            pass
        except Exception as e:  # anything else ends this connection too, not the server
            print(f"{name} server: {e!r}", file=sys.stderr, flush=True)
        finally:
            sock.close()


# Each kind of server, and how to run it: (kind, port, cert, key).  bench/run.py starts these.
SERVERS: dict[str, Callable[[str, int, str, str], None]] = {
    "securesock": twistedServer,
    "twisted": twistedServer,
    "tcp": twistedServer,
    "asyncio": lambda kind, port, cert, key: asyncioServer(port, cert, key),
    "pyopenssl": lambda kind, port, cert, key: pyopensslServer(port, cert, key),
    "plain": lambda kind, port, cert, key: plainServer(port),
    "bare": bareServer,
    "bare-close": bareServer,
}


def main() -> None:
    kind, port, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    if kind not in SERVERS:
        raise SystemExit(f"unknown server kind {kind!r}: one of {', '.join(SERVERS)}")
    SERVERS[kind](kind, port, cert, key)


if __name__ == "__main__":
    main()
