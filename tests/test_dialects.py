"""
The dialects' pre-TLS conversations and the shared reader's injection rule,
fed the bytes real peers send (no sockets here: see test_starttls.py and
tests/interop/ for the same over the wire).
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securesock.dialects import (
    NEGOTIATED,
    FramingError,
    NumericReply,
    Reader,
    commandOf,
    dialectClasses,
    lines,
)
from securesock.dialects.ldap import STARTTLS_OID, ber, elements, result, startTLSRequest, tlv
from securesock.dialects.postgres import SSL_REQUEST
from securesock.dialects.xmpp import TagFramer, parseTag, tags

STARTUP = struct.pack("!II", 16, 196608) + b"user\0me\0\0"
XMPP_HEADER = (
    b"<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
)
XMPP_STARTTLS = b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"

# dialect -> (messages before the upgrade command, the upgrade command, a command to pipeline after it)
UPGRADES = {
    "smtp": ([b"EHLO client.example\r\n"], b"STARTTLS\r\n", b"MAIL FROM:<a@example.test>\r\n"),
    "imap": ([b"a1 CAPABILITY\r\n"], b"a2 STARTTLS\r\n", b"a3 LOGIN user secret\r\n"),
    "pop3": ([b"CAPA\r\n"], b"STLS\r\n", b"USER me\r\n"),
    "ftp": ([b"FEAT\r\n"], b"AUTH TLS\r\n", b"USER me\r\n"),
    "xmpp": ([XMPP_HEADER], XMPP_STARTTLS, b"<iq type='get' id='1'/>"),
    "ldap": ([], startTLSRequest(1), tlv(0x30, tlv(0x02, b"\x02") + tlv(0x42, b""))),
    "postgres": ([], SSL_REQUEST, STARTUP),
}

# dialect -> (a command that must be refused before TLS, what the refusal contains)
REFUSALS = {
    "smtp": (b"MAIL FROM:<a@example.test>\r\n", b"530 5.7.0 Must issue a STARTTLS command first"),
    "imap": (b"a1 LOGIN user secret\r\n", b"a1 NO [PRIVACYREQUIRED]"),
    "pop3": (b"USER me\r\n", b"-ERR Issue STLS first"),
    "ftp": (b"USER me\r\n", b"530 Issue AUTH TLS first"),
    "ldap": (
        tlv(0x30, tlv(0x02, b"\x05") + tlv(0x60, tlv(0x02, b"\x03") + tlv(0x04, b"") + tlv(0x80, b""))),
        None,
    ),
}


def server(name: str) -> Reader:
    return Reader(dialectClasses(name)[0]("mail.example.test"))


def client(name: str) -> Reader:
    return Reader(dialectClasses(name)[1]("mail.example.test", "[127.0.0.1]"))


def converse(name: str) -> tuple[Reader, Reader]:
    """Run a client and a server of one dialect against each other until both upgrade."""
    s, c = server(name), client(name)
    toClient, toServer = s.start().send, c.start().send
    for _ in range(10):
        fromClient = c.feed(toClient) if toClient else None
        fromServer = s.feed(toServer) if toServer else None
        toServer = fromClient.send if fromClient else b""
        toClient = fromServer.send if fromServer else b""
        assert not (fromClient and fromClient.close), fromClient
        assert not (fromServer and fromServer.close), fromServer
        if s.finished and c.finished:
            return s, c
        if s.finished and toClient:
            assert c.feed(toClient).upgrade
            return s, c
    raise AssertionError(f"{name}: no upgrade after 10 exchanges")


@pytest.mark.parametrize("name", NEGOTIATED)
def test_client_and_server_agree(name: str) -> None:
    s, c = converse(name)
    assert s.finished and c.finished


@pytest.mark.parametrize("name", NEGOTIATED)
def test_server_upgrades_after_the_command(name: str) -> None:
    before, command, _ = UPGRADES[name]
    reader = server(name)
    reader.start()
    for message in before:
        outcome = reader.feed(message)
        assert not outcome.close and not outcome.upgrade
    outcome = reader.feed(command)
    assert outcome.upgrade and outcome.close is None and outcome.send


@pytest.mark.parametrize("name", NEGOTIATED)
def test_server_closes_on_a_command_pipelined_after_the_upgrade(name: str) -> None:
    before, command, pipelined = UPGRADES[name]
    reader = server(name)
    reader.start()
    for message in before:
        reader.feed(message)
    # The whole chunk as an attacker (or a careless client) sends it.
    outcome = reader.feed(command + pipelined)
    assert outcome.injected and not outcome.upgrade
    assert outcome.close is not None and "before TLS started" in outcome.close
    assert outcome.send == b""  # not even the go-ahead
    assert reader.pending == b""  # the rest of the chunk is dropped
    assert reader.feed(b"more") == (b"", False, None, False)


def test_server_answers_messages_before_the_upgrade_in_the_same_chunk() -> None:
    reader = server("smtp")
    reader.start()
    outcome = reader.feed(b"EHLO a.example\r\nSTARTTLS\r\n")
    assert outcome.upgrade
    assert outcome.send == b"250-mail.example.test\r\n250 STARTTLS\r\n220 2.0.0 Ready to start TLS\r\n"


def test_server_injection_split_at_a_line_boundary_is_caught() -> None:
    # The pipelined command starts in the same chunk, even if incomplete.
    reader = server("smtp")
    reader.start()
    outcome = reader.feed(b"STARTTLS\r\nMA")
    assert outcome.injected


@pytest.mark.parametrize(
    ("name", "command", "answer"),
    [
        ("pop3", b"STLS x\r\n", b"-ERR STLS takes no arguments\r\n"),
        ("smtp", b"STARTTLS now\r\n", b"501"),
        ("imap", b"a3 STARTTLS extra\r\n", b"a3 BAD"),
    ],
)
def test_the_upgrade_command_takes_no_arguments(name: str, command: bytes, answer: bytes) -> None:
    reader = server(name)
    reader.start()
    outcome = reader.feed(command)
    assert not outcome.upgrade and outcome.send.startswith(answer), outcome.send


def test_an_injection_after_a_binary_upgrade_request_names_it() -> None:
    """postgres' SSLRequest is bytes, not text: the log line names it instead of printing them."""
    reader = server("postgres")
    reader.start()
    outcome = reader.feed(SSL_REQUEST + b"\x00\x00\x00\x08")
    assert outcome.injected and outcome.close is not None
    assert "arrived after the postgres SSLRequest exchange and before TLS started" in outcome.close
    assert "\\x04" not in outcome.close and "\\x00" not in outcome.close


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_server_refuses_everything_else_before_tls(name: str) -> None:
    command, expected = REFUSALS[name]
    reader = server(name)
    reader.start()
    outcome = reader.feed(command)
    assert not outcome.upgrade and outcome.close is None
    if expected is not None:
        assert expected in outcome.send
    else:  # LDAP: a BindResponse with resultCode 13 (confidentialityRequired)
        response = elements(elements(outcome.send)[0][1])
        assert response[1][0] == 0x61
        assert elements(response[1][1])[0] == (0x0A, b"\x0d")


def test_xmpp_server_refuses_stanzas_before_tls() -> None:
    reader = server("xmpp")
    reader.feed(XMPP_HEADER)
    outcome = reader.feed(b"<iq type='get' id='1'/>")
    assert b"<policy-violation" in outcome.send and outcome.close is not None


def test_postgres_server_refuses_a_plaintext_startup() -> None:
    outcome = server("postgres").feed(STARTUP)
    assert outcome.send.startswith(b"E") and b"C28000\0" in outcome.send
    assert outcome.close is not None


def test_postgres_server_declines_gss_encryption_then_accepts_ssl() -> None:
    reader = server("postgres")
    assert reader.feed(struct.pack("!II", 8, 80877104)).send == b"N"
    assert reader.feed(SSL_REQUEST) == (b"S", True, None, False)


# --- client side: go-ahead followed by injected bytes; no upgrade offered ---

# dialect -> the server's answers up to and including its go-ahead
GO_AHEAD = {
    "smtp": [b"220 mx ESMTP\r\n", b"250-mx\r\n250 STARTTLS\r\n", b"220 go ahead\r\n"],
    "imap": [b"* OK ready\r\n", b"* CAPABILITY IMAP4rev1 STARTTLS\r\na001 OK done\r\n", b"a002 OK go\r\n"],
    "pop3": [b"+OK ready\r\n", b"+OK\r\nSTLS\r\n.\r\n", b"+OK go\r\n"],
    "ftp": [b"220 FTP ready\r\n", b"234 go\r\n"],
    "xmpp": [
        b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
        b"xmlns:stream='http://etherx.jabber.org/streams' id='1' version='1.0'>"
        b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"
        b"</stream:features>",
        b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
    ],
    "ldap": [result(1, 0x78, 0, b"", tlv(0x8A, STARTTLS_OID))],
    "postgres": [b"S"],
}
INJECTED = {
    "smtp": b"250 injected\r\n",
    "imap": b"* OK injected\r\n",
    "pop3": b"+OK injected\r\n",
    "ftp": b"230 injected\r\n",
    "xmpp": b"<stream:stream>",
    "ldap": result(2, 0x61, 0, b"injected"),
    "postgres": b"R\0\0\0\x08\0\0\0\0",
}
# dialect -> answers of a server that does not offer the upgrade, and the words of the error
NOT_OFFERED = {
    "smtp": ([b"220 mx ESMTP\r\n", b"250-mx\r\n250 8BITMIME\r\n"], "does not offer STARTTLS"),
    "imap": ([b"* OK ready\r\n", b"* CAPABILITY IMAP4rev1\r\na001 OK done\r\n"], "does not offer STARTTLS"),
    "pop3": ([b"+OK ready\r\n", b"+OK\r\nUSER\r\n.\r\n"], "does not offer STLS"),
    "ftp": ([b"220 FTP ready\r\n", b"502 AUTH not implemented\r\n"], "refused AUTH TLS"),
    "xmpp": (
        [
            b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
            b"id='1' version='1.0'><stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
            b"</stream:features>"
        ],
        "does not offer STARTTLS",
    ),
    "ldap": ([result(1, 0x78, 2, b"unsupported extended operation")], "resultCode 2 (protocolError)"),
    "postgres": ([b"N"], "answered N to SSLRequest"),
}


def clientUntilGoAhead(name: str) -> tuple[Reader, bytes]:
    reader = client(name)
    reader.start()
    answers = GO_AHEAD[name]
    for answer in answers[:-1]:
        outcome = reader.feed(answer)
        assert not outcome.close, outcome
    return reader, answers[-1]


@pytest.mark.parametrize("name", NEGOTIATED)
def test_client_upgrades_on_the_go_ahead(name: str) -> None:
    reader, goAhead = clientUntilGoAhead(name)
    assert reader.feed(goAhead).upgrade


@pytest.mark.parametrize("name", NEGOTIATED)
def test_client_aborts_on_bytes_after_the_go_ahead(name: str) -> None:
    reader, goAhead = clientUntilGoAhead(name)
    outcome = reader.feed(goAhead + INJECTED[name])
    assert outcome.injected and not outcome.upgrade
    assert outcome.close is not None and "CVE-2011-0411" in outcome.close


@pytest.mark.parametrize("name", NEGOTIATED)
def test_client_refuses_a_server_without_the_upgrade(name: str) -> None:
    answers, words = NOT_OFFERED[name]
    reader = client(name)
    reader.start()
    outcomes = [reader.feed(answer) for answer in answers]
    assert not any(o.upgrade for o in outcomes)
    assert outcomes[-1].close is not None and words in outcomes[-1].close
    assert not outcomes[-1].injected


def test_imap_client_refuses_preauth() -> None:
    outcome = client("imap").feed(b"* PREAUTH logged in already\r\n")
    assert outcome.close is not None and "PREAUTH" in outcome.close


def test_smtp_client_sends_ehlo_with_its_address_literal() -> None:
    reader = client("smtp")
    assert reader.feed(b"220 mx ESMTP\r\n").send == b"EHLO [127.0.0.1]\r\n"


def test_smtp_client_reads_multiline_greetings() -> None:
    reader = client("smtp")
    assert reader.feed(b"220-mx first\r\n").send == b""
    assert reader.feed(b"220 mx last\r\n").send.startswith(b"EHLO")


def test_pop3_client_tries_stls_without_capa() -> None:
    reader = client("pop3")
    reader.feed(b"+OK ready\r\n")
    assert reader.feed(b"-ERR unknown command\r\n").send == b"STLS\r\n"


# --- reader limits, framings, helpers ---


def test_overlong_line_closes() -> None:
    outcome = server("smtp").feed(b"A" * 5000)
    assert outcome.close is not None and "longer than 2048 bytes" in outcome.close


def test_too_many_commands_close() -> None:
    reader = server("smtp")
    outcomes = [reader.feed(b"NOOP\r\n") for _ in range(40)]
    closed = [o for o in outcomes if o.close]
    assert closed and "more than 32 messages before TLS" in (closed[0].close or "")


def test_lines_framing() -> None:
    frame = lines(10)
    assert frame(b"abc") == 0
    assert frame(b"ab\r\ncd") == 4
    with pytest.raises(FramingError):
        frame(b"x" * 11)


def test_numeric_reply() -> None:
    reply = NumericReply()
    assert reply.add(b"211-Features:\r\n") is None
    assert reply.add(b" AUTH TLS\r\n") is None
    assert reply.add(b"211 End\r\n") == (211, [b"Features:", b" AUTH TLS", b"End"])
    with pytest.raises(FramingError):
        NumericReply().add(b"hello\r\n")


def test_xmpp_tags_keep_quoted_brackets() -> None:
    data = b"  <message body='a > b'/><next>"
    size = tags(data)
    assert data[:size] == b"  <message body='a > b'/>"
    tag = parseTag(data[:size])
    assert tag is not None and tag.empty and tag.attributes == {"body": "a > b"}


def _referenceTags(buffer: bytes, limit: int = 16384) -> int | str:
    """The plain rescan-everything tag framing that TagFramer must agree with."""
    start = buffer.find(b"<")
    if start < 0:
        return "error" if len(buffer) > limit else 0
    quote = 0
    for i in range(start + 1, min(len(buffer), limit)):
        if quote:
            if buffer[i] == quote:
                quote = 0
        elif buffer[i] in (0x22, 0x27):
            quote = buffer[i]
        elif buffer[i] == 0x3E:
            return i + 1
    return "error" if len(buffer) >= limit else 0


@settings(max_examples=300, deadline=None)
@given(
    data=st.lists(st.sampled_from([b"<", b">", b"'", b'"', b"a", b" ", b"xy"]), max_size=60).map(b"".join),
    cuts=st.lists(st.integers(min_value=1, max_value=7), min_size=1, max_size=30),
)
def test_xmpp_tag_framer_resumes_exactly(data: bytes, cuts: list[int]) -> None:
    """Fed in pieces, as a Reader does (appending, then cutting off each tag), the framer agrees with a full rescan."""
    framer = TagFramer()
    buffer, rest, pieces = b"", data, iter(cuts * 20)
    while rest:
        size = next(pieces, 1)
        buffer, rest = buffer + rest[:size], rest[size:]
        while True:
            expected = _referenceTags(buffer)
            try:
                got: int | str = framer(buffer)
            except FramingError:
                got = "error"
            assert got == expected, (buffer, got, expected)
            if not isinstance(got, int) or not got:
                break
            buffer = buffer[got:]


def test_xmpp_tag_sent_a_byte_at_a_time_is_scanned_once() -> None:
    """A 16 KB tag in one-byte chunks: each call looks only at what is new (no quadratic rescan)."""
    framer = TagFramer()
    tag = b"<message " + b"a='x' " * 2000
    buffer = b""
    for byte in tag:
        buffer += bytes((byte,))
        assert framer(buffer) == 0
        assert framer._position == len(buffer)  # scanned up to the end, no further work pending
    assert framer(buffer + b"/>") == len(buffer) + 2


def test_xmpp_refuses_comments() -> None:
    with pytest.raises(FramingError, match="comments"):
        parseTag(b"<!-- hi -->")


def test_ldap_long_lengths() -> None:
    value = b"x" * 300
    element = tlv(0x30, tlv(0x04, value))
    assert element[1] == 0x82  # long form, two length octets
    assert ber(element) == len(element)
    assert ber(element[:-1]) == 0
    assert elements(elements(element)[0][1]) == [(0x04, value)]
    with pytest.raises(FramingError):
        ber(b"\x04\x00")


@pytest.mark.parametrize(
    ("name", "written", "sent"),
    [
        ("smtp", b"220 app.example ESMTP\r\n250 extra\r\n", b"250 extra\r\n"),
        ("smtp", b"220-app\r\n220 app ESMTP\r\n", b""),
        ("smtp", b"250 not a greeting\r\n", b"250 not a greeting\r\n"),
        ("ftp", b"220 Twisted FTP Server\r\n", b""),
        # RFC 959, 4.2: the lines between the first and the last may be anything.
        ("ftp", b"220-Welcome\r\n    Please be nice.\r\n220 Ready\r\n331 next\r\n", b"331 next\r\n"),
        ("ftp", b"220-Welcome\r\n    not finished\r\n", b""),
        ("smtp", b"220-app\r\n free text\r\n220 app ESMTP\r\n", b""),
        ("imap", b"* OK [CAPABILITY IMAP4rev1] Ready\r\n", b""),
        ("pop3", b"+OK <1.2@host>\r\n", b""),
        ("xmpp", b"<stream:stream>", b"<stream:stream>"),
    ],
)
def test_application_greeting_is_dropped(name: str, written: bytes, sent: bytes) -> None:
    assert dialectClasses(name)[0]("x").withoutGreeting(written) == sent


# --- whatever a peer sends, a dialect answers or closes: it never raises -----


_CHUNKS = st.lists(
    st.one_of(
        st.binary(max_size=64),
        st.sampled_from(
            [
                b"\r\n",
                b"EHLO x\r\n",
                b"STARTTLS\r\n",
                b"a1 STARTTLS\r\n",
                b"STLS\r\n",
                b"AUTH TLS\r\n",
                b"<",
                b">",
            ]
            + [b"\x30\x84\xff\xff\xff\xff", b"\x30\x05\x02\x01", SSL_REQUEST, XMPP_HEADER, XMPP_STARTTLS]
        ),
    ),
    max_size=12,
)


@pytest.mark.parametrize("side", ["server", "client"])
@pytest.mark.parametrize("name", NEGOTIATED)
def test_any_bytes_get_an_outcome_never_an_exception(name: str, side: str) -> None:
    # @given inside the test, as in test_fuzz.py: pytest-twisted runs the outer test.
    @settings(max_examples=100, deadline=None, database=None)
    @given(chunks=_CHUNKS)
    def feed(chunks: list[bytes]) -> None:
        reader = server(name) if side == "server" else client(name)
        reader.start()
        for chunk in chunks:
            outcome = reader.feed(chunk)
            assert isinstance(outcome.send, bytes)
            assert not (outcome.upgrade and outcome.close is not None)
            if outcome.upgrade or outcome.close is not None:
                assert reader.finished and reader.pending == b""
                break

    feed()


@pytest.mark.parametrize(
    ("data", "shown"),
    [
        (b"PASS s3cr3t\r\n", "'PASS' and more"),
        (b"a3 LOGIN alice s3cr3t\r\n", "'a3 LOGIN' and more"),
        (b"AUTH PLAIN AGFsaWNl\r\n", "'AUTH' and more"),
        (b"RSET\r\n", "'RSET'"),
        (b"a2 NOOP\r\n", "'a2 NOOP'"),
        (
            b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNl</auth>",
            "'<auth' and more",
        ),
        (b"\r\n", "an empty line"),
        (b"\x30\x0c\x02\x01\x02\x60\x07\x02\x01\x03\x04\x00\x80\x06secret", "binary data"),
        # a line that is no command may be the secret itself: an AUTH PLAIN response, a password
        (b"AGJvYgBTM2NyZXRQVw==\r\n", "a line of 20 bytes that is no command (not shown)"),
        (b"S3cr3tPassw0rd\r\n", "a line of 14 bytes that is no command (not shown)"),
    ],
)
def test_commands_are_shown_without_their_arguments(data: bytes, shown: str) -> None:
    assert commandOf(data) == shown
