"""``securesock check`` and ``securesock probe``, run as a user runs them."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

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


def _sServer(openssl: str, tmp_path: Path, *args: str) -> tuple[Background, str]:
    server = Background(
        [openssl, "s_server", "-accept", "127.0.0.1:0", "-www", *args], str(tmp_path / "s_server.log")
    )
    return server, server.waitFor(r"^ACCEPT .*:(\d+)$").group(1)


def test_probe_chain_in_the_form_of_store_list(pki: PKI, tmp_path: Path) -> None:
    """The leaf's row in probe's table carries the hashes store list shows for the same file."""
    openssl = requireTool("openssl")
    server, port = _sServer(
        openssl,
        tmp_path,
        "-cert",
        pki.chained_crt,
        "-key",
        pki.chained_key,
        "-cert_chain",
        pki.intermediate_pem,
    )
    try:
        probe = securesock("probe", f"tls:localhost:{port}:trustRoots={pki.ca_pem}:alpn=h2,http/1.1")
        assert probe.returncode == 0, probe.stderr
    finally:
        server.stop()
    store = tmp_path / "store"
    assert securesock("--store", str(store), "store", "import", pki.chained_pem).returncode == 0
    listing = securesock("--store", str(store), "store", "list")
    assert listing.returncode == 0, listing.stderr
    header = listing.stdout.splitlines()[0].split()
    assert header[:5] == ["NAMES", "SUBJECT", "SHA-1", "SHA-256", "VALID"]
    probeRows = probe.stdout.split("peer chain:\n", 1)[1]
    assert probeRows.splitlines()[0].split()[:5] == header[:5]
    hashes = re.compile(r"((?:[0-9a-f]{2} ){19}[0-9a-f]{2})\s+([0-9a-f]{64})\s+(\d{4}-\d\d-\d\d)")
    listed = hashes.findall(listing.stdout)
    probed = hashes.findall(probeRows)
    assert len(listed) == 2 and len(probed) == 2  # leaf and intermediate
    assert set(listed) == set(probed)


@pytest.mark.parametrize(
    "options, reason",
    [
        ("hostname=example.com", "is not valid for 'example.com'"),
        ("protocols=TLS1_2", "we offered TLS1_2; the peer accepts none of them"),
        (f"verify=no:pin=sha256:{'ab' * 32}", "which matches none of pin=sha256:"),
        ("", "did not verify: the issuer is not in the trust roots"),
    ],
)
def test_probe_says_why_it_failed(pki: PKI, tmp_path: Path, options: str, reason: str) -> None:
    openssl = requireTool("openssl")
    server, port = _sServer(openssl, tmp_path, "-cert", pki.server_crt, "-key", pki.server_key, "-tls1_3")
    try:
        trust = "" if options.startswith("verify=no") or not options else f":trustRoots={pki.ca_pem}"
        result = securesock("probe", f"tls:localhost:{port}{trust}" + (f":{options}" if options else ""))
    finally:
        server.stop()
    assert result.returncode == 1
    assert result.stdout == ""
    assert reason in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_probe_without_verification_says_so(pki: PKI, tmp_path: Path) -> None:
    openssl = requireTool("openssl")
    server, port = _sServer(openssl, tmp_path, "-cert", pki.server_crt, "-key", pki.server_key)
    try:
        result = securesock("probe", f"tls:localhost:{port}:verify=no")
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    assert f"connected to localhost:{port} (NOT verified: verify=no)" in result.stdout
    assert "Protocol version: TLSv1.3" in result.stdout


def test_probe_times_out_on_a_silent_server() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # accepts at the kernel level, never answers the ClientHello
        port = silent.getsockname()[1]
        result = securesock("probe", f"tls:127.0.0.1:{port}:verify=no", "--timeout", "1")
    assert result.returncode == 1
    assert f"could not probe 127.0.0.1:{port}: timed out" in result.stderr


@pytest.mark.parametrize(
    "timeout, problem",
    [("-1", "out of range"), ("nan", "out of range"), ("0", "out of range"), ("soon", "not a number")],
)
def test_probe_timeout_is_checked(timeout: str, problem: str) -> None:
    result = securesock("probe", "tls:127.0.0.1:1:verify=no", "--timeout", timeout)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (
        f"argument --timeout: --timeout={timeout!r}: {problem}; accepted: a number of seconds"
        in result.stderr
    )


def test_check_refuses_what_it_cannot_check(pki: PKI) -> None:
    result = securesock("check", "tcp:8080")
    assert result.returncode == 1
    assert "'tcp:8080' is not a securesock description" in result.stderr
    result = securesock("check", "tls:8443")
    assert result.returncode == 1 and "a TLS server needs a certificate" in result.stderr
    result = securesock("check", "--client", f"tls:localhost:443:verify=no:pin=sha256:{'ab' * 32}")
    assert result.returncode == 0, result.stderr
    assert "verification: OFF (verify=no); pins still checked" in result.stdout


def test_check_lists_only_ciphers_the_protocols_can_use(pki: PKI) -> None:
    only12 = securesock("check", f"tls:8443:certificate={pki.server_pem}:protocols=TLS1_2")
    only13 = securesock("check", f"tls:8443:certificate={pki.server_pem}:protocols=TLS1_3")
    assert only12.returncode == 0 and only13.returncode == 0, only12.stderr + only13.stderr
    ciphers12 = re.search(r"^  ciphers: (.*)$", only12.stdout, re.MULTILINE)
    ciphers13 = re.search(r"^  ciphers: (.*)$", only13.stdout, re.MULTILINE)
    assert ciphers12 is not None and ciphers13 is not None
    assert "ECDHE-ECDSA-AES128-GCM-SHA256" in ciphers12.group(1) and "TLS_AES" not in ciphers12.group(1)
    assert "TLS_AES_128_GCM_SHA256" in ciphers13.group(1) and "ECDHE" not in ciphers13.group(1)
    # An ECDSA key: no RSA suites, and no DHE ones without dhParameters=.
    assert "RSA" not in ciphers12.group(1) and "DHE-" not in ciphers12.group(1).replace("ECDHE-", "")


def test_check_lists_the_suites_of_the_key_and_dhe_only_with_dh_parameters(pki: PKI, tmp_path: Path) -> None:
    openssl = requireTool("openssl")
    dh = tmp_path / "dh.pem"
    subprocess.run(
        [openssl, "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", "group:ffdhe2048", "-out", str(dh)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    for extra, dhe in (("", False), (f":dhParameters={dh}", True)):
        result = securesock("check", f"tls:8443:certificate={pki.rsa_pem}:protocols=TLS1_2{extra}:noDelay=no")
        assert result.returncode == 0, result.stderr
        ciphers = re.search(r"^  ciphers: (.*)$", result.stdout, re.MULTILINE)
        assert ciphers is not None and "ECDHE-RSA-AES128-GCM-SHA256" in ciphers.group(1)
        assert "ECDSA" not in ciphers.group(1)
        assert ("DHE-RSA-AES128-GCM-SHA256" in ciphers.group(1).split(", ")) is dhe
        assert "  TCP_NODELAY: off (noDelay=no)" in result.stdout


@pytest.mark.parametrize(
    "description, side",
    [
        ("tls:localhost:443:protocols=TLS1_3", "client: tls:"),
        ("tls://example.com:443?alpn=h2", "client: tls:"),
        ("starttls:localhost:25:dialect=smtp", "client: starttls:"),
        ("tls://[::1]:8443?certificate={server}", "server: tls:"),
        ("tls:8443:certificate={server}", "server: tls:"),
    ],
)
def test_check_tells_servers_from_clients(pki: PKI, description: str, side: str) -> None:
    result = securesock("check", description.format(server=pki.server_pem))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(side)


def test_check_reads_a_port_first_as_a_server_and_a_directory_first_as_a_server(
    pki: PKI, tmp_path: Path
) -> None:
    twice = securesock("check", f"tls:20520:certificate={pki.server_pem}:port=20521")
    assert twice.returncode == 1 and "port is given twice ('20520' by position and as port=)" in twice.stderr
    directory = securesock("check", f"tls:{Path(pki.server_pem).parent}:20541")
    assert directory.returncode == 0 and directory.stdout.startswith("server: tls:"), directory.stderr


def test_check_gives_both_readings_when_neither_works(pki: PKI) -> None:
    result = securesock("check", f"tls:abc:certificate={pki.server_pem}")
    assert result.returncode == 1
    assert "read as a client's: tls: has no port" in result.stderr
    assert "read as a server's: port='abc': not a whole number" in result.stderr
    assert "(--server or --client says which it is)" in result.stderr


def test_check_prints_the_warnings_a_start_would_log(pki: PKI, tmp_path: Path) -> None:
    readable = tmp_path / "readable.pem"
    readable.write_bytes(Path(pki.server_pem).read_bytes())
    readable.chmod(0o644)
    result = securesock("check", f"tls:8443:certificate={readable}:protocols=TLS1+TLS1_2")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning: ")]
    assert any(f"private key file {readable} can be read by group or others" in w for w in warnings)
    assert len([w for w in warnings if "TLS 1.0 and 1.1 are deprecated (RFC 8996)" in w]) == 1
    assert len(warnings) == len(set(warnings))
    clean = securesock("check", f"tls:8443:certificate={pki.server_pem}")
    assert "warning:" not in clean.stdout


# The right column of docs/twistd.md's stunnel table, with the test PKI's files.
STUNNEL_ROWS = [
    "tls:443:interface=0.0.0.0:certificate={server_pem}",
    "tls:443:interface=127.0.0.1:certificate={server_pem}",
    "tls:443:certificate={server_crt}:privateKey={server_key}",
    "tls:host.example:465:certificate={client_pem}:trustRoots={ca_pem}",
    "tls:443:certificate={server_pem}:verifyClient=require:caCerts={ca_pem}",
    "tls:443:certificate={server_pem}:verifyClient=require:caCerts={cadir}",
    "tls:10.0.0.5:443:trustRoots={ca_pem}:hostname=h.example",
    f"tls:10.0.0.5:443:verify=no:pin=sha256:{'ab' * 32}",
    "tls:443:certificate={server_pem}:protocols=TLS1_2",
    "tls:443:certificate={server_pem}:protocols=TLS1_2+TLS1_3",
    "tls:443:certificate={server_pem}:ciphers=ECDHE-ECDSA-AES128-GCM-SHA256,ECDHE-ECDSA-CHACHA20-POLY1305",
    "tls:443:certificate={server_pem}:ciphers=ECDHE-ECDSA-AES128-GCM-SHA256\\:ECDHE-ECDSA-CHACHA20-POLY1305",
    "tls:443:certificate={server_pem}:protocols=TLS1+TLS1_2",
    "starttls:587:certificate={server_pem}:dialect=smtp",
    "starttls:mail.example:587:dialect=smtp",
    "tls:443:certificate={server_pem},{chained_pem}:sniStrict=yes",
    "tls:mail.example:465:hostname=name.example",
    "tls:443:certificate={server_pem}:reusePort=yes",
    "tls:443:certificate={server_pem}:exclusive=yes",
]


@pytest.mark.parametrize("row", STUNNEL_ROWS)
def test_stunnel_table_descriptions_are_valid(pki: PKI, row: str) -> None:
    description = row.format(
        server_pem=pki.server_pem,
        server_crt=pki.server_crt,
        server_key=pki.server_key,
        client_pem=pki.client_pem,
        chained_pem=pki.chained_pem,
        ca_pem=pki.ca_pem,
        cadir=pki.path("cadir"),
    )
    result = securesock("check", description)
    assert result.returncode == 0, result.stderr
    if ":protocols=TLS1+TLS1_2" in row:
        assert "protocols: TLS1+TLS1_2 " in result.stdout  # the hole is kept
    if "ciphers=" in row:
        ciphers = re.search(r"^  ciphers: (.*)$", result.stdout, re.MULTILINE)
        assert ciphers is not None
        assert "ECDHE-ECDSA-AES128-GCM-SHA256, ECDHE-ECDSA-CHACHA20-POLY1305" in ciphers.group(1)


def test_probe_through_starttls(pki: PKI, tmp_path: Path) -> None:
    """probe upgrades first when given a starttls: description (here against twistd securesock)."""
    from .test_tap import twistd

    port = freePort()
    listener = f"starttls:{port}:interface=127.0.0.1:certificate={pki.server_pem}:dialect=smtp"
    with twistd(tmp_path, "--listen", listener):
        result = securesock("probe", f"starttls:localhost:{port}:dialect=smtp:trustRoots={pki.ca_pem}")
        assert result.returncode == 0, result.stderr
        assert f"connected to localhost:{port} (verified)" in result.stdout
        assert "Protocol version: TLSv1.3" in result.stdout and "CN=localhost" in result.stdout
        wrong = securesock("probe", f"starttls:localhost:{port}:dialect=pop3:trustRoots={pki.ca_pem}")
        assert wrong.returncode == 1 and "StartTLSError" in wrong.stderr, wrong.stderr


def test_probe_with_dialect_none_says_the_connection_is_not_tls() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:  # the kernel accepts; nothing is said
        port = listener.getsockname()[1]
        result = securesock("probe", f"starttls:127.0.0.1:{port}:dialect=none:verify=no")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "is not TLS" in result.stderr, result.stderr


def _sServerAt(openssl: str, tmp_path: Path, port: int, *args: str) -> Background:
    """openssl s_server -www on a fixed loopback port."""
    server = Background(
        [openssl, "s_server", "-accept", f"127.0.0.1:{port}", "-www", *args],
        str(tmp_path / f"s_server-{port}.log"),
    )
    server.waitFor(r"^ACCEPT")
    return server


def test_probe_says_no_sni_is_sent_for_an_ip_address(pki: PKI, tmp_path: Path) -> None:
    """The SNI line says what the ClientHello carried, as s_server -trace saw it."""
    openssl = requireTool("openssl")
    server = _sServerAt(openssl, tmp_path, 28101, "-cert", pki.server_crt, "-key", pki.server_key, "-trace")
    try:
        byAddress = securesock("probe", f"tls:127.0.0.1:28101:trustRoots={pki.ca_pem}")
        assert byAddress.returncode == 0, byAddress.stderr
        assert "  SNI sent: none (an IP address is never sent as SNI)" in byAddress.stdout
        assert "server_name" not in server.text()
        byName = securesock("probe", f"tls:localhost:28101:trustRoots={pki.ca_pem}")
        assert byName.returncode == 0, byName.stderr
        assert "  SNI sent: localhost" in byName.stdout
    finally:
        server.stop()
    assert "server_name" in server.text()
    check = securesock("check", f"tls:127.0.0.1:443:trustRoots={pki.ca_pem}")
    assert "name '127.0.0.1' checked; an IP address is never sent as SNI" in check.stdout


@pytest.mark.parametrize("protocol, port", [("-tls1_3", 28102), ("-tls1_2", 28103)])
def test_probe_fails_when_the_server_requires_a_client_certificate(
    pki: PKI, tmp_path: Path, protocol: str, port: int
) -> None:
    """Under TLS 1.3 the server's refusal (certificate_required) comes after our handshake completed."""
    openssl = requireTool("openssl")
    server = _sServerAt(
        openssl, tmp_path, port, "-cert", pki.server_crt, "-key", pki.server_key, "-Verify", "1",
        "-CAfile", pki.ca_pem, protocol,
    )  # fmt: skip
    try:
        refused = securesock("probe", f"tls:localhost:{port}:trustRoots={pki.ca_pem}")
        accepted = securesock(
            "probe", f"tls:localhost:{port}:trustRoots={pki.ca_pem}:certificate={pki.client_pem}"
        )
    finally:
        server.stop()
    assert refused.returncode == 1 and refused.stdout == "", refused.stdout
    assert refused.stderr.count("\n") == 1, refused.stderr
    assert f"TLS handshake with localhost:{port} failed: " in refused.stderr
    assert "the server requires a client certificate and got none" in refused.stderr
    if protocol == "-tls1_3":
        assert "certificate required" in refused.stderr
    assert accepted.returncode == 0, accepted.stderr
    assert f"connected to localhost:{port} (verified)" in accepted.stdout


def test_check_names_the_client_certificate_a_hash_selects(pki: PKI, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import hashes

    store = tmp_path / "store"
    assert securesock("--store", str(store), "store", "import", pki.client_pem).returncode == 0
    certificate = x509.load_pem_x509_certificate(Path(pki.client_pem).read_bytes())
    thumbprint = certificate.fingerprint(hashes.SHA1()).hex()
    result = securesock("check", f"tls:localhost:443:store={store}:certificateHash={thumbprint.upper()}")
    assert result.returncode == 0, result.stderr
    (line,) = [row for row in result.stdout.splitlines() if row.startswith("  client certificate: ")]
    spacedHash = " ".join(thumbprint[i : i + 2] for i in range(0, len(thumbprint), 2))
    assert (
        line
        == f"  client certificate: CN=test client from {store / 'client.pem'} (certificateHash={spacedHash})"
    )
    byFile = securesock("check", f"tls:localhost:443:certificate={pki.client_pem}")
    assert f"  client certificate: CN=test client from {pki.client_pem}\n" in byFile.stdout


def _rsaFor(tmp_path: Path, name: str) -> str:
    """An RSA certificate and key for C{name}, in one PEM file."""
    from securesock._devca import certificatePEM, issue, keyPEM, makeAuthority

    leaf = issue(makeAuthority("check test CA"), [name], keyType="rsa")
    path = tmp_path / f"{name}.pem"
    path.write_bytes(certificatePEM(leaf.certificate) + keyPEM(leaf.key))
    path.chmod(0o600)
    return str(path)


def _tls12Cipher(port: int, serverName: str, cipher: str) -> str | None:
    """The suite a TLS 1.2 handshake offering only C{cipher} gets, None if refused."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(cipher)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        try:
            with context.wrap_socket(raw, server_hostname=serverName) as tls:
                negotiated = tls.cipher()
                return negotiated[0] if negotiated else None
        except ssl.SSLError:
            return None


def test_check_lists_the_suites_of_each_certificate(pki: PKI, tmp_path: Path) -> None:
    """An ECDSA and an RSA certificate: each gets its own suites, and the server negotiates them."""
    from .test_tap import twistd

    rsa = _rsaFor(tmp_path, "b.example")
    description = f"tls:28104:interface=127.0.0.1:certificate={pki.server_pem},{rsa}:protocols=TLS1_2+TLS1_3"
    result = securesock("check", description)
    assert result.returncode == 0, result.stderr
    blocks = result.stdout.split("  certificate (SNI): ")
    assert len(blocks) == 2
    ecdsa = re.search(r"^    ciphers: (.*)$", blocks[0], re.MULTILINE)
    rsaSuites = re.search(r"^    ciphers: (.*)$", blocks[1], re.MULTILINE)
    assert ecdsa is not None and rsaSuites is not None, result.stdout
    assert "ECDHE-ECDSA-AES128-GCM-SHA256" in ecdsa.group(1) and "-RSA-" not in ecdsa.group(1)
    assert "ECDHE-RSA-AES128-GCM-SHA256" in rsaSuites.group(1) and "ECDSA" not in rsaSuites.group(1)
    assert "  ciphers: depend on the certificate's key (listed with each certificate above)" in result.stdout
    assert "served for SNI: b.example" in blocks[1] and "warning:" not in result.stdout
    with twistd(tmp_path, "--listen", description):
        assert (
            _tls12Cipher(28104, "b.example", "ECDHE-RSA-AES128-GCM-SHA256") == "ECDHE-RSA-AES128-GCM-SHA256"
        )
        assert (
            _tls12Cipher(28104, "localhost", "ECDHE-ECDSA-AES128-GCM-SHA256")
            == "ECDHE-ECDSA-AES128-GCM-SHA256"
        )
        assert _tls12Cipher(28104, "localhost", "ECDHE-RSA-AES128-GCM-SHA256") is None


def test_check_warns_of_a_certificate_an_earlier_one_hides(pki: PKI, tmp_path: Path) -> None:
    """An RSA certificate for the names of an ECDSA one listed first is never served: check says so."""
    from .test_tap import twistd

    description = f"tls:28105:interface=127.0.0.1:certificate={pki.server_pem},{pki.rsa_pem}:protocols=TLS1_2"
    result = securesock("check", description)
    assert result.returncode == 0, result.stderr
    hidden = result.stdout.split("  certificate (SNI): ")[1].split("\n  ciphers")[0]
    assert "    served for SNI: none, never served (see the warning below)" in hidden
    assert "localhost" not in hidden.split("served for SNI")[1]
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1, result.stdout
    assert f"from {pki.rsa_pem} is never served: every name it has (localhost)" in warnings[0]
    assert f"is served by {pki.server_pem}" in warnings[0]
    assert "the first certificate listed in certificate=" in warnings[0]
    ciphers = re.search(r"^  ciphers: (.*)$", result.stdout, re.MULTILINE)
    assert ciphers is not None and "RSA" not in ciphers.group(1)  # the RSA certificate's are never usable
    with twistd(tmp_path, "--listen", description):  # what check says is what the server does
        assert _tls12Cipher(28105, "localhost", "ECDHE-RSA-AES128-GCM-SHA256") is None
        assert (
            _tls12Cipher(28105, "localhost", "ECDHE-ECDSA-AES128-GCM-SHA256")
            == "ECDHE-ECDSA-AES128-GCM-SHA256"
        )


def test_check_resolves_the_interface_as_a_start_does(pki: PKI, tmp_path: Path) -> None:
    from .test_tap import twistd

    description = f"tls:28106:interface=999.1.1.1:certificate={pki.server_pem}"
    result = securesock("check", description)
    assert result.returncode == 1 and result.stdout == ""
    assert "interface=999.1.1.1 does not resolve (" in result.stderr
    assert "give an address of this host or a name for one" in result.stderr
    with twistd(tmp_path, "--listen", description, expectRunning=False) as start:
        start.process.wait(30)
    assert "interface=999.1.1.1 does not resolve (" in start.log  # the same words as a start
    named = securesock("check", f"tls:28106:interface=localhost:certificate={pki.server_pem}")
    assert named.returncode == 0, named.stderr
    assert "listens on: port 28106, localhost (127.0.0.1" in named.stdout


def test_check_counts_a_certificate_an_address_chooses_as_served(tmp_path: Path) -> None:
    """Its names all taken by an earlier certificate, an IP subjectAltName still gives it to some clients."""
    from .storekit import StoreKit

    kit = StoreKit(tmp_path / "store")
    kit.add("a.pem", ["a.example"], commonName="A")
    kit.add("ip.pem", ["a.example", "127.0.0.2"], commonName="IP")
    result = securesock("check", "--server", f"tls:0:certificate=a,ip:store={kit.root}")
    assert result.returncode == 0, result.stderr
    assert "never served" not in result.stdout + result.stderr, result.stdout
    assert "served to clients of: 127.0.0.2 (the address they connect to, without SNI)" in result.stdout
