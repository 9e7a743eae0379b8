"""
The starttls Twisted plugin prefix in a program we did not write: Twisted's
own ``twistd mail`` listening on ``--smtp starttls:...:dialect=smtp``, with
Python's smtplib (STARTTLS) as the client.  The dialect greets and upgrades;
Twisted's ESMTP then answers inside TLS.
"""

from __future__ import annotations

import smtplib
import ssl
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from ..conftest import PKI
from ..peers import Background, freePort

pytestmark = pytest.mark.interop

TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def implicitSession(pki: PKI, port: int) -> tuple[str, Any]:
    """Blocking: SMTP over implicit TLS (smtplib.SMTP_SSL), EHLO."""
    context = ssl.create_default_context(cafile=pki.ca_pem)
    with smtplib.SMTP_SSL("localhost", port, context=context, timeout=10) as client:
        return client.sock.version() or "", client.ehlo("client.example.test")  # type: ignore[attr-defined]


def smtpSession(pki: PKI, port: int) -> tuple[Any, str, Any, Any]:
    """Blocking: EHLO in plaintext, STARTTLS, EHLO and a message over TLS."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        before = client.ehlo("client.example.test")
        client.starttls(context=ssl.create_default_context(cafile=pki.ca_pem))
        version = client.sock.version() or ""  # type: ignore[attr-defined]
        after = client.ehlo("client.example.test")
        try:
            refused: Any = client.sendmail(
                "a@example.test", ["nobody@example.test"], b"Subject: x\r\n\r\nx\r\n"
            )
        except smtplib.SMTPRecipientsRefused as e:
            refused = e.recipients
        return before, version, after, refused


@pytest_twisted.ensureDeferred
async def test_twistd_mail_listens_with_the_starttls_prefix(pki: PKI, tmp_path: Path) -> None:
    # The docs' line: STARTTLS (starttls:, for 587) and implicit TLS (securesock:, for 465) side by side.
    port, implicit = freePort(), freePort()
    description = f"starttls:{port}:interface=127.0.0.1:certificate={pki.server_pem}:dialect=smtp"
    args = [*TWISTD, "-n", "--pidfile=", "mail", "--esmtp", "--hostname=localhost", "--no-pop3"]
    args += ["--maildirdbmdomain", f"example.test={tmp_path / 'maildir'}", "--smtp", description]
    args += ["--smtp", f"securesock:{implicit}:interface=127.0.0.1:certificate={pki.server_pem}"]
    server = Background(args, str(tmp_path / "twistd.log"), cwd=str(tmp_path))
    try:
        await deferToThread(
            server.waitFor, r"ESMTPFactory \(starttls, dialect=smtp\) starting on " + str(port), 30
        )
        await deferToThread(server.waitFor, r"starting on " + str(implicit), 30)
        before, version, after, refused = await deferToThread(smtpSession, pki, port)
        implicitVersion, implicitEhlo = await deferToThread(implicitSession, pki, implicit)
    finally:
        server.stop()
    assert implicitVersion == "TLSv1.3" and implicitEhlo[1].startswith(b"localhost Hello 127.0.0.1")
    # Plaintext: the dialect, offering only STARTTLS.
    assert before == (250, b"localhost\nSTARTTLS")
    assert version == "TLSv1.3"
    # Over TLS: Twisted's ESMTP itself (its EHLO answer), and its refusal of an unknown user.
    assert after[0] == 250 and after[1].startswith(b"localhost Hello 127.0.0.1")
    assert b"STARTTLS" not in after[1]
    assert refused == {"nobody@example.test": (550, b"Cannot receive for specified address")}
