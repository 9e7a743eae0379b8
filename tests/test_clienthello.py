"""securesock._clienthello: the server name read from real ClientHellos OpenSSL writes."""

from __future__ import annotations

import pytest
from OpenSSL import SSL

from securesock._clienthello import UNREADABLE, requestedServerName


def clientHello(name: bytes | None = None, maximum: int | None = None) -> bytes:
    context = SSL.Context(SSL.TLS_METHOD)
    if maximum is not None:
        context.set_max_proto_version(maximum)
    connection = SSL.Connection(context, None)
    connection.set_connect_state()
    if name is not None:
        connection.set_tlsext_host_name(name)
    with pytest.raises(SSL.WantReadError):
        connection.do_handshake()
    return connection.bio_read(2**16)


def inRecords(hello: bytes, cut: int) -> bytes:
    """The same ClientHello carried by two handshake records, cut at C{cut}."""
    body = hello[5:]

    def record(payload: bytes) -> bytes:
        return bytes([0x16]) + hello[1:3] + len(payload).to_bytes(2, "big") + payload

    return record(body[:cut]) + record(body[cut:])


@pytest.mark.parametrize("maximum", [None, SSL.TLS1_2_VERSION])
def test_the_name_asked_for(maximum: int | None) -> None:
    assert requestedServerName(clientHello(b"www.example.com", maximum)) == b"www.example.com"


def test_no_name_asked_for() -> None:
    assert requestedServerName(clientHello()) is None


def test_a_client_hello_in_two_records() -> None:
    hello = clientHello(b"split.example")
    for cut in (1, 50, len(hello) - 10):
        assert requestedServerName(inRecords(hello, cut)) == b"split.example"


@pytest.mark.parametrize(
    "data",
    [b"", b"GET / HTTP/1.1\r\n", b"\x16\x03\x01\x00\x05\x01\x00", b"\x15\x03\x03\x00\x02\x02\x28"],
)
def test_what_is_not_a_whole_client_hello_is_unreadable(data: bytes) -> None:
    assert requestedServerName(data) is UNREADABLE


def test_a_client_hello_cut_short_is_unreadable() -> None:
    hello = clientHello(b"www.example.com")
    for end in (5, 40, len(hello) // 2, len(hello) - 1):
        assert requestedServerName(hello[:end]) is UNREADABLE
