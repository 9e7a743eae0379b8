"""
TLS scanners we did not write, against running securesock servers:
sslyze (its own virtualenv, ~1 s a scan, in the default run) and Debian's
testssl (tens of seconds a scan: marked slow, not in the default run).

Both must find what docs/hardening.md promises: no SSL 2/3, TLS 1.0 or 1.1;
TLS 1.2 suites only with forward secrecy and AEAD; a chain that validates
against the test CA; Mozilla "intermediate" key exchange groups; no
compression; secure renegotiation only; and client authentication as
configured.  A server configured with legacy versions shows that the checks
can fail.  Scans run one at a time and write JSON to files.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from OpenSSL import SSL
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

import securesock
from securesock._context import INTERMEDIATE_CIPHERS

from ..conftest import PKI, REQUIRE_INTEROP, requireTool
from ..peers import listen, run

pytestmark = pytest.mark.interop

SSLYZE = Path.home() / ".cache" / "sslyze-venv" / "bin" / "sslyze"

# What Mozilla "intermediate" allows, in IANA names (sslyze) and OpenSSL names (testssl).
_TLS12_GOOD = re.compile(
    r"^TLS_(ECDHE_(ECDSA|RSA)|DHE_RSA)_WITH_(AES_(128|256)_GCM_SHA(256|384)|CHACHA20_POLY1305_SHA256)$"
)
_TLS12_GOOD_OPENSSL = re.compile(
    r"^(ECDHE-(ECDSA|RSA)|DHE-RSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)$"
)
_TLS13_GOOD = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
_GROUPS_GOOD = {"X25519", "secp256r1", "prime256v1", "secp384r1"}
_REFUSED = {"ssl_2_0": "SSL 2.0", "ssl_3_0": "SSL 3.0", "tls_1_0": "TLS 1.0", "tls_1_1": "TLS 1.1"}


def requireSslyze() -> str:
    """sslyze from its own virtualenv (.ci/install), or skip (fail under SECURESOCK_REQUIRE_INTEROP=1)."""
    if not SSLYZE.exists():
        message = f"sslyze is not installed at {SSLYZE} (see .ci/install)"
        if REQUIRE_INTEROP:
            pytest.fail(f"{message}, and SECURESOCK_REQUIRE_INTEROP=1 requires it")
        pytest.skip(message)
    return str(SSLYZE)


# --- the defaults, read from the context and seen by a client ------------------------

ROOT = Path(__file__).resolve().parents[2]


def test_default_server_context_is_mozilla_intermediate(pki: PKI) -> None:
    """What a server built from a bare description asks OpenSSL for (docs/hardening.md's table)."""
    endpoint = securesock.serverFromString(reactor, serverDescription(pki))
    context = endpoint.creator.context  # type: ignore[attr-defined]
    options = context.set_options(0)  # adds nothing; returns the options in force
    for name in ("OP_NO_COMPRESSION", "OP_NO_RENEGOTIATION", "OP_CIPHER_SERVER_PREFERENCE"):
        assert options & getattr(SSL, name), f"{name} is not set"
    assert not options & getattr(SSL, "OP_ALLOW_UNSAFE_LEGACY_RENEGOTIATION", 0)
    suites = SSL.Connection(context).get_cipher_list()
    tls12 = [s for s in suites if not s.startswith("TLS_")]
    assert tls12 and all(_TLS12_GOOD_OPENSSL.match(s) for s in tls12), tls12
    assert {s for s in suites if s.startswith("TLS_")} == _TLS13_GOOD


def test_docs_table_says_what_the_code_does() -> None:
    """Each row of the Mozilla table in docs/hardening.md: (setting, our default, Mozilla's value)."""
    text = (ROOT / "docs" / "hardening.md").read_text()
    rows = {
        cells[0]: cells[1:]
        for line in text.splitlines()
        if line.startswith("| ") and len(cells := [c.strip() for c in line.strip("|").split(" | ")]) == 3
    }
    assert rows["setting"] == ["securesock default", "Mozilla intermediate 5.7"]
    assert rows["protocol versions"][0].startswith("TLS 1.2, TLS 1.3 (`protocols=TLS1_2+TLS1_3`)")
    assert rows["protocol versions"][1] == "TLS 1.2, TLS 1.3"
    assert "all forward secret and AEAD" in rows["TLS 1.2 cipher suites"][0]
    assert len(INTERMEDIATE_CIPHERS.split(":")) == 9 and "nine" in rows["TLS 1.2 cipher suites"][1]
    assert rows["TLS compression"][0].startswith("off (`OP_NO_COMPRESSION`")
    assert rows["cipher order"][0].startswith("the server's (`OP_CIPHER_SERVER_PREFERENCE`)")
    assert "`OP_NO_RENEGOTIATION`" in rows["renegotiation"][0]
    assert rows["legacy (insecure) renegotiation"] == [
        "never (OpenSSL 3+ refuses it unless explicitly allowed)",
        "never",
    ]


def _tls12With(port: int, cafile: str, ciphers: str) -> tuple[str, str, int] | None:
    context = ssl.create_default_context(cafile=cafile)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(ciphers)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.cipher()


@pytest_twisted.ensureDeferred
async def test_the_server_chooses_the_suite(pki: PKI) -> None:
    """
    OP_CIPHER_SERVER_PREFERENCE, seen by a client: offered AES-256 first, the
    server still picks its own first choice, AES-128 (INTERMEDIATE_CIPHERS).
    """
    port = await listen(serverDescription(pki))
    try:
        offered = "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256"
        chosen = await deferToThread(_tls12With, port.getHost().port, pki.ca_pem, offered)
        assert chosen is not None and chosen[0] == "ECDHE-ECDSA-AES128-GCM-SHA256", chosen
    finally:
        await port.stopListening()


# --- sslyze ------------------------------------------------------------------------


async def sslyze(
    tmp_path: Path, pki: PKI, port: int, *extra: str, name: str = "sslyze"
) -> tuple[dict[str, Any], str]:
    """One scan: (the server's result from the JSON file, sslyze's own text output)."""
    out = tmp_path / f"{name}.json"
    args = [requireSslyze(), "--quiet", f"--json_out={out}", "--certinfo", f"--certinfo_ca_file={pki.ca_pem}"]
    args += ["--sslv2", "--sslv3", "--tlsv1", "--tlsv1_1", "--tlsv1_2", "--tlsv1_3"]
    args += ["--elliptic_curves", "--compression", "--reneg", *extra, f"localhost:{port}{{127.0.0.1}}"]
    done = await run(args, timeout=120)
    assert out.exists(), done.stderr.decode(errors="replace")
    [server] = json.loads(out.read_text())["server_scan_results"]
    assert server["connectivity_status"] == "COMPLETED", server.get("connectivity_error_trace")
    return server, done.stdout.decode(errors="replace")


def _scan(server: dict[str, Any], command: str) -> Any:
    attempt = server["scan_result"][command]
    assert attempt["status"] == "COMPLETED", (
        f"{command}: {attempt.get('error_reason')} {attempt.get('error_trace')}"
    )
    return attempt["result"]


def sslyzeProblems(server: dict[str, Any], *, renegotiation: bool = True) -> list[str]:
    """Everything sslyze found that docs/hardening.md says cannot happen (empty: all good)."""
    problems = []
    for command, name in _REFUSED.items():
        result = _scan(server, f"{command}_cipher_suites")
        if result["is_tls_version_supported"] or result["accepted_cipher_suites"]:
            problems.append(f"{name} accepted")
    for command, good in (("tls_1_2", _TLS12_GOOD.match), ("tls_1_3", _TLS13_GOOD.__contains__)):
        result = _scan(server, f"{command}_cipher_suites")
        if not result["accepted_cipher_suites"]:
            problems.append(f"{command} refused")
        for accepted in result["accepted_cipher_suites"]:
            suite = accepted["cipher_suite"]["name"]
            if not good(suite):
                problems.append(f"weak suite {suite} accepted")
    [deployment] = _scan(server, "certificate_info")["certificate_deployments"]
    validations = {v["trust_store"]["name"]: v for v in deployment["path_validation_results"]}
    supplied = validations.get("Supplied CA file", {})
    if not supplied.get("was_validation_successful"):
        problems.append(
            f"the chain does not validate against the test CA: {supplied.get('validation_error')}"
        )
    groups = {curve["name"] for curve in _scan(server, "elliptic_curves")["supported_curves"]}
    if groups - _GROUPS_GOOD:
        problems.append(f"key exchange groups beyond Mozilla intermediate: {sorted(groups - _GROUPS_GOOD)}")
    if _scan(server, "tls_compression")["supports_compression"]:
        problems.append("TLS compression")
    if renegotiation:
        renego = _scan(server, "session_renegotiation")
        if not renego["supports_secure_renegotiation"]:
            problems.append("no secure renegotiation indication (RFC 5746)")
        if renego["is_vulnerable_to_client_renegotiation_dos"]:
            problems.append("client-initiated renegotiation accepted")
    return problems


def clientAuth(server: dict[str, Any]) -> str:
    return str(server["connectivity_result"]["client_auth_requirement"])


def serverDescription(pki: PKI, *options: str, prefix: str = "tls") -> str:
    return ":".join([f"{prefix}:0:interface=127.0.0.1:certificate={pki.server_pem}", *options])


MOZILLA = "--mozilla_config=intermediate"
COMPLIANT = re.compile(r"localhost:\d+: OK - Compliant")


@pytest_twisted.ensureDeferred
async def test_sslyze_default_server(pki: PKI, tmp_path: Path) -> None:
    requireSslyze()
    port = await listen(serverDescription(pki))
    try:
        server, text = await sslyze(tmp_path, pki, port.getHost().port, MOZILLA)
    finally:
        await port.stopListening()
    assert sslyzeProblems(server) == []
    assert clientAuth(server) == "DISABLED"
    assert COMPLIANT.search(text), text


@pytest.mark.parametrize("mode, reported", [("optional", "OPTIONAL"), ("require", "REQUIRED")])
@pytest_twisted.ensureDeferred
async def test_sslyze_reports_client_authentication(
    pki: PKI, tmp_path: Path, mode: str, reported: str
) -> None:
    requireSslyze()
    port = await listen(serverDescription(pki, f"verifyClient={mode}", f"caCerts={pki.ca_pem}"))
    try:
        server, _ = await sslyze(tmp_path, pki, port.getHost().port)
    finally:
        await port.stopListening()
    assert clientAuth(server) == reported
    # sslyze cannot renegotiate without a certificate; the next test brings one.
    assert sslyzeProblems(server, renegotiation=mode != "require") == []


@pytest_twisted.ensureDeferred
async def test_sslyze_with_a_client_certificate(pki: PKI, tmp_path: Path) -> None:
    """verifyClient=require, scanned with a certificate the server accepts: everything, Mozilla included."""
    requireSslyze()
    port = await listen(serverDescription(pki, "verifyClient=require", f"caCerts={pki.ca_pem}"))
    try:
        extra = ("--cert", pki.client_pem, "--key", pki.client_pem, MOZILLA)
        server, text = await sslyze(tmp_path, pki, port.getHost().port, *extra)
    finally:
        await port.stopListening()
    assert sslyzeProblems(server) == []
    assert COMPLIANT.search(text), text


@pytest_twisted.ensureDeferred
async def test_sslyze_starttls_smtp(pki: PKI, tmp_path: Path) -> None:
    requireSslyze()
    port = await listen(serverDescription(pki, "dialect=smtp", prefix="starttls"))
    try:
        server, text = await sslyze(tmp_path, pki, port.getHost().port, "--starttls", "smtp", MOZILLA)
    finally:
        await port.stopListening()
    assert sslyzeProblems(server) == []
    assert clientAuth(server) == "DISABLED"
    assert COMPLIANT.search(text), text


@pytest_twisted.ensureDeferred
async def test_sslyze_sees_legacy_settings(pki: PKI, tmp_path: Path) -> None:
    """The checks can fail: a server asked for TLS 1.1 and CBC suites is caught."""
    requireSslyze()
    port = await listen(serverDescription(pki, "protocols=TLS1_1+TLS1_2"))
    try:
        server, text = await sslyze(tmp_path, pki, port.getHost().port, MOZILLA)
    finally:
        await port.stopListening()
    problems = sslyzeProblems(server)
    assert "TLS 1.1 accepted" in problems
    assert any(p.startswith("weak suite TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA") for p in problems), problems
    assert not COMPLIANT.search(text)


# --- testssl (slow) --------------------------------------------------------------------


async def runTestssl(
    tmp_path: Path, pki: PKI, port: int, *extra: str, name: str = "testssl"
) -> dict[str, str]:
    """One testssl run: finding id -> "SEVERITY finding"."""
    tool = requireTool("testssl")
    out = tmp_path / f"{name}.json"
    out.unlink(missing_ok=True)  # testssl refuses to overwrite, yet appends a fragment
    args = [tool, "--quiet", "--color", "0", "--warnings", "off", "--add-ca", pki.ca_pem]
    args += ["-p", "-S", "-E", "-f", "-R", "-C", *extra, "--jsonfile", str(out)]
    args += ["--ip", "127.0.0.1", f"localhost:{port}"]
    done = await run(args, timeout=300)
    assert out.exists(), done.stdout.decode(errors="replace")[-2000:]
    return {f["id"]: f"{f['severity']} {f['finding']}" for f in json.loads(out.read_text())}


def problemsFromTestssl(findings: dict[str, str]) -> list[str]:
    problems = []
    for key, name in (("SSLv2", "SSL 2.0"), ("SSLv3", "SSL 3.0"), ("TLS1", "TLS 1.0"), ("TLS1_1", "TLS 1.1")):
        if "not offered" not in findings.get(key, ""):
            problems.append(f"{name} accepted ({findings.get(key)})")
    for key in ("TLS1_2", "TLS1_3"):
        if " offered" not in findings.get(key, ""):
            problems.append(f"{key} not offered ({findings.get(key)})")
    for key, finding in findings.items():
        found = re.match(r"cipher-(ssl2|ssl3|tls1|tls1_1|tls1_2|tls1_3)_x", key)
        if found is None:
            continue
        suite = finding.split()[4]  # "INFO TLS 1.2 xc02c ECDHE-ECDSA-AES256-GCM-SHA384 ..."
        version = found.group(1)
        good = (
            suite in _TLS13_GOOD
            if version == "tls1_3"
            else version == "tls1_2" and _TLS12_GOOD_OPENSSL.match(suite) is not None
        )
        if not good:
            problems.append(f"weak suite {suite} accepted ({version})")
    if not findings.get("cert_chain_of_trust", "").startswith("OK passed"):
        problems.append(
            f"the chain does not validate against the test CA: {findings.get('cert_chain_of_trust')}"
        )
    groups = set(findings.get("PFS_ECDHE_curves", "").split()[1:])
    if not groups or groups - _GROUPS_GOOD:
        problems.append(f"key exchange groups: {sorted(groups)}")
    if "not vulnerable" not in findings.get("CRIME_TLS", ""):
        problems.append(f"compression: {findings.get('CRIME_TLS')}")
    if "supported" not in findings.get("secure_renego", ""):
        problems.append(f"secure renegotiation: {findings.get('secure_renego')}")
    if "not vulnerable" not in findings.get("secure_client_renego", "") and "client x509" not in findings.get(
        "secure_client_renego", ""
    ):
        problems.append(f"client-initiated renegotiation: {findings.get('secure_client_renego')}")
    return problems


_CLIENT_AUTH_SEEN = "client x509-based authentication"


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_testssl_default_server(pki: PKI, tmp_path: Path) -> None:
    port = await listen(serverDescription(pki))
    try:
        findings = await runTestssl(tmp_path, pki, port.getHost().port)
    finally:
        await port.stopListening()
    assert problemsFromTestssl(findings) == []
    assert not any(_CLIENT_AUTH_SEEN in f for f in findings.values())


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_testssl_starttls_smtp(pki: PKI, tmp_path: Path) -> None:
    port = await listen(serverDescription(pki, "dialect=smtp", prefix="starttls"))
    try:
        findings = await runTestssl(tmp_path, pki, port.getHost().port, "-t", "smtp")
    finally:
        await port.stopListening()
    assert problemsFromTestssl(findings) == []


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_testssl_reports_required_client_authentication(pki: PKI, tmp_path: Path) -> None:
    """
    testssl 3.0.8 notices a required client certificate only when its
    'openssl s_client' probe fails, which under TLS 1.3 it does not (the
    server refuses after the client's Finished); so this server is TLS 1.2.
    """
    description = serverDescription(pki, "protocols=TLS1_2", "verifyClient=require", f"caCerts={pki.ca_pem}")
    port = await listen(description)
    try:
        findings = await runTestssl(tmp_path, pki, port.getHost().port)
    finally:
        await port.stopListening()
    assert any(_CLIENT_AUTH_SEEN in f for f in findings.values()), findings
    assert [p for p in problemsFromTestssl(findings) if not p.startswith("TLS1_3")] == []


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_testssl_sees_legacy_settings(pki: PKI, tmp_path: Path) -> None:
    port = await listen(serverDescription(pki, "protocols=TLS1_1+TLS1_2"))
    try:
        findings = await runTestssl(tmp_path, pki, port.getHost().port)
    finally:
        await port.stopListening()
    problems = problemsFromTestssl(findings)
    assert any(p.startswith("TLS 1.1 accepted") for p in problems), problems
    assert any(p.startswith("weak suite ECDHE-ECDSA-AES128-SHA") for p in problems), problems
