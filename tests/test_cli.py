"""
The securesock command: each store sub-command's output and exit status,
and a one-line error for every kind of bad input.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.internet.threads import deferToThread

from securesock._cli import main
from securesock._devca import certificatePEM, keyPEM

from .conftest import PASSPHRASE, PKI
from .peers import listen
from .storekit import StoreKit, peerCertificate, sha1, sha256

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def kit(tmp_path: Path) -> StoreKit:
    return StoreKit(tmp_path / "store")


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def failing(capsys: pytest.CaptureFixture[str], *argv: str, status: int = 1) -> str:
    got, out, err = cli(capsys, *argv)
    assert got == status, (out, err)
    assert err.count("\n") == 1 and err.startswith("securesock"), err  # one line
    assert out == ""
    return err


def mode(path: Path | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_list(kit: StoreKit, capsys: pytest.CaptureFixture[str]) -> None:
    kit.addCA("root-ca.pem")
    web = kit.add("web.pem", ["web.example"], commonName="Web")
    status, out, err = cli(capsys, "--store", str(kit.root), "store", "list")
    assert status == 0 and err == ""
    header, *rows = out.splitlines()
    assert header.split() == ["NAMES", "SUBJECT", "SHA-1", "SHA-256", "VALID", "UNTIL", "KEY", "FILE"]
    (row,) = [r for r in rows if "web.pem" in r]
    for expected in (
        "web, Web, web.example",
        "CN=Web",
        sha1(web.certificate),
        sha256(web.certificate),
        f"{web.certificate.not_valid_after_utc:%Y-%m-%d}",
        str(kit.root / "web.pem"),
    ):
        assert expected in row
    assert row.split()[-2] == "yes"
    (caRow,) = [r for r in rows if "root-ca.pem" in r]
    assert caRow.split()[-2] == "no"


def test_list_store_option_after_the_command(kit: StoreKit, capsys: pytest.CaptureFixture[str]) -> None:
    kit.add("web.pem", ["web.example"])
    status, out, _ = cli(capsys, "store", "list", "--store", str(kit.root))
    assert status == 0 and "web.pem" in out


def test_list_missing_and_empty_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = cli(capsys, "--store", str(tmp_path / "none"), "store", "list")
    assert status == 0 and "does not exist yet" in out
    status, out, _ = cli(capsys, "--store", str(tmp_path), "store", "list")
    assert status == 0 and out.startswith("no certificates in")


def test_list_shows_locked_pkcs12(kit: StoreKit, capsys: pytest.CaptureFixture[str]) -> None:
    kit.addP12("locked.p12", b"secret web", b"pw", ["locked.example"])
    _, out, _ = cli(capsys, "--store", str(kit.root), "store", "list")
    assert "give --passphrase" in out and "secret web" not in out
    os.environ["CLI_P12"] = "pw"
    try:
        _, out, _ = cli(capsys, "--store", str(kit.root), "store", "list", "--passphrase", "env:CLI_P12")
    finally:
        del os.environ["CLI_P12"]
    assert "secret web" in out and "encrypted" in out


def test_show_by_name_and_hashes(kit: StoreKit, capsys: pytest.CaptureFixture[str]) -> None:
    kit.addCA("root-ca.pem")
    kit.addCA("intermediate.pem", intermediate=True)
    leaf = kit.add("chained.pem", ["chained.example", "127.0.0.1"], underIntermediate=True)
    for ident in (
        "chained",
        "chained.example",
        sha1(leaf.certificate),
        sha1(leaf.certificate).replace(" ", "").upper(),
        sha256(leaf.certificate),
    ):
        status, out, _ = cli(capsys, "--store", str(kit.root), "store", "show", ident)
        assert status == 0, ident
        assert f"SHA-1:        {sha1(leaf.certificate)}" in out
        assert "DNS names:    chained.example" in out and "IP addresses: 127.0.0.1" in out
        assert "Usages:       serverAuth, clientAuth" in out
        assert f"Private key:  {kit.root / 'chained.pem'}" in out
        assert "  1. CN=kit intermediate CA" in out
        assert "  2. CN=kit root CA" in out and "(root, not sent)" in out


def test_show_errors(kit: StoreKit, capsys: pytest.CaptureFixture[str]) -> None:
    a = kit.add("a.pem", ["shared.example"])
    b = kit.add("b.pem", ["shared.example"])
    store = ("--store", str(kit.root))
    err = failing(capsys, *store, "store", "show", "shared.example")
    assert "2 certificates" in err and sha1(a.certificate) in err and sha1(b.certificate) in err
    assert str(kit.root / "a.pem") in err
    err = failing(capsys, *store, "store", "show", "shraed.example")
    assert "nearest names: shared.example" in err
    mistyped = sha1(a.certificate)[:52] + "o" + sha1(a.certificate)[53:]
    assert "character 53 is the letter 'o'" in failing(capsys, *store, "store", "show", mistyped)
    assert "does not exist" in failing(capsys, "--store", str(kit.root / "x"), "store", "show", "a")


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert "required: ACTION" in failing(capsys, "store", status=2)
    assert "invalid choice: 'lst'" in failing(capsys, "store", "lst", status=2)
    assert "required: ID" in failing(capsys, "store", "show", status=2)
    assert "argument --days: invalid int value" in failing(
        capsys, "store", "new", "x", "--days", "ten", status=2
    )


def test_import_pem_with_key(kit: StoreKit, pki: PKI, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = cli(capsys, "--store", str(kit.root), "store", "import", pki.server_pem, "--name", "web")
    assert status == 0
    target = kit.root / "web.pem"
    assert f"imported {target}" in out and "private key: yes" in out
    assert mode(target) == 0o600
    status, out, _ = cli(capsys, "--store", str(kit.root), "store", "show", "web")
    assert status == 0 and "CN=localhost" in out


def test_import_certificate_only_and_split_key(
    kit: StoreKit, pki: PKI, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ("--store", str(kit.root))
    status, out, _ = cli(capsys, *store, "store", "import", pki.ca_pem)
    assert status == 0 and "private key: no" in out and mode(kit.root / "ca.pem") == 0o644
    status, out, _ = cli(
        capsys, *store, "store", "import", pki.server_crt, "--key", pki.server_key, "--name", "split"
    )
    assert status == 0 and "private key: yes" in out and mode(kit.root / "split.pem") == 0o600
    err = failing(
        capsys, *store, "store", "import", pki.server_crt, "--key", pki.other_key, "--name", "wrong"
    )
    assert "does not belong to any certificate" in err
    assert not (kit.root / "wrong.pem").exists()


def test_import_pkcs12(
    kit: StoreKit, pki: PKI, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ("--store", str(kit.root))
    err = failing(capsys, *store, "store", "import", pki.server_p12)
    assert "without a passphrase: give --passphrase" in err
    monkeypatch.setenv("IMPORT_PASS", PASSPHRASE.decode())
    status, out, _ = cli(capsys, *store, "store", "import", pki.server_p12, "--passphrase", "env:IMPORT_PASS")
    assert status == 0 and mode(kit.root / "server.p12") == 0o600
    assert "names: web, server, localhost" in out  # friendlyName first
    err = failing(capsys, *store, "store", "import", pki.server_p12, "--passphrase", "env:IMPORT_PASS")
    assert "already exists" in err


def test_import_bad_input(kit: StoreKit, pki: PKI, capsys: pytest.CaptureFixture[str]) -> None:
    store = ("--store", str(kit.root))
    assert "holds no certificate" in failing(capsys, *store, "store", "import", pki.empty_pem)
    assert "No such file" in failing(capsys, *store, "store", "import", "/nonexistent.pem")
    assert "a store name is a file name" in failing(
        capsys, *store, "store", "import", pki.ca_pem, "--name", "../x"
    )
    err = failing(capsys, *store, "store", "import", pki.ca_pem, "--passphrase", "hunter2")
    assert "hunter2" not in err and "env:VARIABLE or file:PATH" in err


def test_remove(kit: StoreKit, capsys: pytest.CaptureFixture[str]) -> None:
    kit.add("pair.pem", ["pair.example"], split=True)
    status, out, _ = cli(capsys, "--store", str(kit.root), "store", "remove", "pair")
    assert status == 0
    assert out.splitlines() == [f"removed {kit.root / 'pair.crt'}", f"removed {kit.root / 'pair.key'}"]
    assert not (kit.root / "pair.crt").exists() and not (kit.root / "pair.key").exists()
    assert "no certificate in the store" in failing(
        capsys, "--store", str(kit.root), "store", "remove", "pair"
    )


def test_remove_refuses_a_chain_member(kit: StoreKit, capsys: pytest.CaptureFixture[str]) -> None:
    assert kit.intermediate is not None
    leaf = kit.leaf(["bundle.example"], underIntermediate=True)
    (kit.root / "bundle.pem").write_bytes(
        certificatePEM(leaf.certificate, kit.intermediate.certificate) + keyPEM(leaf.key)
    )
    err = failing(capsys, "--store", str(kit.root), "store", "remove", "kit intermediate CA")
    assert "part of the chain" in err and (kit.root / "bundle.pem").exists()


def test_export(kit: StoreKit, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kit.addCA("intermediate.pem", intermediate=True)
    leaf = kit.add("chained.pem", ["chained.example"], underIntermediate=True)
    status, out, _ = cli(capsys, "--store", str(kit.root), "store", "export", "chained")
    assert status == 0
    assert kit.intermediate is not None
    assert x509.load_pem_x509_certificates(out.encode()) == [leaf.certificate, kit.intermediate.certificate]
    assert "PRIVATE KEY" not in out
    status, out, _ = cli(capsys, "--store", str(kit.root), "store", "export", "chained", "--no-chain")
    assert x509.load_pem_x509_certificates(out.encode()) == [leaf.certificate]
    target = tmp_path / "exported.pem"
    status, out, _ = cli(
        capsys, "--store", str(kit.root), "store", "export", "chained", "--key", "--out", str(target)
    )
    assert status == 0 and out == f"wrote {target}\n" and mode(target) == 0o600
    key = serialization.load_pem_private_key(target.read_bytes(), None)
    assert key.public_key() == leaf.key.public_key()
    assert "already exists" in failing(
        capsys, "--store", str(kit.root), "store", "export", "chained", "--out", str(target)
    )
    kit.add("nokey.pem", ["nokey.example"], key=False)
    assert "no private key" in failing(capsys, "--store", str(kit.root), "store", "export", "nokey", "--key")


@pytest_twisted.ensureDeferred
async def test_new_development_certificates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "dev"
    status, out, _ = cli(
        capsys, "--store", str(store), "store", "new", "web", "--san", "localhost,127.0.0.1", "--days", "30"
    )
    assert status == 0
    caFile = store / "devca.crt"
    assert f"development CA (created now): {caFile}" in out
    assert "update-ca-certificates" in out or "certutil" in out or "security add-trusted-cert" in out
    assert f"trustRoots={caFile}" in out
    assert mode(store / "web.pem") == 0o600 and mode(store / ".devca" / "devca.key") == 0o600
    leaf = x509.load_pem_x509_certificate((store / "web.pem").read_bytes())
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert not san.critical
    assert leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    assert (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days == 30
    status, out, _ = cli(capsys, "--store", str(store), "store", "new", "api", "--san", "localhost")
    assert status == 0 and "development CA (already there)" in out
    api = x509.load_pem_x509_certificate((store / "api.pem").read_bytes())
    assert api.issuer == leaf.issuer
    # clients trust the one CA file: a real handshake
    port = await listen(f"tls:0:interface=127.0.0.1:certificate=api:store={store}")
    try:
        got, _, _ = await deferToThread(peerCertificate, port.getHost().port, str(caFile))
        assert got == api
    finally:
        await port.stopListening()


def test_new_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = ("--store", str(tmp_path / "dev"))
    assert "not a DNS name or an IP address" in failing(
        capsys, *store, "store", "new", "x", "--san", "bad name!"
    )
    assert "--days 0: accepted: 1..3650" in failing(capsys, *store, "store", "new", "x", "--days", "0")
    assert cli(capsys, *store, "store", "new", "web")[0] == 0
    assert "already exists" in failing(capsys, *store, "store", "new", "web")


def test_python_dash_m_and_console_script(kit: StoreKit) -> None:
    kit.add("web.pem", ["web.example"])
    result = subprocess.run(
        [sys.executable, "-m", "securesock", "--store", str(kit.root), "store", "show", "web"],
        capture_output=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0 and b"web.example" in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "securesock", "--store", str(kit.root), "store", "show", "nothing"],
        capture_output=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 1 and result.stderr.count(b"\n") == 1
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '[project.scripts]\nsecuresock = "securesock._cli:main"' in pyproject
    assert callable(main)
