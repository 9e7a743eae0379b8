"""
starttls: servers against Python's own STARTTLS clients (smtplib.starttls,
imaplib.starttls, poplib.stls, ftplib.FTP_TLS), with Twisted's mail and FTP
servers as the applications behind them: the client gets one greeting (the
dialect's), upgrades, and then talks to the application over TLS.
"""

from __future__ import annotations

import ftplib
import imaplib
import poplib
import re
import smtplib
import socket
import ssl
import time
from typing import Any

import pytest
import pytest_twisted
from twisted.cred.checkers import AllowAnonymousAccess
from twisted.cred.portal import Portal
from twisted.internet import reactor
from twisted.internet.defer import succeed
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.threads import deferToThread
from twisted.mail import imap4, pop3, smtp
from twisted.protocols import ftp
from twisted.protocols.basic import LineReceiver
from zope.interface import implementer

from securesock import StartTLSLineMixin, TLSUpgrade

from ..conftest import PKI
from ..starttlspeers import listenStartTLS

pytestmark = pytest.mark.interop


def context(pki: PKI) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=pki.ca_pem)


# --- SMTP: Twisted's ESMTP behind the dialect, and upgrading itself ---------


@implementer(smtp.IMessage)
class _Message:
    def __init__(self, box: list[bytes]) -> None:
        self.box = box
        self.lines: list[bytes] = []

    def lineReceived(self, line: bytes) -> None:
        self.lines.append(line)

    def eomReceived(self) -> Any:
        self.box.append(b"\n".join(self.lines))
        return succeed(b"queued")

    def connectionLost(self) -> None:
        self.lines = []


@implementer(smtp.IMessageDelivery)
class Mailbox:
    """Accepts every message for example.test and keeps it."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    def receivedHeader(self, helo: Any, origin: Any, recipients: Any) -> bytes:
        return b"Received: by securesock tests"

    def validateFrom(self, helo: Any, origin: Any) -> Any:
        return origin

    def validateTo(self, user: Any) -> Any:
        if user.dest.domain != b"example.test":
            raise smtp.SMTPBadRcpt(user)
        return lambda: _Message(self.messages)


def esmtpFactory(mailbox: Mailbox, protocol: type[smtp.ESMTP] = smtp.ESMTP, creator: Any = None) -> Factory:
    """Twisted's ESMTP server.  Behind a starttls: endpoint it gets no context: the dialect did the upgrade."""

    def build() -> smtp.ESMTP:
        server = protocol(contextFactory=creator)
        server.delivery = mailbox
        server.host = b"localhost"
        return server

    return Factory.forProtocol(build)


def sendWithSmtplib(pki: PKI, port: int) -> tuple[str, list[bytes]]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("client.example.test")
        assert client.has_extn("starttls")
        client.starttls(context=context(pki))
        assert client.sock is not None
        version = client.sock.version() or ""  # type: ignore[attr-defined]
        client.ehlo("client.example.test")  # the session starts again (RFC 3207)
        refused = client.sendmail("a@example.test", ["b@example.test"], b"Subject: hi\r\n\r\nover TLS\r\n")
        assert refused == {}
        return version, client.ehlo_resp.splitlines() if client.ehlo_resp else []


@pytest_twisted.ensureDeferred
async def test_smtplib_against_the_smtp_dialect(pki: PKI) -> None:
    mailbox = Mailbox()
    port = await listenStartTLS(pki, "smtp", esmtpFactory(mailbox))
    try:
        version, ehlo = await deferToThread(sendWithSmtplib, pki, port.getHost().port)
        assert version == "TLSv1.3"
        # The second EHLO was answered by Twisted's ESMTP, which offers no STARTTLS inside TLS.
        assert ehlo[0].startswith(b"localhost Hello") and b"STARTTLS" not in ehlo
        assert len(mailbox.messages) == 1 and mailbox.messages[0].endswith(b"over TLS")
    finally:
        await port.stopListening()


class SafeESMTP(StartTLSLineMixin, smtp.ESMTP):
    pass


@pytest_twisted.ensureDeferred
async def test_smtplib_against_twisted_esmtp_upgrading_itself_with_the_mixin(pki: PKI) -> None:
    mailbox = Mailbox()
    upgrade = TLSUpgrade.forServer(f"starttls:0:certificate={pki.server_pem}:dialect=none")
    factory = esmtpFactory(mailbox, SafeESMTP, upgrade.creator)
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    try:
        version, ehlo = await deferToThread(sendWithSmtplib, pki, port.getHost().port)
        assert version == "TLSv1.3" and len(mailbox.messages) == 1
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_smtplib_is_refused_mail_before_starttls(pki: PKI) -> None:
    port = await listenStartTLS(pki, "smtp", esmtpFactory(Mailbox()))

    def plaintextMail() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", port.getHost().port, timeout=10) as client:
            client.ehlo()
            return client.mail("a@example.test")

    try:
        code, text = await deferToThread(plaintextMail)
        assert (code, text) == (530, b"5.7.0 Must issue a STARTTLS command first")
    finally:
        await port.stopListening()


# --- IMAP: Twisted's IMAP4Server behind the dialect ---------------------------


def imapSession(pki: PKI, port: int) -> tuple[str, tuple[str, list[Any]], tuple[Any, ...]]:
    client = imaplib.IMAP4("127.0.0.1", port, timeout=10)
    try:
        assert "STARTTLS" in client.capabilities and "LOGINDISABLED" in client.capabilities
        client.starttls(ssl_context=context(pki))
        version = client.sock.version()  # type: ignore[attr-defined]
        # imaplib asked the application for its capabilities again, over TLS.
        capabilities = client.capabilities
        return version, client.noop(), capabilities
    finally:
        client.logout()


@pytest_twisted.ensureDeferred
async def test_imaplib_against_the_imap_dialect(pki: PKI) -> None:
    port = await listenStartTLS(pki, "imap", Factory.forProtocol(imap4.IMAP4Server))
    try:
        version, noop, capabilities = await deferToThread(imapSession, pki, port.getHost().port)
        assert version == "TLSv1.3"
        assert noop[0] == "OK"
        assert "IMAP4REV1" in capabilities and "STARTTLS" not in capabilities
    finally:
        await port.stopListening()


# --- POP3: Twisted's POP3 server behind the dialect ---------------------------


def popSession(pki: PKI, port: int) -> tuple[bytes, str, dict[str, list[str]]]:
    client = poplib.POP3("127.0.0.1", port, timeout=10)
    try:
        welcome = client.getwelcome()
        client.stls(context=context(pki))
        return welcome, client.sock.version(), client.capa()  # type: ignore[attr-defined]
    finally:
        client.quit()


@pytest_twisted.ensureDeferred
async def test_poplib_against_the_pop3_dialect(pki: PKI) -> None:
    port = await listenStartTLS(pki, "pop3", Factory.forProtocol(pop3.POP3))
    try:
        welcome, version, capabilities = await deferToThread(popSession, pki, port.getHost().port)
        assert welcome == b"+OK localhost POP3 ready; STLS required"
        assert version == "TLSv1.3"
        assert "USER" in capabilities  # answered by Twisted's POP3, over TLS
    finally:
        await port.stopListening()


# --- FTP: Twisted's FTP server behind the dialect ----------------------------


def ftpSession(pki: PKI, port: int) -> tuple[str, str, str, str]:
    client = ftplib.FTP_TLS(context=context(pki), timeout=10)
    try:
        welcome = client.connect("127.0.0.1", port)
        client.auth()
        version = client.sock.version()  # type: ignore[union-attr]
        login = client.login()  # anonymous, over TLS
        return welcome, version or "", login, client.pwd()
    finally:
        client.quit()


@pytest_twisted.ensureDeferred
async def test_ftplib_against_the_ftp_dialect(pki: PKI, tmp_path: Any) -> None:
    portal = Portal(ftp.FTPRealm(str(tmp_path)), [AllowAnonymousAccess()])
    port = await listenStartTLS(pki, "ftp", ftp.FTPFactory(portal))
    try:
        welcome, version, login, directory = await deferToThread(ftpSession, pki, port.getHost().port)
        assert welcome == "220 localhost FTP ready; AUTH TLS required"
        assert version == "TLSv1.3"
        assert login.startswith("230") and directory == "/"
    finally:
        await port.stopListening()


class MultiLineGreeter(LineReceiver):
    """An FTP-like application greeting with a multi-line reply whose middle line is free text."""

    def connectionMade(self) -> None:
        self.sendLine(b"220-Welcome to the example FTP service")
        self.sendLine(b"    Please be nice.")
        self.sendLine(b"220 Ready")

    def lineReceived(self, line: bytes) -> None:
        answers = {b"USER": b"331 Password please", b"PASS": b"230 Logged in", b"PWD": b'257 "/"'}
        self.sendLine(answers.get(line.split(b" ")[0].upper(), b"221 Bye"))


@pytest_twisted.ensureDeferred
async def test_ftplib_after_an_application_with_a_multi_line_greeting(pki: PKI) -> None:
    """The application's greeting (free text between its first and last lines) is not sent after TLS."""
    port = await listenStartTLS(pki, "ftp", Factory.forProtocol(MultiLineGreeter))
    try:
        welcome, version, login, directory = await deferToThread(ftpSession, pki, port.getHost().port)
        assert welcome == "220 localhost FTP ready; AUTH TLS required"
        assert version == "TLSv1.3"
        assert login == "230 Logged in" and directory == "/"
    finally:
        await port.stopListening()


# --- one greeting: the application's own is not sent again after TLS --------


def _readUntil(sock: Any, done: re.Pattern[bytes], timeout: float = 10) -> bytes:
    """Bytes from C{sock} until they match C{done} (bounded in time and size)."""
    data = b""
    deadline = time.monotonic() + timeout
    while done.search(data) is None:
        if time.monotonic() > deadline or len(data) > 65536:
            raise AssertionError(f"no complete reply within {timeout} s: {data!r}")
        chunk = sock.recv(4096)
        if not chunk:
            raise AssertionError(f"closed after {data!r}")
        data += chunk
    return data


def upgradedExchange(
    pki: PKI, port: int, exchange: list[tuple[bytes, bytes]], after: bytes, reply: bytes
) -> tuple[list[bytes], bytes]:
    """
    Blocking, with Python's ssl module as the TLS client: the plaintext
    C{exchange} (what to send, the regex ending its reply; the first sends
    nothing and reads the greeting), TLS, then C{after}: what came back first.
    """
    plain: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        for send, ending in exchange:
            if send:
                raw.sendall(send)
            plain.append(_readUntil(raw, re.compile(ending, re.MULTILINE)))
        with context(pki).wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(after)
            return plain, _readUntil(tls, re.compile(reply, re.MULTILINE))


def _ftpFactory(root: str) -> Factory:
    return ftp.FTPFactory(Portal(ftp.FTPRealm(root), [AllowAnonymousAccess()]))


# dialect -> (the application, the plaintext exchange, a command after TLS, its reply's pattern, how it must start)
ONE_GREETING: dict[str, tuple[Any, list[tuple[bytes, bytes]], bytes, bytes, bytes]] = {
    "smtp": (
        lambda root: esmtpFactory(Mailbox()),
        [(b"", rb"^220 .*\n"), (b"EHLO c.example\r\n", rb"^250 .*\n"), (b"STARTTLS\r\n", rb"^220 .*\n")],
        b"EHLO c.example\r\n",
        rb"^250 .*\n",
        b"250 localhost Hello",
    ),
    "imap": (
        lambda root: Factory.forProtocol(imap4.IMAP4Server),
        [(b"", rb"^\* OK .*\n"), (b"a1 STARTTLS\r\n", rb"^a1 .*\n")],
        b"a2 NOOP\r\n",
        rb"^a2 .*\n",
        b"a2 OK NOOP",
    ),
    "pop3": (
        lambda root: Factory.forProtocol(pop3.POP3),
        [(b"", rb"^\+OK .*\n"), (b"STLS\r\n", rb"^\+OK .*\n")],
        b"CAPA\r\n",
        rb"^\.\r\n",
        b"+OK I can do the following:",
    ),
    "ftp": (
        _ftpFactory,
        [(b"", rb"^220 .*\n"), (b"AUTH TLS\r\n", rb"^234 .*\n")],
        b"FEAT\r\n",
        rb"^211 .*\n",
        b"211-Features:",
    ),
}


@pytest.mark.parametrize("dialect", sorted(ONE_GREETING))
@pytest_twisted.ensureDeferred
async def test_the_application_does_not_greet_again(pki: PKI, dialect: str, tmp_path: Any) -> None:
    # Twisted's servers greet in connectionMade; the client already had the dialect's greeting
    # (RFC 3207 4.2, RFC 3501 6.2.1, RFC 2595 4, RFC 4217 6): the first bytes after TLS must answer our command.
    application, exchange, after, ending, starts = ONE_GREETING[dialect]
    port = await listenStartTLS(pki, dialect, application(str(tmp_path)))
    try:
        plain, first = await deferToThread(
            upgradedExchange, pki, port.getHost().port, exchange, after, ending
        )
        assert b"localhost" in plain[0] and b"required" in plain[0]  # the dialect's greeting, in plaintext
        assert first.startswith(starts), first
    finally:
        await port.stopListening()
