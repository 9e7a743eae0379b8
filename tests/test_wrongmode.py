"""
Wrong-mode diagnostics as words: what a tls: client says when a server
answered in plaintext, what a tls: server logs when a client spoke
plaintext.  (Over the wire: test_starttls.py and tests/interop/.)
"""

from __future__ import annotations

import pytest

from securesock._wrongmode import (
    HTTP_400,
    isHTTPRequest,
    isTLSRecord,
    plaintextFromClient,
    plaintextFromServer,
)
from securesock.dialects.ldap import startTLSRequest
from securesock.dialects.postgres import SSL_REQUEST
from securesock.dialects.xmpp import Client as XMPPClient

from .rawclients import clientHello

PEER = "127.0.0.1:4242"


@pytest.mark.parametrize(
    ("banner", "what", "dialect"),
    [
        (b"220 mail.example.com ESMTP Postfix\r\n", "an SMTP server's greeting", "smtp"),
        (b"220-mx.example.com ESMTP\r\n220 ready\r\n", "an SMTP server's greeting", "smtp"),
        (b"* OK [CAPABILITY IMAP4rev1 STARTTLS] Dovecot ready.\r\n", "an IMAP server's greeting", "imap"),
        (b"+OK Dovecot ready.\r\n", "a POP3 server's greeting", "pop3"),
        (b"220 (vsFTPd 3.0.3)\r\n", "an FTP server's greeting", "ftp"),
        (b"220 ProFTPD Server (Debian) [::ffff:127.0.0.1]\r\n", "an FTP server's greeting", "ftp"),
    ],
)
def test_server_banners_name_the_dialect(banner: bytes, what: str, dialect: str) -> None:
    message = plaintextFromServer(banner, PEER)
    assert message is not None
    first = banner.split(b"\r\n", 1)[0].decode()
    assert message.startswith(f"{PEER} answered in plaintext, not TLS: it sent {first!r}")
    assert f"which looks like {what}" in message
    assert f"connect with starttls:HOST:PORT:dialect={dialect}" in message


def test_ambiguous_220_suggests_both() -> None:
    message = plaintextFromServer(b"220 ready\r\n", PEER)
    assert message is not None and "dialect=smtp or dialect=ftp" in message


@pytest.mark.parametrize(
    "banner", [b"HTTP/1.1 400 Bad Request\r\n", b"SSH-2.0-OpenSSH_9.2\r\n", b"hello\r\n"]
)
def test_other_plaintext_servers_are_not_starttls(banner: bytes) -> None:
    message = plaintextFromServer(banner, PEER)
    assert message is not None and "does not speak TLS from the start" in message
    assert "dialect=" not in message


def test_tls_from_the_server_is_not_plaintext() -> None:
    assert plaintextFromServer(b"\x16\x03\x03\x00\x7a\x02", PEER) is None
    assert plaintextFromServer(b"\x15\x03\x03\x00\x02\x02\x46", PEER) is None  # an alert
    assert plaintextFromServer(b"", PEER) is None


def test_a_long_banner_is_cut_and_quoted() -> None:
    message = plaintextFromServer(b"220 " + b"x" * 500 + b" ESMTP\r\n", PEER)
    assert message is not None and "..." in message and len(message) < 400


@pytest.mark.parametrize(
    ("first", "words", "dialect"),
    [
        (b"EHLO client.example\r\n", "looks like an SMTP client's EHLO", "smtp"),
        (b"a1 CAPABILITY\r\n", "looks like an IMAP client's tagged command", "imap"),
        (b"CAPA\r\n", "looks like a POP3 client's command", "pop3"),
        (b"AUTH TLS\r\n", "looks like an FTP client's command", "ftp"),
        (XMPPClient("localhost", "").start().send, "looks like an XMPP stream header", "xmpp"),
        (startTLSRequest(1), "looks like an LDAP StartTLS request", "ldap"),
        (SSL_REQUEST, "looks like a PostgreSQL SSLRequest", "postgres"),
    ],
)
def test_client_openings_name_the_dialect(first: bytes, words: str, dialect: str) -> None:
    message = plaintextFromClient(first, PEER)
    assert message.startswith(f"{PEER} sent plaintext (")
    assert words in message and "this port speaks TLS from the first byte" in message
    assert message.endswith(f"listen with starttls:...:dialect={dialect}; closed")


def test_user_could_be_pop3_or_ftp() -> None:
    message = plaintextFromClient(b"USER anonymous\r\n", PEER)
    assert "dialect=pop3 or dialect=ftp" in message


def test_unknown_plaintext_from_a_client() -> None:
    message = plaintextFromClient(b"\x01\x02garbage", PEER)
    assert "not a TLS ClientHello: it may expect plain TCP or a STARTTLS port" in message
    assert "looks like" not in message
    assert "(binary data starting 01 02 67 61 72 62 61 67)" in message


def test_binary_bytes_are_shown_in_hex_not_as_characters() -> None:
    """Random bytes read as Latin-1 ('\xc3\xa4o...') made unreadable lines; a header in hex is recognisable."""
    message = plaintextFromClient(bytes([0xC3, 0xE4, 0x6F, 0x61, 0x68, 0xCC, 0x61, 0x49, 0x99]), PEER)
    assert "(binary data starting c3 e4 6f 61 68 cc 61 49)" in message and "Ã" not in message
    sslRequest = plaintextFromClient(b"\x00\x00\x00\x08\x04\xd2\x16\x2f", PEER)
    assert "binary data starting 00 00 00 08 04 d2 16 2f" in sslRequest


def test_http_requests() -> None:
    assert isHTTPRequest(b"GET / HTTP/1.1\r\n") and isHTTPRequest(b"PRI * HTTP/2.0\r\n")
    assert not isHTTPRequest(b"EHLO x\r\n")
    message = plaintextFromClient(b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n", PEER)
    assert (
        message
        == f"{PEER} sent a plain HTTP request ('GET /index.html HTTP/1.1') to this TLS port; answered 400 and closed"
    )
    head, _, body = HTTP_400.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"Connection: close" in head
    assert f"Content-Length: {len(body)}".encode() in head
    assert body.count(b"\n") == 1  # one line


def test_a_real_client_hello_is_tls() -> None:
    assert isTLSRecord(clientHello())
    assert not isTLSRecord(b"EHLO x\r\n")


@pytest.mark.parametrize(
    "first",
    [
        b"a1 LOGIN alice s3cr3t\r\n",
        b"USER alice\r\nPASS s3cr3t\r\n",
        b"GET /login?user=alice&token=s3cr3t HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x30\x11\x02\x01\x01\x60\x0c\x02\x01\x03\x04\x00\x80\x05s3cr3t",
    ],
)
def test_a_plaintext_clients_credentials_are_not_logged(first: bytes) -> None:
    message = plaintextFromClient(first, PEER)
    assert "s3cr3t" not in message and "alice" not in message


def sslv2FormatHello(version: bytes) -> bytes:
    """An SSL 2.0-format CLIENT-HELLO (2-byte record header) offering C{version}, as very old clients send."""
    specs = bytes.fromhex("00002f0100800700c0")  # TLS_RSA_WITH_AES_128_CBC_SHA, two SSL 2.0 kinds
    body = b"\x01" + version + len(specs).to_bytes(2, "big") + b"\x00\x00\x00\x10" + specs + b"\x11" * 16
    return bytes([0x80 | (len(body) >> 8), len(body) & 0xFF]) + body


@pytest.mark.parametrize(
    ("version", "offered"), [(b"\x03\x01", "TLS 1.0"), (b"\x03\x03", "TLS 1.2"), (b"\x03\x00", "SSL 3.0")]
)
def test_an_sslv2_compatible_hello_is_named(version: bytes, offered: str) -> None:
    message = plaintextFromClient(sslv2FormatHello(version), PEER)
    assert message.startswith(
        f"{PEER} sent an SSL 2.0-format (SSLv2-compatible) ClientHello offering up to {offered}, "
        "not a TLS ClientHello: a very old client"
    )
    assert "the client must offer TLS with a TLS ClientHello" in message
    assert "plain TCP" not in message and "STARTTLS" not in message
    assert not isTLSRecord(sslv2FormatHello(version))


def test_an_ssl_2_0_hello_is_named() -> None:
    message = plaintextFromClient(sslv2FormatHello(b"\x00\x02"), PEER)
    assert message.startswith(f"{PEER} sent an SSL 2.0 ClientHello, not a TLS ClientHello: a very old client")
    assert "no OpenSSL since 1.1.0 speaks it" in message and "plain TCP" not in message


def test_bytes_that_only_start_like_an_sslv2_header_are_plaintext() -> None:
    message = plaintextFromClient(b"\x80\x2e\x05\x03\x01garbage", PEER)
    assert "SSL 2.0" not in message and "it may expect plain TCP" in message
