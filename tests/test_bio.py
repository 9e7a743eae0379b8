"""
securesock._bio: the data path's OpenSSL calls, made without pyOpenSSL's
per-call wrapper, give what pyOpenSSL's methods give (bytes, counts and
the same exceptions), on a real TLS connection between two pyOpenSSL
connections with memory BIOs, the server's built by a securesock
endpoint.  And the condition that makes skipping pyOpenSSL's callback
checks exact holds: no connection of securesock's starts a second
handshake.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from OpenSSL import SSL
from twisted.internet import reactor

import securesock
from securesock import _bio

from .conftest import PKI
from .memorypair import clientConnection, handshake, readAll, serverConnection
from .storekit import StoreKit


def oneRecord(decryptRecords: Callable[[SSL.Connection, int], tuple[bytes, Any]]) -> Callable[..., bytes]:
    """C{decryptRecords} as a C{recv}: one record's bytes, or its error raised."""

    def decrypt(connection: SSL.Connection, size: int) -> bytes:
        data, error = decryptRecords(connection, 1)
        if error is not None:
            assert data == b""  # one record asked: it is read, or the error comes alone
            raise error
        return data

    return decrypt


FAST = (_bio.feed, _bio.drain, oneRecord(_bio.decryptRecords), _bio.encrypt)
PUBLIC = (_bio.publicFeed, _bio.publicDrain, _bio.publicDecrypt, _bio.publicEncrypt)


def test_the_fast_calls_are_in_use() -> None:
    """With the pyOpenSSL installed, the data path does not fall back to the public methods."""
    assert _bio.FAST, "this pyOpenSSL lacks an internal securesock._bio uses: read its docstring"
    assert _bio.decryptRecords is not _bio.publicDecryptRecords
    assert (_bio.feed, _bio.drain, _bio.encrypt) != (_bio.publicFeed, _bio.publicDrain, _bio.publicEncrypt)


MISSING = [
    pytest.param(SSL, "_lib", id="no cffi bindings"),
    pytest.param(SSL.Connection, "_handle_bio_errors", id="no BIO error handler"),
    pytest.param(SSL.Connection, "_raise_ssl_error", id="no SSL error handler"),
]


@pytest.mark.parametrize("owner, name", MISSING)
def test_a_pyopenssl_without_an_internal_gets_the_public_methods(
    owner: Any, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The import-time check: if pyOpenSSL lacks something the fast calls use, every call is the method."""
    monkeypatch.delattr(owner, name)
    try:
        importlib.reload(_bio)
        assert not _bio.FAST
        assert (_bio.feed, _bio.drain, _bio.decryptRecords, _bio.encrypt) == (
            _bio.publicFeed,
            _bio.publicDrain,
            _bio.publicDecryptRecords,
            _bio.publicEncrypt,
        )
    finally:
        monkeypatch.undo()
        importlib.reload(_bio)  # as imported: securesock._handshake holds the functions it imported then
    assert _bio.FAST


Outcome = tuple[str, Any]


def outcome(call: Callable[[], Any]) -> Outcome:
    """What a call gave: its result, or its exception's type and arguments."""
    try:
        return ("returned", call())
    except SSL.Error as e:
        return (type(e).__name__, e.args)


def session(pki: PKI, calls: tuple[Any, ...], version: int) -> list[Outcome]:
    """One connection's data path driven through C{calls}: each step's outcome."""
    feed, drain, decrypt, encrypt = calls
    protocols = "TLS1_3" if version == SSL.TLS1_3_VERSION else "TLS1_2"
    server, client = serverConnection(pki.server_pem, protocols), clientConnection(version)
    handshake(client, server)
    steps = [outcome(lambda: decrypt(server, 2**15))]  # nothing received: WantReadError
    client.send(b"hello")
    records = bytearray(client.bio_read(2**16))
    steps.append(outcome(lambda: feed(server, memoryview(records))))  # a view, as securesock._reads gives
    steps.append(outcome(lambda: decrypt(server, 2**15)))
    steps.append(outcome(lambda: decrypt(server, 2**15)))  # all read: WantReadError
    big = bytes(range(256)) * 300
    steps.append(outcome(lambda: encrypt(server, memoryview(big)[: 2**16])))  # 64 KiB into records
    steps.append(outcome(lambda: encrypt(server, b"tail")))
    sent = drain(server, 2**17)
    client.bio_write(sent)
    steps.append(("client read", readAll(client, 2**16 + 4) == big[: 2**16] + b"tail"))
    steps.append(outcome(lambda: drain(server, 2**10)))  # empty: WantReadError
    client.send(b"tampered")
    tampered = bytearray(client.bio_read(2**16))
    tampered[-1] ^= 1
    feed(server, bytes(tampered))
    steps.append(outcome(lambda: decrypt(server, 2**15)))  # bad record MAC: SSL.Error
    return steps


def ending(pki: PKI, calls: tuple[Any, ...], version: int, how: str) -> Outcome:
    """The outcome of reading after the client's close_notify, or after the end of input."""
    feed, _, decrypt, _ = calls
    protocols = "TLS1_3" if version == SSL.TLS1_3_VERSION else "TLS1_2"
    server, client = serverConnection(pki.server_pem, protocols), clientConnection(version)
    handshake(client, server)
    if how == "close_notify":
        client.shutdown()
        feed(server, client.bio_read(2**16))
    else:
        server.bio_shutdown()
    return outcome(lambda: decrypt(server, 2**15))


VERSIONS = [pytest.param(SSL.TLS1_2_VERSION, id="TLS1_2"), pytest.param(SSL.TLS1_3_VERSION, id="TLS1_3")]


@pytest.mark.parametrize("version", VERSIONS)
def test_the_fast_calls_give_what_pyopenssls_methods_give(pki: PKI, version: int) -> None:
    fast, public = session(pki, FAST, version), session(pki, PUBLIC, version)
    assert fast == public
    assert [step[0] for step in fast] == [
        "WantReadError",
        "returned",
        "returned",
        "WantReadError",
        "returned",
        "returned",
        "client read",
        "WantReadError",
        "Error",
    ]
    assert fast[2][1] == b"hello" and fast[4][1] == 2**16 and fast[5][1] == 4 and fast[6][1] is True
    assert "bad record mac" in str(fast[8][1]) or "decryption failed" in str(fast[8][1])


@pytest.mark.parametrize("how", ["close_notify", "end of input"])
@pytest.mark.parametrize("version", VERSIONS)
def test_the_end_of_a_connection_raises_what_pyopenssl_raises(pki: PKI, version: int, how: str) -> None:
    fast, public = ending(pki, FAST, version, how), ending(pki, PUBLIC, version, how)
    assert fast == public
    expected = "ZeroReturnError" if how == "close_notify" else "SysCallError"
    assert fast[0] == expected


def readRecords(decryptRecords: Callable[..., Any], server: SSL.Connection, records: int) -> Outcome:
    """The outcome of C{decryptRecords}: the bytes and the error's type and arguments (or what it raised)."""

    def call() -> tuple[bytes, Any]:
        data, error = decryptRecords(server, records)
        return data, None if error is None else (type(error).__name__, error.args)

    return outcome(call)


def batches(pki: PKI, decryptRecords: Callable[..., Any], version: int) -> list[Outcome]:
    """Records read four at a time: what arrived whole, then what stopped the reading."""
    protocols = "TLS1_3" if version == SSL.TLS1_3_VERSION else "TLS1_2"
    server, client = serverConnection(pki.server_pem, protocols), clientConnection(version)
    handshake(client, server)
    steps = [readRecords(decryptRecords, server, 4)]  # nothing received: WantReadError
    for word in (b"one", b"two", b"three"):  # three records
        client.send(word)
    server.bio_write(client.bio_read(2**16))
    steps.append(readRecords(decryptRecords, server, 4))  # all three, then WantReadError
    client.sendall(BIG)  # five records
    server.bio_write(client.bio_read(2**18))
    steps.append(readRecords(decryptRecords, server, 4))  # four whole records
    steps.append(readRecords(decryptRecords, server, 4))  # the fifth, then WantReadError
    client.send(b"last")
    client.shutdown()
    server.bio_write(client.bio_read(2**16))
    steps.append(readRecords(decryptRecords, server, 4))  # b"last", then the close_notify
    steps.append(readRecords(decryptRecords, server, 4))  # only the close_notify
    return steps


BIG = bytes(range(256)) * 320  # 80 KiB: five records


@pytest.mark.parametrize("version", VERSIONS)
def test_records_read_together_give_what_pyopenssls_recv_gives(pki: PKI, version: int) -> None:
    fast, public = (
        batches(pki, _bio.decryptRecords, version),
        batches(pki, _bio.publicDecryptRecords, version),
    )
    assert fast == public
    assert fast == [
        ("returned", (b"", ("WantReadError", ()))),
        ("returned", (b"onetwothree", ("WantReadError", ()))),
        ("returned", (BIG[: 4 * _bio.RECORD], None)),
        ("returned", (BIG[4 * _bio.RECORD :], ("WantReadError", ()))),
        ("returned", (b"last", ("ZeroReturnError", ()))),
        ("returned", (b"", ("ZeroReturnError", ()))),
    ]


def brokenBatch(pki: PKI, decryptRecords: Callable[..., Any], version: int, how: str) -> Outcome:
    """A good record, then a tampered one or the end of input, read together."""
    protocols = "TLS1_3" if version == SSL.TLS1_3_VERSION else "TLS1_2"
    server, client = serverConnection(pki.server_pem, protocols), clientConnection(version)
    handshake(client, server)
    client.send(b"good")
    received = client.bio_read(2**16)
    if how == "tampered":
        client.send(b"tampered")
        tampered = bytearray(client.bio_read(2**16))
        tampered[-1] ^= 1
        received += bytes(tampered)
    server.bio_write(received)
    if how == "end of input":
        server.bio_shutdown()
    return readRecords(decryptRecords, server, 4)


@pytest.mark.parametrize("how", ["tampered", "end of input"])
@pytest.mark.parametrize("version", VERSIONS)
def test_the_records_before_an_error_come_with_it(pki: PKI, version: int, how: str) -> None:
    """What arrived before a bad record or the end of input is returned, with the error pyOpenSSL raises."""
    fast = brokenBatch(pki, _bio.decryptRecords, version, how)
    assert fast == brokenBatch(pki, _bio.publicDecryptRecords, version, how)
    kind, (data, (errorType, errorArgs)) = fast
    assert (kind, data) == ("returned", b"good")
    if how == "tampered":
        assert errorType == "Error"
        assert "bad record mac" in str(errorArgs) or "decryption failed" in str(errorArgs)
    else:
        assert (errorType, errorArgs) == ("SysCallError", (-1, "Unexpected EOF"))


@pytest.mark.parametrize("version", VERSIONS)
def test_the_errors_returned_hold_no_frames(pki: PKI, version: int) -> None:
    """
    No traceback on what decryptRecords returns: its frames would hold the
    TLS layer's locals, the error among them, in a cycle that only the
    garbage collector frees (measured: several percent more CPU per
    connection).  Nothing waiting, a bad record, a close_notify.
    """
    protocols = "TLS1_3" if version == SSL.TLS1_3_VERSION else "TLS1_2"
    server, client = serverConnection(pki.server_pem, protocols), clientConnection(version)
    handshake(client, server)
    errors = [_bio.decryptRecords(server, 4)[1]]
    client.send(b"tampered")
    tampered = bytearray(client.bio_read(2**16))
    tampered[-1] ^= 1
    server.bio_write(bytes(tampered))
    errors.append(_bio.decryptRecords(server, 4)[1])
    server, client = serverConnection(pki.server_pem, protocols), clientConnection(version)
    handshake(client, server)
    client.shutdown()
    server.bio_write(client.bio_read(2**16))
    errors.append(_bio.decryptRecords(server, 4)[1])
    assert [type(error) for error in errors] == [SSL.WantReadError, SSL.Error, SSL.ZeroReturnError]
    assert [error.__traceback__ for error in errors if error is not None] == [None, None, None]


def test_a_renegotiation_is_refused_without_a_second_handshake(pki: PKI) -> None:
    """
    A TLS 1.2 client asks to renegotiate: the server's SSL_read (the fast
    one) does not start a handshake, so no callback of pyOpenSSL's (here
    ALPN selection) can run after the handshake; the client is told no.
    """
    server, client = (
        serverConnection(pki.server_pem, "TLS1_2", ":alpn=http/1.1"),
        clientConnection(SSL.TLS1_2_VERSION),
    )
    handshake(client, server)
    assert server.get_alpn_proto_negotiated() == b"http/1.1"
    assert client.renegotiate()
    with pytest.raises(SSL.WantReadError):
        client.do_handshake()
    _bio.feed(server, client.bio_read(2**16))
    data, error = _bio.decryptRecords(
        server, 1
    )  # the ClientHello was answered with an alert, not a ServerHello
    assert (data, type(error)) == (b"", SSL.WantReadError)
    assert server.total_renegotiations() == 0
    client.bio_write(server.bio_read(2**16))
    with pytest.raises(SSL.Error, match="no renegotiation"):
        client.do_handshake()


def test_every_context_securesock_builds_refuses_renegotiation(pki: PKI, tmp_path: Path) -> None:
    kit = StoreKit(tmp_path / "store")
    kit.addCA("root-ca.pem")
    kit.add("a.pem", ["localhost"])
    kit.add("b.pem", ["b.example"])
    server: Any = securesock.serverFromString(reactor, f"tls:0:certificate={pki.server_pem}")
    sni: Any = securesock.serverFromString(reactor, f"tls:0:certificate=a,b:store={kit.root}")
    legacy: Any = securesock.serverFromString(
        reactor, f"tls:0:certificate={pki.server_pem}:protocols=TLS1+TLS1_2"
    )
    client: Any = securesock.clientFromString(reactor, f"tls:localhost:1:caCerts={pki.ca_pem}")
    contexts = [
        server.creator.context,
        legacy.creator.context,
        sni.creator.context,
        *sni.creator.chooser.served.byName.values(),
        client.creator._context,
    ]
    # SNI: a context per certificate, the first also the default
    assert len({id(context) for context in contexts}) == 5
    for context in contexts:
        assert context.set_options(0) & SSL.OP_NO_RENEGOTIATION  # set_options returns the options in force
