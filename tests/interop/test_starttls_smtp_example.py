"""
The worked SMTP example of docs/starttls.md, checked: one Twisted ESMTP
application behind two securesock endpoints, implicit TLS (``tls:``, the
465 of RFC 8314) and STARTTLS (``starttls:...:dialect=smtp``, the 587 of
RFC 6409), mail delivered through each by clients we did not write, and
what each side says when a client uses the wrong one.  Port 0 stands for
465 and 587.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThread

import securesock

from ..conftest import PKI, REQUIRE_INTEROP, requireTool
from ..peers import run
from ..starttlspeers import LogCapture
from .test_starttls_python import Mailbox, esmtpFactory

pytestmark = pytest.mark.interop


@asynccontextmanager
async def mailServer(pki: PKI) -> AsyncIterator[tuple[Mailbox, int, int]]:
    """The docs' server: the same ESMTP factory on an implicit-TLS port and a STARTTLS port."""
    mailbox = Mailbox()
    factory = esmtpFactory(mailbox)
    implicit = await securesock.serverFromString(
        reactor, f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}"
    ).listen(factory)
    submission = await securesock.serverFromString(
        reactor, f"starttls:0:interface=127.0.0.1:certificate={pki.server_pem}:dialect=smtp"
    ).listen(factory)
    try:
        yield mailbox, implicit.getHost().port, submission.getHost().port
    finally:
        await implicit.stopListening()
        await submission.stopListening()


def smtplibBoth(pki: PKI, implicit: int, submission: int) -> tuple[str, str]:
    context = ssl.create_default_context(cafile=pki.ca_pem)
    with smtplib.SMTP_SSL("localhost", implicit, context=context, timeout=10) as client:  # 465
        client.sendmail("a@example.test", ["b@example.test"], b"Subject: 465\r\n\r\nvia implicit TLS\r\n")
        first = client.sock.version() or ""  # type: ignore[attr-defined]
    with smtplib.SMTP("localhost", submission, timeout=10) as client:  # 587
        client.starttls(context=context)
        client.sendmail("a@example.test", ["b@example.test"], b"Subject: 587\r\n\r\nvia STARTTLS\r\n")
        second = client.sock.version() or ""  # type: ignore[attr-defined]
    return first, second


@pytest_twisted.ensureDeferred
async def test_smtplib_through_465_and_587(pki: PKI) -> None:
    async with mailServer(pki) as (mailbox, implicit, submission):
        versions = await deferToThread(smtplibBoth, pki, implicit, submission)
    assert versions == ("TLSv1.3", "TLSv1.3")
    assert [m.rsplit(b"\n", 1)[-1] for m in mailbox.messages] == [b"via implicit TLS", b"via STARTTLS"]


@pytest_twisted.ensureDeferred
async def test_curl_smtps_and_smtp_ssl_reqd(pki: PKI, tmp_path: Any) -> None:
    curl = requireTool("curl")
    message = tmp_path / "mail.txt"
    message.write_bytes(b"Subject: curl\r\n\r\nsent by curl\r\n")
    common = ["-sS", "--cacert", pki.ca_pem, "--mail-from", "a@example.test", "--mail-rcpt", "b@example.test"]
    async with mailServer(pki) as (mailbox, implicit, submission):
        smtps = await run([curl, *common, "-T", str(message), f"smtps://localhost:{implicit}"])
        starttls = await run(
            [curl, *common, "-T", str(message), "--ssl-reqd", f"smtp://localhost:{submission}"]
        )
        # The wrong way round: smtps:// (TLS at once) to the STARTTLS port.
        wrong = await run([curl, *common, "-T", str(message), f"smtps://localhost:{submission}"])
    assert smtps.returncode == 0, smtps.stderr.decode()
    assert starttls.returncode == 0, starttls.stderr.decode()
    assert len(mailbox.messages) == 2
    assert wrong.returncode == 35 and b"wrong version number" in wrong.stderr


@pytest_twisted.ensureDeferred
async def test_swaks_tls_on_connect_and_tls(pki: PKI) -> None:
    swaks = requireTool("swaks")
    support = await run([swaks, "--support"], timeout=30)
    if b"=== TLS supported" not in support.stdout + support.stderr:
        if REQUIRE_INTEROP:
            pytest.fail("swaks cannot do TLS: install libnet-ssleay-perl (see .ci/install)")
        pytest.skip("swaks cannot do TLS here: libnet-ssleay-perl is not installed (see .ci/install)")
    common = ["--server", "127.0.0.1", "--tls-verify", "--tls-ca-path", pki.ca_pem, "--tls-sni", "localhost"]
    common += ["--from", "a@example.test", "--to", "b@example.test"]
    async with mailServer(pki) as (mailbox, implicit, submission):
        onConnect = await run([swaks, *common, "--port", str(implicit), "--tls-on-connect"], timeout=30)
        upgraded = await run([swaks, *common, "--port", str(submission), "--tls"], timeout=30)
    assert onConnect.returncode == 0, onConnect.stdout.decode()
    assert upgraded.returncode == 0, upgraded.stdout.decode()
    assert b"STARTTLS" not in onConnect.stdout and b"-> STARTTLS" in upgraded.stdout
    assert len(mailbox.messages) == 2


@pytest_twisted.ensureDeferred
async def test_securesock_clients_the_right_and_the_wrong_way(pki: PKI) -> None:
    async with mailServer(pki) as (mailbox, implicit, submission):
        # Right: tls: to 465, starttls: to 587; both connect only once the server is verified.
        for description in (
            f"tls:127.0.0.1:{implicit}:trustRoots={pki.ca_pem}",
            f"starttls:127.0.0.1:{submission}:trustRoots={pki.ca_pem}:dialect=smtp",
        ):
            connected = await securesock.clientFromString(reactor, description).connect(
                Factory.forProtocol(Protocol)
            )
            assert connected.transport.getPeerCertificate() is not None  # type: ignore[union-attr]
            connected.transport.loseConnection()  # type: ignore[union-attr]
        # Wrong: tls: to 587 is told what to write instead.
        with pytest.raises(securesock.TLSHandshakeError) as caught:
            await securesock.clientFromString(
                reactor, f"tls:127.0.0.1:{submission}:trustRoots={pki.ca_pem}"
            ).connect(Factory.forProtocol(Protocol))
        assert "which looks like an SMTP server's greeting" in str(caught.value)
        assert "connect with starttls:HOST:PORT:dialect=smtp" in str(caught.value)
        # Wrong: starttls: to 465 waits for a greeting that never comes, and says why.
        with LogCapture():
            with pytest.raises(securesock.StartTLSError) as stalled:
                await securesock.clientFromString(
                    reactor, f"starttls:127.0.0.1:{implicit}:trustRoots={pki.ca_pem}:timeout=1:dialect=smtp"
                ).connect(Factory.forProtocol(Protocol))
        assert "the server sent nothing" in str(stalled.value)
        assert "connect with tls:HOST:PORT" in str(stalled.value)
