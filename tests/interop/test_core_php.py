"""
PHP's stream sockets (php-cli, linked against the system OpenSSL), a client
we did not write, against securesock servers: tls:// and tlsv1.x://
transports, peer_name, peer_fingerprint, IPv6.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from ..conftest import HAVE_IPV6, PKI, requireTool
from ..peers import listen, run

pytestmark = pytest.mark.interop

# argv: transport URL, JSON of the 'ssl' context options.  Prints one JSON
# line (reply and stream_get_meta_data()['crypto']) or fails with status 2.
CLIENT = r"""<?php
$ctx = stream_context_create(['ssl' => json_decode($argv[2], true)]);
$fp = stream_socket_client($argv[1], $errno, $errstr, 10, STREAM_CLIENT_CONNECT, $ctx);
if ($fp === false) {
    fwrite(STDERR, "connect failed: $errno $errstr\n");
    exit(2);
}
stream_set_timeout($fp, 10);
fwrite($fp, "hello\n");
$reply = stream_get_contents($fp);
$meta = stream_get_meta_data($fp);
echo json_encode(['reply' => $reply, 'crypto' => $meta['crypto']]), "\n";
"""


@pytest.fixture(scope="module")
def phpClient(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("php") / "client.php"
    path.write_text(CLIENT)
    return str(path)


async def php(script: str, url: str, **options: Any) -> subprocess.CompletedProcess[bytes]:
    return await run(
        [requireTool("php"), "-d", "display_errors=stderr", script, url, json.dumps(options)],
        timeout=30,
    )


def session(result: subprocess.CompletedProcess[bytes]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def sha1Hex(path: str) -> str:
    return x509.load_pem_x509_certificate(Path(path).read_bytes()).fingerprint(hashes.SHA1()).hex()


@pytest_twisted.ensureDeferred
async def test_tls_stream(pki: PKI, phpClient: str) -> None:
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}")
    try:
        answer = session(
            await php(
                phpClient, f"tls://127.0.0.1:{port.getHost().port}", cafile=pki.ca_pem, peer_name="localhost"
            )
        )
        assert answer["reply"] == "HELLO alpn=none\n"
        assert answer["crypto"]["protocol"] == "TLSv1.3"
        # PHP checks peer_name: a name the certificate lacks is refused
        result = await php(
            phpClient, f"tls://127.0.0.1:{port.getHost().port}", cafile=pki.ca_pem, peer_name="example.com"
        )
        assert result.returncode == 2
        assert b"example.com" in result.stderr
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_peer_fingerprint(pki: PKI, phpClient: str) -> None:
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}")
    url = f"tls://127.0.0.1:{port.getHost().port}"
    try:
        good = sha1Hex(pki.server_pem)
        answer = session(
            await php(phpClient, url, cafile=pki.ca_pem, peer_name="localhost", peer_fingerprint=good)
        )
        assert answer["reply"] == "HELLO alpn=none\n"
        result = await php(
            phpClient,
            url,
            cafile=pki.ca_pem,
            peer_name="localhost",
            peer_fingerprint=sha1Hex(pki.stranger_pem),
        )
        assert result.returncode == 2
        assert b"peer_fingerprint match failure" in result.stderr
    finally:
        await port.stopListening()


@pytest.mark.parametrize(
    "protocols, transport, version",
    [
        ("TLS1", "tlsv1.0", "TLSv1"),
        ("TLS1+TLS1_2", "tlsv1.0", "TLSv1"),
        ("TLS1+TLS1_2", "tlsv1.2", "TLSv1.2"),
        ("TLS1_1", "tlsv1.1", "TLSv1.1"),
        ("TLS1_2+TLS1_3", "tlsv1.3", "TLSv1.3"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_version_transports(
    pki: PKI, phpClient: str, protocols: str, transport: str, version: str
) -> None:
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}:protocols={protocols}")
    try:
        answer = session(
            await php(
                phpClient,
                f"{transport}://127.0.0.1:{port.getHost().port}",
                cafile=pki.ca_pem,
                peer_name="localhost",
                security_level=0,
            )
        )
        assert answer["crypto"]["protocol"] == version
        assert answer["reply"] == "HELLO alpn=none\n"
    finally:
        await port.stopListening()


@pytest.mark.parametrize(
    "protocols, transport", [("TLS1+TLS1_2", "tlsv1.1"), ("TLS1_2+TLS1_3", "tlsv1.0"), ("TLS1", "tlsv1.2")]
)
@pytest_twisted.ensureDeferred
async def test_version_transports_refused(pki: PKI, phpClient: str, protocols: str, transport: str) -> None:
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}:protocols={protocols}")
    try:
        result = await php(
            phpClient,
            f"{transport}://127.0.0.1:{port.getHost().port}",
            cafile=pki.ca_pem,
            peer_name="localhost",
            security_level=0,
        )
        assert result.returncode == 2, result.stdout
        assert b"HELLO" not in result.stdout
    finally:
        await port.stopListening()


@pytest.mark.skipif(not HAVE_IPV6, reason="no IPv6 loopback on this machine")
@pytest_twisted.ensureDeferred
async def test_ipv6(pki: PKI, phpClient: str) -> None:
    port = await listen(f"tls://[::1]:0?certificate={pki.server_pem}&protocols=TLS1_2")
    try:
        answer = session(
            await php(
                phpClient, f"tls://[::1]:{port.getHost().port}", cafile=pki.ca_pem, peer_name="localhost"
            )
        )
        assert answer["crypto"]["protocol"] == "TLSv1.2"
        assert answer["reply"] == "HELLO alpn=none\n"
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_unknown_ca_refused(pki: PKI, phpClient: str) -> None:
    port = await listen(f"tls:0:interface=127.0.0.1:certificate={pki.stranger_pem}")
    try:
        result = await php(
            phpClient, f"tls://127.0.0.1:{port.getHost().port}", cafile=pki.ca_pem, peer_name="localhost"
        )
        assert result.returncode == 2
        assert b"certificate verify failed" in result.stderr
    finally:
        await port.stopListening()
