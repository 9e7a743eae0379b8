"""
curl, a client we did not write, against twisted.web served through a
securesock listening endpoint: curl offers ALPN h2,http/1.1 by default, so
this is the ALPN pitfall as users meet it.
"""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

import securesock

from ..conftest import HAVE_IPV6, PKI, requireTool
from ..peers import run

pytestmark = pytest.mark.interop

PAGE = b"served by securesock over twisted.web\n"


async def serveSite(description: str) -> Any:
    endpoint = securesock.serverFromString(reactor, description)
    root = Resource()
    root.putChild(b"", Data(PAGE, "text/plain"))
    return await endpoint.listen(Site(root))


async def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    """curl -v (its TLS report goes to stderr), with a time limit of its own too."""
    return await run([requireTool("curl"), "-sS", "-v", "--max-time", "15", *args], timeout=30)


def tlsVersion(result: subprocess.CompletedProcess[bytes]) -> str | None:
    found = re.search(r"SSL connection using (\S+) /", result.stderr.decode(errors="replace"))
    return found.group(1) if found else None


def assertServed(result: subprocess.CompletedProcess[bytes], version: str) -> None:
    err = result.stderr.decode(errors="replace")
    assert result.returncode == 0, err
    assert result.stdout == PAGE
    assert tlsVersion(result) == version, err
    assert "SSL certificate verify ok" in err, err


@pytest_twisted.ensureDeferred
async def test_default_alpn_offer(pki: PKI) -> None:
    port = await serveSite(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}")
    number = port.getHost().port
    try:
        result = await curl(
            "--cacert",
            pki.ca_pem,
            "--resolve",
            f"localhost:{number}:127.0.0.1",
            f"https://localhost:{number}/",
        )
        assertServed(result, "TLSv1.3")
        err = result.stderr.decode(errors="replace")
        assert re.search(r"ALPN.*offers h2,http/1\.1", err), err
        # Site declares http/1.1 (and h2 only where the h2 package is installed)
        assert re.search(r"ALPN.*server accepted (http/1\.1|h2)", err), err
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_http11_and_tls12(pki: PKI) -> None:
    port = await serveSite(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}")
    number = port.getHost().port
    try:
        where = ("--cacert", pki.ca_pem, "--resolve", f"localhost:{number}:127.0.0.1")
        result = await curl(*where, "--http1.1", "-w", "%{http_version}", f"https://localhost:{number}/")
        assert result.returncode == 0, result.stderr.decode(errors="replace")
        assert result.stdout == PAGE + b"1.1"
        assert re.search(r"ALPN.*server accepted http/1\.1", result.stderr.decode(errors="replace"))
        result = await curl(*where, "--tls-max", "1.2", f"https://localhost:{number}/")
        assertServed(result, "TLSv1.2")
        # the certificate also names 127.0.0.1: curl checks the address
        assertServed(await curl("--cacert", pki.ca_pem, f"https://127.0.0.1:{number}/"), "TLSv1.3")
    finally:
        await port.stopListening()


@pytest.mark.skipif(not HAVE_IPV6, reason="no IPv6 loopback on this machine")
@pytest_twisted.ensureDeferred
async def test_ipv6(pki: PKI) -> None:
    port = await serveSite(f"tls://[::1]:0?certificate={pki.server_pem}")
    number = port.getHost().port
    try:
        assertServed(await curl("--cacert", pki.ca_pem, f"https://[::1]:{number}/"), "TLSv1.3")
        assertServed(
            await curl(
                "--cacert", pki.ca_pem, "--resolve", f"localhost:{number}:::1", f"https://localhost:{number}/"
            ),
            "TLSv1.3",
        )
        assertServed(
            # https://localhost/ means port 443; --connect-to sends it to [::1]:PORT
            await curl(
                "--cacert", pki.ca_pem, "--connect-to", f"localhost:443:[::1]:{number}", "https://localhost/"
            ),
            "TLSv1.3",
        )
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_default_listener_serves_both_families(pki: PKI) -> None:
    port = await serveSite(f"tls:0:certificate={pki.server_pem}")
    number = port.getHost().port
    try:
        assertServed(await curl("--cacert", pki.ca_pem, f"https://127.0.0.1:{number}/"), "TLSv1.3")
        if HAVE_IPV6:
            assertServed(await curl("--cacert", pki.ca_pem, f"https://[::1]:{number}/"), "TLSv1.3")
    finally:
        await port.stopListening()


@pytest.mark.parametrize(
    "certificate, protocols, curlArgs, status",
    [
        ("stranger_pem", "", (), 60),  # unknown CA
        ("server_pem", ":protocols=TLS1_2", ("--tlsv1.3", "--tls-max", "1.3"), 35),
        ("server_pem", ":protocols=TLS1_3", ("--tls-max", "1.2"), 35),
        ("server_pem", ":protocols=TLS1", ("--tlsv1.2",), 35),
    ],
)
@pytest_twisted.ensureDeferred
async def test_refusals(
    pki: PKI, certificate: str, protocols: str, curlArgs: tuple[str, ...], status: int
) -> None:
    port = await serveSite(f"tls:0:interface=127.0.0.1:certificate={getattr(pki, certificate)}{protocols}")
    number = port.getHost().port
    try:
        result = await curl(
            "--cacert",
            pki.ca_pem,
            "--resolve",
            f"localhost:{number}:127.0.0.1",
            *curlArgs,
            f"https://localhost:{number}/",
        )
        assert result.returncode == status, result.stderr.decode(errors="replace")
        assert result.stdout == b""
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_wrong_name_refused(pki: PKI) -> None:
    port = await serveSite(f"tls:0:interface=127.0.0.1:certificate={pki.client_pem}")
    number = port.getHost().port
    try:
        result = await curl(
            "--cacert",
            pki.ca_pem,
            "--resolve",
            f"localhost:{number}:127.0.0.1",
            f"https://localhost:{number}/",
        )
        assert result.returncode == 60, result.stderr.decode(errors="replace")
        assert "localhost" in result.stderr.decode(errors="replace")
    finally:
        await port.stopListening()
