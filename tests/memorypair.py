"""
Two pyOpenSSL connections joined by their memory BIOs, in one process: a
server connection made by a securesock endpoint's creator (as Twisted's TLS
layer gets it) and a plain pyOpenSSL client.  For tests/test_bio.py and
bench/bio_calls.py, which drive OpenSSL's calls one by one without sockets.
"""

from __future__ import annotations

from typing import Any

from OpenSSL import SSL
from twisted.internet import reactor

import securesock
from securesock._rehearsal import moveAll  # the same move as the package's rehearsal


def serverConnection(certificate: str, protocols: str, more: str = "") -> SSL.Connection:
    """A server connection of C{tls:...:certificate=CERTIFICATE:protocols=PROTOCOLS<more>}."""
    endpoint: Any = securesock.serverFromString(
        reactor, f"tls:0:interface=127.0.0.1:certificate={certificate}:protocols={protocols}{more}"
    )
    connection: SSL.Connection = endpoint.creator.serverConnectionForTLS(None)
    connection.set_accept_state()  # as Twisted's TLS layer does with what a server's creator makes
    return connection


def clientConnection(version: int) -> SSL.Connection:
    """A plain pyOpenSSL client (not securesock's), of one TLS version, offering ALPN."""
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(version)
    context.set_max_proto_version(version)
    connection = SSL.Connection(context, None)
    connection.set_connect_state()
    connection.set_alpn_protos([b"http/1.1"])
    return connection


def handshake(client: SSL.Connection, server: SSL.Connection) -> None:
    """Both sides' handshakes to the end (at most 10 round trips), or the error that stopped them."""
    for _ in range(10):
        for connection in (client, server):
            try:
                connection.do_handshake()
            except SSL.WantReadError:
                pass
        moved = moveAll(client, server) | moveAll(server, client)
        if not moved:
            break
    server.do_handshake()  # done: returns at once, or raises what went wrong
    client.do_handshake()


def readAll(connection: SSL.Connection, expected: int) -> bytes:
    """At least C{expected} application bytes (at most 100 reads), or what arrived before WantReadError."""
    received = b""
    for _ in range(100):
        if len(received) >= expected:
            break
        received += connection.recv(2**15)
    return received
