"""
starttls: clients against servers we did not write: aiosmtpd with required
STARTTLS and pyftpdlib with TLS (both from PyPI, run as their own
processes), Twisted's own ESMTP and IMAP4 servers upgrading with
securesock's context, and throw-away instances of Dovecot (IMAP, POP3),
OpenLDAP's slapd, Prosody (XMPP) and PostgreSQL on loopback ports, each
configured to refuse everything but the upgrade in plaintext.  The
application behind the client endpoint only ever sees TLS.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, NoReturn

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThread
from twisted.mail import imap4, smtp
from twisted.protocols.basic import LineOnlyReceiver

import securesock
from securesock import TLSUpgrade
from securesock.dialects.ldap import ber, elements, parseMessage, tlv

from ..conftest import PKI, REQUIRE_INTEROP, requireTool
from ..starttlspeers import clientDescription
from .test_starttls_python import Mailbox, esmtpFactory

pytestmark = pytest.mark.interop


def missing(what: str) -> NoReturn:
    """Skip for want of a server program, or fail under SECURESOCK_REQUIRE_INTEROP=1 (like requireTool)."""
    if REQUIRE_INTEROP:
        pytest.fail(
            f"{what} is not installed, and SECURESOCK_REQUIRE_INTEROP=1 requires it (see .ci/install)"
        )
    pytest.skip(f"{what} is not installed (Debian: see .ci/install)")


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _waitForPort(port: int, process: subprocess.Popen[bytes] | None, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"the server exited: {process.stderr.read().decode() if process.stderr else ''}"
            )
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {seconds} s")


@asynccontextmanager
async def serverProcess(args: list[str], port: int) -> AsyncIterator[list[bytes]]:
    """Run a server until the block ends; yields a list that receives its stdout after it stopped."""
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    output: list[bytes] = []
    try:
        await deferToThread(_waitForPort, port, process, 20)
        yield output
    finally:
        process.terminate()
        try:
            out, _ = await deferToThread(process.communicate, timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            out, _ = await deferToThread(process.communicate, timeout=10)
        output.append(out)


# --- SMTP -------------------------------------------------------------------


class SenderAfterSTARTTLS(smtp.ESMTPSender):
    """
    Twisted's SMTP client as the application behind a starttls: client: no
    greeting comes after STARTTLS (RFC 3207 4.2), so it starts with EHLO.
    """

    def connectionMade(self) -> None:
        super().connectionMade()
        self.esmtpState_ehlo(220, b"")


async def sendThroughDialect(pki: PKI, port: int, body: bytes) -> Any:
    sent: Deferred[Any] = Deferred()
    factory = smtp.ESMTPSenderFactory(
        None,
        None,
        "a@example.test",
        ["b@example.test"],
        _File(b"Subject: securesock\r\n\r\n" + body + b"\r\n"),
        sent,
        retries=0,
        requireAuthentication=False,
        requireTransportSecurity=True,
    )
    factory.protocol = SenderAfterSTARTTLS
    endpoint = securesock.clientFromString(
        reactor, clientDescription(pki, port, "smtp", ":hostname=localhost")
    )
    sender = await endpoint.connect(factory)
    assert ISSLTransport.providedBy(sender.transport)
    return await sent


class _File:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, size: int = -1) -> bytes:
        data, self.data = (self.data, b"") if size < 0 else (self.data[:size], self.data[size:])
        return data


@pytest_twisted.ensureDeferred
async def test_smtp_client_against_aiosmtpd(pki: PKI) -> None:
    pytest.importorskip("aiosmtpd", reason="aiosmtpd is in the test extra: pip install -e .[test]")
    port = freePort()
    args = [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}"]
    args += ["--tlscert", pki.path("server.crt"), "--tlskey", pki.path("server.key")]
    async with serverProcess(args, port) as output:
        accepted, recipients = await sendThroughDialect(pki, port, b"delivered to aiosmtpd over TLS")
        assert accepted == 1 and recipients[0][1] == 250
    assert b"delivered to aiosmtpd over TLS" in output[0]


@pytest_twisted.ensureDeferred
async def test_smtp_client_against_twisted_esmtp_with_starttls(pki: PKI) -> None:
    mailbox = Mailbox()
    upgrade = TLSUpgrade.forServer(f"starttls:0:certificate={pki.server_pem}:dialect=none")
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        esmtpFactory(mailbox, smtp.ESMTP, upgrade.creator)
    )
    try:
        accepted, _ = await sendThroughDialect(pki, port.getHost().port, b"delivered to Twisted over TLS")
        assert accepted == 1 and b"delivered to Twisted over TLS" in mailbox.messages[0]
    finally:
        await port.stopListening()


# --- line clients for FTP and IMAP ---------------------------------------------


class Conversation(LineOnlyReceiver):
    """Sends its lines one at a time, each after the previous answer; collects the answers."""

    def __init__(self, lines: list[bytes], last: bytes) -> None:
        self.lines = lines
        self.last = last  # an answer starting with this ends a step
        self.answers: list[bytes] = []
        self.done: Deferred[list[bytes]] = Deferred()

    def connectionMade(self) -> None:
        self._next()

    def _next(self) -> None:
        if self.lines:
            self.sendLine(self.lines.pop(0))

    def lineReceived(self, line: bytes) -> None:
        self.answers.append(line)
        if line.startswith(self.last) or line[3:4] == b" ":
            self._next()

    def connectionLost(self, reason: Any) -> None:
        if not self.done.called:
            self.done.callback(self.answers)


@pytest_twisted.ensureDeferred
async def test_ftp_client_against_pyftpdlib(pki: PKI, tmp_path: Any) -> None:
    pytest.importorskip("pyftpdlib", reason="pyftpdlib is in the test extra: pip install -e .[test]")
    port = freePort()
    args = [sys.executable, "-m", "pyftpdlib", "-i", "127.0.0.1", "-p", str(port), "-d", str(tmp_path)]
    args += ["--tls", "--certfile", pki.path("server.crt"), "--keyfile", pki.path("server.key")]
    args += ["--tls-control-required"]
    async with serverProcess(args, port):
        endpoint = securesock.clientFromString(
            reactor, clientDescription(pki, port, "ftp", ":hostname=localhost")
        )
        conversation = Conversation([b"USER anonymous", b"PASS guest@example.test", b"PWD", b"QUIT"], b"")
        await endpoint.connect(Factory.forProtocol(lambda: conversation))
        assert ISSLTransport.providedBy(conversation.transport)
        answers = await conversation.done
    codes = [answer[:3] for answer in answers]
    # pyftpdlib refuses USER in plaintext (--tls-control-required): 331 here proves TLS.
    assert codes == [b"331", b"230", b"257", b"221"]


@pytest_twisted.ensureDeferred
async def test_imap_client_against_twisted_imap4_with_starttls(pki: PKI) -> None:
    upgrade = TLSUpgrade.forServer(f"starttls:0:certificate={pki.server_pem}:dialect=none")
    factory = Factory.forProtocol(lambda: imap4.IMAP4Server(contextFactory=upgrade.creator))
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    try:
        endpoint = securesock.clientFromString(reactor, clientDescription(pki, port.getHost().port, "imap"))
        conversation = Conversation([b"t1 CAPABILITY", b"t2 LOGOUT"], b"t")
        await endpoint.connect(Factory.forProtocol(lambda: conversation))
        answers = await conversation.done
        assert answers[0].startswith(b"* CAPABILITY IMAP4rev1") and b"STARTTLS" not in answers[0]
        assert answers[1] == b"t1 OK CAPABILITY completed"
        assert answers[-1] == b"t2 OK LOGOUT successful"
    finally:
        await port.stopListening()


# --- Dovecot: a real IMAP and POP3 server with STARTTLS/STLS required ----------

_DOVECOT_CONF = """\
protocols = imap pop3
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/log
ssl = required
ssl_cert = <{root}/server.crt
ssl_key = <{root}/server.key
disable_plaintext_auth = yes
auth_mechanisms = plain
mail_location = maildir:{root}/home/%u/Maildir
{users}
service imap-login {{
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
passdb {{
  driver = static
  args = password=secret
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
"""


def _waitForGreeting(port: int, word: bytes, seconds: float) -> None:
    """Until the server's greeting says C{word} (Dovecot says "Waiting for authentication process" first)."""
    deadline = time.monotonic() + seconds
    greeting = b""
    while time.monotonic() < deadline:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as probe:
            greeting = probe.recv(1024)
        if word in greeting:
            return
        time.sleep(0.1)
    raise RuntimeError(f"port {port} still greets with {greeting!r} after {seconds} s")


def dovecotTool() -> str:
    """Dovecot's master program (in /usr/sbin, which a user's PATH may lack)."""
    found = shutil.which("dovecot") or (
        "/usr/sbin/dovecot" if os.access("/usr/sbin/dovecot", os.X_OK) else None
    )
    return found or requireTool("dovecot")


@asynccontextmanager
async def dovecot(pki: PKI) -> AsyncIterator[tuple[int, int]]:
    """A throw-away Dovecot on loopback (IMAP and POP3 ports, TLS required before login); stopped by PID."""
    program = dovecotTool()
    root = tempfile.mkdtemp(prefix="securesock-dovecot-", dir="/tmp")  # short: Dovecot's sockets live here
    imapPort, pop3Port = freePort(), freePort()
    for name in ("server.crt", "server.key"):
        shutil.copy(pki.path(name), os.path.join(root, name))
    os.makedirs(os.path.join(root, "home"))
    if os.geteuid() == 0:
        users, uid, gid = "", "nobody", "nogroup"  # mail processes run as nobody: let them in
        os.chmod(root, 0o755)
        os.chmod(os.path.join(root, "home"), 0o777)
    else:
        import getpass

        me = getpass.getuser()
        users = f"default_internal_user = {me}\ndefault_login_user = {me}"
        uid, gid = str(os.getuid()), str(os.getgid())
    conf = os.path.join(root, "dovecot.conf")
    with open(conf, "w") as f:
        f.write(_DOVECOT_CONF.format(root=root, users=users, imap=imapPort, pop3=pop3Port, uid=uid, gid=gid))
    try:
        async with serverProcess([program, "-F", "-c", conf], imapPort):
            await deferToThread(_waitForPort, pop3Port, None, 20)
            await deferToThread(_waitForGreeting, imapPort, b"ready.", 20)
            yield imapPort, pop3Port
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest_twisted.ensureDeferred
async def test_imap_client_against_dovecot(pki: PKI) -> None:
    async with dovecot(pki) as (imapPort, _):
        endpoint = securesock.clientFromString(
            reactor, clientDescription(pki, imapPort, "imap", ":hostname=localhost")
        )
        conversation = Conversation([b"t1 CAPABILITY", b"t2 LOGIN u secret", b"t3 LOGOUT"], b"t")
        await endpoint.connect(Factory.forProtocol(lambda: conversation))
        assert ISSLTransport.providedBy(conversation.transport)
        answers = await conversation.done
    # Over TLS Dovecot no longer offers STARTTLS, and accepts a plaintext-password LOGIN
    # (disable_plaintext_auth refuses it before TLS).
    assert answers[0].startswith(b"* CAPABILITY IMAP4rev1") and b"STARTTLS" not in answers[0]
    assert answers[0].find(b"LOGINDISABLED") < 0
    assert any(answer.startswith(b"t2 OK") for answer in answers), answers
    assert answers[-1].startswith(b"t3 OK")


@pytest_twisted.ensureDeferred
async def test_pop3_client_against_dovecot(pki: PKI) -> None:
    async with dovecot(pki) as (_, pop3Port):
        endpoint = securesock.clientFromString(
            reactor, clientDescription(pki, pop3Port, "pop3", ":hostname=localhost")
        )
        conversation = Conversation([b"USER u", b"PASS secret", b"STAT", b"QUIT"], b"")  # one line per answer
        await endpoint.connect(Factory.forProtocol(lambda: conversation))
        assert ISSLTransport.providedBy(conversation.transport)
        answers = await conversation.done
    # Dovecot refuses USER in plaintext (disable_plaintext_auth): "+OK" here proves TLS.
    assert answers[0] == b"+OK" and answers[1] == b"+OK Logged in."
    assert answers[2] == b"+OK 0 0" and answers[3].startswith(b"+OK Logging out")


@pytest.mark.parametrize(
    ("index", "words"), [(0, "an IMAP server's greeting"), (1, "a POP3 server's greeting")]
)
@pytest_twisted.ensureDeferred
async def test_tls_client_on_dovecots_starttls_ports(pki: PKI, index: int, words: str) -> None:
    async with dovecot(pki) as ports:
        endpoint = securesock.clientFromString(
            reactor, f"tls:127.0.0.1:{ports[index]}:trustRoots={pki.ca_pem}"
        )
        with pytest.raises(securesock.TLSHandshakeError) as caught:
            await endpoint.connect(Factory.forProtocol(Protocol))
    dialect = ("imap", "pop3")[index]
    assert ("it sent '* OK ", "it sent '+OK ")[index] in str(caught.value)
    assert f"which looks like {words}" in str(caught.value)
    assert f"connect with starttls:HOST:PORT:dialect={dialect}" in str(caught.value)


# --- OpenLDAP's slapd: StartTLS required for every operation ------------------

_SLAPD_CONF = """\
include /etc/ldap/schema/core.schema
pidfile {root}/slapd.pid
argsfile {root}/slapd.args
TLSCertificateFile {root}/server.crt
TLSCertificateKeyFile {root}/server.key
security tls=1
"""
_WHOAMI = b"1.3.6.1.4.1.4203.1.11.3"  # RFC 4532


class WhoAmI(Protocol):
    """After TLS: one "Who am I?" extended request (message 2); collects the answer until the server's reply is whole."""

    def __init__(self) -> None:
        self.received = b""
        self.done: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        request = tlv(0x30, tlv(0x02, b"\x02") + tlv(0x77, tlv(0x80, _WHOAMI)))
        self.transport.write(request)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if ber(self.received) and not self.done.called:
            self.done.callback(self.received)
            self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Any) -> None:
        if not self.done.called:
            self.done.callback(self.received)


@pytest_twisted.ensureDeferred
async def test_ldap_client_against_slapd(pki: PKI) -> None:
    slapd = shutil.which("slapd") or ("/usr/sbin/slapd" if os.access("/usr/sbin/slapd", os.X_OK) else None)
    slapd = slapd or requireTool("slapd")
    if not os.path.exists("/etc/ldap/schema/core.schema"):
        requireTool(
            "slapd-schema"
        )  # skips (fails under SECURESOCK_REQUIRE_INTEROP=1): Debian's slapd ships it
    root = tempfile.mkdtemp(prefix="securesock-slapd-", dir="/tmp")
    port = freePort()
    try:
        for name in ("server.crt", "server.key"):
            shutil.copy(pki.path(name), os.path.join(root, name))
        conf = os.path.join(root, "slapd.conf")
        with open(conf, "w") as f:
            f.write(_SLAPD_CONF.format(root=root))
        async with serverProcess([slapd, "-f", conf, "-h", f"ldap://127.0.0.1:{port}/", "-d", "0"], port):
            endpoint = securesock.clientFromString(
                reactor, clientDescription(pki, port, "ldap", ":hostname=localhost")
            )
            whoami = WhoAmI()
            await endpoint.connect(Factory.forProtocol(lambda: whoami))
            assert ISSLTransport.providedBy(whoami.transport)
            answer = await whoami.done
    finally:
        shutil.rmtree(root, ignore_errors=True)
    # slapd refuses every operation before StartTLS (security tls=1, resultCode 13); success proves TLS.
    messageID, operation, value = parseMessage(answer)
    assert (messageID, operation) == (2, 0x78)
    assert elements(value)[0] == (0x0A, b"\x00")  # resultCode success


# --- Prosody: an XMPP server with c2s_require_encryption ----------------------

_PROSODY_CONF = """\
pidfile = "{root}/prosody.pid"
data_path = "{root}/data"
log = {{ info = "{root}/prosody.log" }}
daemonize = false
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {port} }}
c2s_direct_tls_ports = {{ }}
s2s_ports = {{ }}
component_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
c2s_require_encryption = true
modules_enabled = {{ "tls", "saslauth", "disco" }}
modules_disabled = {{ "s2s", "posix" }}
ssl = {{ certificate = "{root}/server.crt", key = "{root}/server.key" }}
VirtualHost "localhost"
"""


class NewStream(Protocol):
    """After TLS: opens a new stream (RFC 6120 5.4.3.3), collects it until the features end, closes it."""

    def __init__(self) -> None:
        self.received = b""
        self.done: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(  # type: ignore[union-attr]
            b"<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
            b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
        )

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if b"</stream:features>" in self.received and not self.done.called:
            self.transport.write(b"</stream:stream>")  # type: ignore[union-attr]
            self.done.callback(self.received)
            self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Any) -> None:
        if not self.done.called:
            self.done.callback(self.received)


@pytest_twisted.ensureDeferred
async def test_xmpp_client_against_prosody(pki: PKI) -> None:
    prosody = shutil.which("prosody") or missing("prosody (Debian: prosody)")
    root = tempfile.mkdtemp(prefix="securesock-prosody-", dir="/tmp")
    port = freePort()
    try:
        os.chmod(root, 0o755)
        os.makedirs(os.path.join(root, "data"))
        for name in ("server.crt", "server.key"):
            shutil.copy(pki.path(name), os.path.join(root, name))
        conf = os.path.join(root, "prosody.cfg.lua")
        with open(conf, "w") as f:
            f.write(_PROSODY_CONF.format(root=root, port=port))
        async with serverProcess([prosody, "--config", conf], port):
            endpoint = securesock.clientFromString(
                reactor, clientDescription(pki, port, "xmpp", ":hostname=localhost")
            )
            stream = NewStream()
            await endpoint.connect(Factory.forProtocol(lambda: stream))
            assert ISSLTransport.providedBy(stream.transport)
            answer = await stream.done
    finally:
        shutil.rmtree(root, ignore_errors=True)
    # Over TLS Prosody offers SASL and no longer STARTTLS (before TLS it offers only STARTTLS).
    assert b"<stream:features>" in answer and b"<mechanisms" in answer
    assert b"urn:ietf:params:xml:ns:xmpp-tls" not in answer


# --- PostgreSQL (optional: needs a PostgreSQL server installed) -------------


def postgresTool(name: str) -> str:
    """
    A PostgreSQL server program: on PATH, or where Debian's postgresql
    package puts it (/usr/lib/postgresql/VERSION/bin, not on PATH).  Skips,
    or fails under SECURESOCK_REQUIRE_INTEROP=1, when none is installed.
    """
    found = shutil.which(name)
    if found is None:
        versions = sorted(
            glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
            key=lambda path: [int(part) for part in re.findall(r"\d+", path)],
        )
        found = versions[-1] if versions else None
    if found is None:
        missing(f"no PostgreSQL server installed ({name}; Debian: postgresql, see .ci/install)")
    return found


def _postgresCluster(pki: PKI, port: int, initdb: str, pgctl: str) -> tuple[str, list[str]]:
    """initdb a throw-away cluster with ssl=on and only hostssl connections; start it."""
    root = tempfile.mkdtemp(prefix="securesock-pg-", dir="/tmp")
    data = os.path.join(root, "data")
    asUser = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if asUser:
        shutil.chown(root, "postgres", "postgres")
    subprocess.run(
        [*asUser, initdb, "-D", data, "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    for name in ("server.crt", "server.key"):
        shutil.copy(pki.path(name), os.path.join(data, name))
        os.chmod(os.path.join(data, name), 0o600)
        if asUser:
            shutil.chown(os.path.join(data, name), "postgres", "postgres")
    with open(os.path.join(data, "postgresql.conf"), "a") as conf:
        conf.write(
            f"ssl = on\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{root}'\n"
        )
    with open(os.path.join(data, "pg_hba.conf"), "w") as hba:
        hba.write("hostssl all all 127.0.0.1/32 trust\n")
    subprocess.run(
        [*asUser, pgctl, "-D", data, "-l", os.path.join(root, "log"), "-w", "-t", "60", "start"],
        check=True,
        capture_output=True,
        timeout=90,
    )
    return root, [*asUser, pgctl, "-D", data, "-m", "immediate", "-w", "stop"]


class PostgresQuery(Protocol):
    """After TLS: StartupMessage, then one query; collects every byte the server sends."""

    def __init__(self) -> None:
        self.received = b""
        self.done: Deferred[bytes] = Deferred()
        self._asked = False

    def connectionMade(self) -> None:
        body = struct.pack("!I", 196608) + b"user\0postgres\0database\0postgres\0\0"
        self.transport.write(struct.pack("!I", 4 + len(body)) + body)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if not self._asked and b"Z\0\0\0\x05I" in self.received:
            self._asked = True
            query = b"select version, ssl from pg_stat_ssl where pid = pg_backend_pid()\0"
            self.transport.write(b"Q" + struct.pack("!I", 4 + len(query)) + query)  # type: ignore[union-attr]
        elif self._asked and self.received.endswith(b"Z\0\0\0\x05I"):
            self.transport.write(b"X\0\0\0\x04")  # type: ignore[union-attr]
            self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Any) -> None:
        self.done.callback(self.received)


@pytest_twisted.ensureDeferred
async def test_postgres_client_against_postgresql(pki: PKI) -> None:
    initdb, pgctl = postgresTool("initdb"), postgresTool("pg_ctl")
    if os.geteuid() == 0:
        requireTool("runuser")  # PostgreSQL refuses to run as root
    port = freePort()
    root, stop = await deferToThread(_postgresCluster, pki, port, initdb, pgctl)
    try:
        endpoint = securesock.clientFromString(
            reactor, clientDescription(pki, port, "postgres", ":hostname=localhost")
        )
        query = PostgresQuery()
        await endpoint.connect(Factory.forProtocol(lambda: query))
        received = await query.done
        assert received.startswith(b"R\0\0\0\x08\0\0\0\0")  # AuthenticationOk: hostssl only, so this was TLS
        assert b"TLSv1.3" in received  # pg_stat_ssl says so too
    finally:
        await deferToThread(subprocess.run, stop, capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


# --- wrong mode against real servers: tls: where STARTTLS is spoken ---------


@pytest.mark.parametrize(
    ("module", "words"),
    [
        (
            "aiosmtpd",
            "looks like an SMTP server's greeting. This port probably expects STARTTLS: connect with starttls:HOST:PORT:dialect=smtp",
        ),
        (
            "pyftpdlib",
            "looks like an FTP server's greeting. This port probably expects STARTTLS: connect with starttls:HOST:PORT:dialect=ftp",
        ),
    ],
)
@pytest_twisted.ensureDeferred
async def test_tls_client_on_a_real_starttls_port(pki: PKI, tmp_path: Any, module: str, words: str) -> None:
    pytest.importorskip(module, reason=f"{module} is in the test extra: pip install -e .[test]")
    port = freePort()
    certificate = ["--tlscert", pki.path("server.crt"), "--tlskey", pki.path("server.key")]
    args = {
        "aiosmtpd": [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}", *certificate],
        "pyftpdlib": [
            sys.executable,
            "-m",
            "pyftpdlib",
            "-i",
            "127.0.0.1",
            "-p",
            str(port),
            "-d",
            str(tmp_path),
        ],
    }[module]
    async with serverProcess(args, port):
        endpoint = securesock.clientFromString(reactor, f"tls:127.0.0.1:{port}:trustRoots={pki.ca_pem}")
        with pytest.raises(securesock.TLSHandshakeError) as caught:
            await endpoint.connect(Factory.forProtocol(Protocol))
    assert f"127.0.0.1:{port} answered in plaintext, not TLS: it sent '220 " in str(caught.value)
    assert words in str(caught.value)


# --- real servers without TLS: an error, never a plaintext session -----------


@pytest.mark.parametrize(
    ("module", "dialect", "words"),
    [
        ("aiosmtpd", "smtp", "the server does not offer STARTTLS (its EHLO reply: 250"),
        ("pyftpdlib", "ftp", "the server refused AUTH TLS: 500"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_starttls_client_refuses_a_real_server_without_tls(
    pki: PKI, tmp_path: Any, module: str, dialect: str, words: str
) -> None:
    pytest.importorskip(module, reason=f"{module} is in the test extra: pip install -e .[test]")
    port = freePort()
    args = {
        "aiosmtpd": [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}"],
        "pyftpdlib": [
            sys.executable,
            "-m",
            "pyftpdlib",
            "-i",
            "127.0.0.1",
            "-p",
            str(port),
            "-d",
            str(tmp_path),
        ],
    }[module]
    application = Factory.forProtocol(Protocol)
    built: list[Any] = []
    application.buildProtocol = lambda addr: built.append(addr)  # type: ignore[method-assign]
    async with serverProcess(args, port):
        endpoint = securesock.clientFromString(reactor, clientDescription(pki, port, dialect))
        with pytest.raises(securesock.StartTLSError) as caught:
            await endpoint.connect(application)
    assert words in str(caught.value)
    assert "never falls back to plaintext" in str(caught.value)
    assert built == []  # the application was never given the plaintext connection
