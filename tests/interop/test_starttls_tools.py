"""
starttls: servers against command-line clients we did not write:
openssl s_client -starttls (every dialect it knows that securesock
speaks), swaks --tls, curl --ssl-reqd smtp://, PHP's
stream_socket_enable_crypto after EHLO/STARTTLS, and psql with
sslmode=verify-full.
"""

from __future__ import annotations

import struct
import textwrap
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.protocol import Factory, Protocol

from securesock.dialects import NEGOTIATED

from ..conftest import PKI, REQUIRE_INTEROP, requireTool
from ..peers import listen, run
from ..starttlspeers import LogCapture, listenStartTLS
from .test_starttls_python import Mailbox, esmtpFactory

pytestmark = pytest.mark.interop


@pytest.mark.parametrize("dialect", NEGOTIATED)
@pytest_twisted.ensureDeferred
async def test_openssl_starttls(pki: PKI, dialect: str) -> None:
    openssl = requireTool("openssl")
    port = await listenStartTLS(pki, dialect)
    try:
        args = [openssl, "s_client", "-connect", f"127.0.0.1:{port.getHost().port}", "-starttls", dialect]
        args += ["-CAfile", pki.ca_pem, "-verify_hostname", "localhost", "-verify_return_error", "-brief"]
        args += ["-ign_eof"]  # read until the application closes, after its answer
        if dialect == "xmpp":
            args += ["-xmpphost", "localhost"]
        done = await run(args, input=b"hello\n", timeout=20)
        output = done.stderr.decode() + done.stdout.decode()
        assert done.returncode == 0, output
        assert "Verification: OK" in output and "Protocol version: TLSv1.3" in output
        # The application (the Shout echo) answered over TLS.
        assert "HELLO alpn=none" in output
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_swaks_tls(pki: PKI) -> None:
    swaks = requireTool("swaks")
    support = await run([swaks, "--support"], timeout=30)
    if b"=== TLS supported" not in support.stdout + support.stderr:
        if REQUIRE_INTEROP:
            pytest.fail("swaks cannot do TLS: install libnet-ssleay-perl (see .ci/install)")
        pytest.skip("swaks cannot do TLS here: libnet-ssleay-perl is not installed")
    mailbox = Mailbox()
    port = await listenStartTLS(pki, "smtp", esmtpFactory(mailbox))
    try:
        args = [swaks, "--server", "127.0.0.1", "--port", str(port.getHost().port), "--tls"]
        args += ["--tls-verify", "--tls-ca-path", pki.ca_pem, "--tls-sni", "localhost"]
        args += ["--from", "a@example.test", "--to", "b@example.test", "--body", "sent by swaks"]
        done = await run(args, timeout=30)
        output = done.stdout.decode()
        assert done.returncode == 0, output + done.stderr.decode()
        assert "<-  220 2.0.0 Ready to start TLS" in output  # the dialect's go-ahead, in plaintext
        assert "TLS started with cipher TLSv1.3" in output
        assert len(mailbox.messages) == 1 and b"sent by swaks" in mailbox.messages[0]
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_curl_ssl_reqd_smtp(pki: PKI, tmp_path: Any) -> None:
    curl = requireTool("curl")
    mailbox = Mailbox()
    port = await listenStartTLS(pki, "smtp", esmtpFactory(mailbox))
    message = tmp_path / "mail.txt"
    message.write_bytes(b"Subject: curl\r\n\r\nsent by curl\r\n")
    try:
        args = [curl, "-sS", "--ssl-reqd", "--cacert", pki.ca_pem, f"smtp://localhost:{port.getHost().port}"]
        args += ["--connect-to", f"localhost:{port.getHost().port}:127.0.0.1:{port.getHost().port}"]
        args += ["--mail-from", "a@example.test", "--mail-rcpt", "b@example.test", "-T", str(message)]
        done = await run(args, timeout=30)
        assert done.returncode == 0, done.stderr.decode()
        assert len(mailbox.messages) == 1 and b"sent by curl" in mailbox.messages[0]
    finally:
        await port.stopListening()


_PHP = textwrap.dedent(
    """
    $fp = stream_socket_client("tcp://127.0.0.1:" . $argv[1], $errno, $errstr, 5);
    function reply($fp) { $all = ""; do { $line = fgets($fp); $all .= $line; } while ($line !== false && $line[3] === "-"); return $all; }
    reply($fp);
    fwrite($fp, "EHLO php.example.test\\r\\n"); $ehlo = reply($fp);
    if (strpos($ehlo, "STARTTLS") === false) { exit(2); }
    fwrite($fp, "STARTTLS\\r\\n"); $go = reply($fp);
    if (substr($go, 0, 3) !== "220" || stream_get_meta_data($fp)["unread_bytes"] !== 0) { exit(3); }
    stream_context_set_option($fp, "ssl", "cafile", $argv[2]);
    stream_context_set_option($fp, "ssl", "peer_name", "localhost");
    if (!stream_socket_enable_crypto($fp, true, STREAM_CRYPTO_METHOD_TLS_CLIENT)) { exit(4); }
    fwrite($fp, "EHLO php.example.test\\r\\n"); $ehlo = reply($fp);
    fwrite($fp, "MAIL FROM:<a@example.test>\\r\\n"); reply($fp);
    fwrite($fp, "RCPT TO:<b@example.test>\\r\\n"); reply($fp);
    fwrite($fp, "DATA\\r\\n"); reply($fp);
    fwrite($fp, "Subject: php\\r\\n\\r\\nsent by php\\r\\n.\\r\\n"); $queued = reply($fp);
    fwrite($fp, "QUIT\\r\\n"); reply($fp);
    echo stream_get_meta_data($fp)["crypto"]["protocol"], "\\n", $queued;
    """
)


@pytest_twisted.ensureDeferred
async def test_php_stream_socket_enable_crypto(pki: PKI) -> None:
    php = requireTool("php")
    mailbox = Mailbox()
    port = await listenStartTLS(pki, "smtp", esmtpFactory(mailbox))
    try:
        done = await run([php, "-r", _PHP, str(port.getHost().port), pki.ca_pem], timeout=30)
        output = done.stdout.decode()
        assert done.returncode == 0, output + done.stderr.decode()
        assert output.startswith("TLSv1.3\n250 ")
        assert len(mailbox.messages) == 1 and b"sent by php" in mailbox.messages[0]
    finally:
        await port.stopListening()


class PostgresHello(Protocol):
    """Behind the postgres dialect: reads the StartupMessage (over TLS) and answers with a FATAL error psql prints."""

    def dataReceived(self, data: bytes) -> None:
        user = data[8:].split(b"\0")[1] if len(data) > 8 else b"?"
        text = b"hello " + user + b", this came over TLS"
        fields = b"SFATAL\0VFATAL\0C28000\0M" + text + b"\0\0"
        self.transport.write(b"E" + struct.pack("!I", 4 + len(fields)) + fields)  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]


@pytest_twisted.ensureDeferred
async def test_psql_verify_full(pki: PKI) -> None:
    psql = requireTool("psql")
    port = await listenStartTLS(pki, "postgres", Factory.forProtocol(PostgresHello))
    try:
        conninfo = (
            f"host=127.0.0.1 port={port.getHost().port} user=securesock dbname=test "
            f"sslmode=verify-full sslrootcert={pki.ca_pem} connect_timeout=10"
        )
        done = await run([psql, conninfo, "-c", "select 1"], timeout=30)
        assert done.returncode != 0
        assert "hello securesock, this came over TLS" in done.stderr.decode()
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_curl_plain_http_to_a_tls_port_gets_400(pki: PKI) -> None:
    curl = requireTool("curl")
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}")
    try:
        done = await run([curl, "-sS", "-i", f"http://127.0.0.1:{port.getHost().port}/"], timeout=30)
        output = done.stdout.decode()
        assert done.returncode == 0, done.stderr.decode()
        assert output.startswith("HTTP/1.1 400 Bad Request")
        assert "a plain HTTP request was sent to a port that speaks TLS (use https://)" in output
    finally:
        await port.stopListening()


@pytest.mark.parametrize(
    ("dialect", "words"),
    [
        ("xmpp", "which looks like an XMPP stream header"),
        ("ldap", "which looks like an LDAP StartTLS request"),
        ("postgres", "which looks like a PostgreSQL SSLRequest"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_openssl_starttls_client_to_a_tls_port_is_logged(pki: PKI, dialect: str, words: str) -> None:
    # The server logs while reading the client's first bytes, before it closes. Clients that speak first in plaintext (XMPP, LDAP, PostgreSQL), pointed at an implicit-TLS port.
    openssl = requireTool("openssl")
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}")
    try:
        args = [openssl, "s_client", "-connect", f"127.0.0.1:{port.getHost().port}", "-starttls", dialect]
        args += ["-CAfile", pki.ca_pem, "-verify_return_error", "-brief"]
        with LogCapture() as logs:
            done = await run(args, input=b"", timeout=20)
        assert done.returncode != 0
        logged = logs.text()
        assert words in logged, logged
        assert "this port speaks TLS from the first byte" in logged
        assert f"listen with starttls:...:dialect={dialect}; closed" in logged
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_psql_to_a_tls_port_is_logged(pki: PKI) -> None:
    psql = requireTool("psql")
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}")
    try:
        conninfo = (
            f"host=127.0.0.1 port={port.getHost().port} user=x dbname=x sslmode=require connect_timeout=10"
        )
        with LogCapture() as logs:
            done = await run([psql, conninfo, "-c", "select 1"], timeout=30)
        assert done.returncode != 0
        assert "which looks like a PostgreSQL SSLRequest" in logs.text()
        assert "listen with starttls:...:dialect=postgres; closed" in logs.text()
    finally:
        await port.stopListening()
