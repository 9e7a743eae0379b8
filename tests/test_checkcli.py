"""``securesock check`` and ``securesock probe``, run as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .conftest import PKI, requireTool
from .peers import Background, freePort


def securesock(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "securesock", *args], capture_output=True, text=True, timeout=timeout
    )


def test_check_server_prints_resolved_configuration(pki: PKI) -> None:
    result = securesock(
        "check",
        f"tls:8443:certificate={pki.chained_pem}:protocols=TLS1+TLS1_2:verifyClient=require:caCerts={pki.ca_pem}",
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "listens on: port 8443, all interfaces" in out
    assert "protocols: TLS1+TLS1_2 (OpenSSL" in out
    assert "certificate: CN=chained.localhost from " + pki.chained_pem in out
    assert "chain: CN=securesock test intermediate" in out
    assert "client certificates: require (CA: " + pki.ca_pem in out
    assert "ECDHE-ECDSA-AES128-SHA" in out  # the legacy suites TLS 1.0 needs
    assert len([line for line in out.splitlines() if line.strip().startswith("SHA-1: ")]) == 1
    assert "PRIVATE KEY" not in out + result.stderr


def test_check_client(pki: PKI) -> None:
    result = securesock(
        "check",
        f"tls:example.com:443:trustRoots={pki.ca_pem}:pin=sha256:{'ab' * 32}:hostname=www.example.com",
    )
    assert result.returncode == 0, result.stderr
    assert "connects to: example.com:443" in result.stdout
    assert "name 'www.example.com' checked and sent as SNI" in result.stdout
    assert f"pin: sha256:{'ab' * 32}" in result.stdout


def test_check_errors_are_one_line_with_exit_1(pki: PKI) -> None:
    result = securesock("check", "tls:8443:certificat=site.pem")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "unknown server option 'certificat' (did you mean 'certificate'?)" in result.stderr
    result = securesock("check", f"tls:8443:certificate={pki.expired_pem}")
    assert result.returncode == 1 and "expired on" in result.stderr


def test_check_does_not_listen(pki: PKI) -> None:
    import socket

    port = freePort()
    assert securesock("check", f"tls:{port}:interface=127.0.0.1:certificate={pki.server_pem}").returncode == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # still free


def test_probe_against_openssl_s_server(pki: PKI, tmp_path: Path) -> None:
    openssl = requireTool("openssl")
    server = Background(
        [
            openssl,
            "s_server",
            "-accept",
            "127.0.0.1:0",
            "-cert",
            pki.chained_crt,
            "-key",
            pki.chained_key,
            "-cert_chain",
            pki.intermediate_pem,
            "-www",
            "-tls1_2",
        ],
        str(tmp_path / "s_server.log"),
    )
    try:
        port = server.waitFor(r"^ACCEPT .*:(\d+)$").group(1)
        result = securesock("probe", f"tls:localhost:{port}:trustRoots={pki.ca_pem}")
        assert result.returncode == 0, result.stderr
        assert f"connected to localhost:{port} (verified)" in result.stdout
        assert "Protocol version: TLSv1.2" in result.stdout
        assert "CN=chained.localhost" in result.stdout and "CN=securesock test intermediate" in result.stdout
        assert "localhost, 127.0.0.1" in result.stdout  # the NAMES column of store list
        failed = securesock("probe", f"tls:localhost:{port}:trustRoots={pki.path('other-ca.pem')}")
        assert failed.returncode == 1
        assert "did not verify: the issuer is not in the trust roots" in failed.stderr
    finally:
        server.stop()


def test_probe_connection_refused() -> None:
    result = securesock("probe", f"tls:127.0.0.1:{freePort()}:verify=no", timeout=60)
    assert result.returncode == 1
    assert "could not probe 127.0.0.1:" in result.stderr and "refused" in result.stderr
