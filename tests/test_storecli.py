"""
The store command against real tools: `store new` certificates as strict
verifiers want them (openssl verify -x509_strict, sslyze, curl), the
installed console script with the default store location, and the edges of
remove/show/new (development CA pair, a store path that is a file).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import pytest_twisted
from cryptography import x509

from securesock._cli import main
from securesock._devca import certificatePEM, keyPEM

from .conftest import REQUIRE_INTEROP, requireTool
from .peers import listen, run
from .storekit import StoreKit, sha1

SSLYZE = Path.home() / ".cache" / "sslyze-venv" / "bin" / "sslyze"


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def failing(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    status, out, err = cli(capsys, *argv)
    assert status == 1, (out, err)
    assert out == "" and err.count("\n") == 1 and err.startswith("securesock: error: "), err
    return err


@pytest.fixture
def dev(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A store with the development CA and two leaves: web (EC) and api (RSA)."""
    store = tmp_path / "dev"
    for argv in (
        ("new", "web", "--san", "localhost", "--san", "127.0.0.1,::1"),
        ("new", "api", "--san", "localhost", "--key-type", "rsa", "--days", "20"),
    ):
        status, _, err = cli(capsys, "--store", str(store), "store", *argv)
        assert status == 0, err
    return store


@pytest.mark.parametrize("name", ["web", "api"])
@pytest.mark.parametrize("purpose", ["sslserver", "sslclient"])
def test_new_certificates_pass_openssl_x509_strict(dev: Path, name: str, purpose: str) -> None:
    openssl = requireTool("openssl")
    result = subprocess.run(
        [openssl, "verify", "-x509_strict", "-purpose", purpose, "-CAfile", str(dev / "devca.crt")]
        + [str(dev / f"{name}.pem")],
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 0 and result.stdout.strip().endswith(b": OK"), result
    # the same check fails for a certificate from another CA: the test can fail
    other = subprocess.run(
        [openssl, "verify", "-x509_strict", "-CAfile", str(dev / f"{name}.pem"), str(dev / "devca.crt")],
        capture_output=True,
        timeout=30,
    )
    assert other.returncode != 0


def test_new_certificate_extensions(dev: Path) -> None:
    leaf = x509.load_pem_x509_certificate((dev / "web.pem").read_bytes())
    ca = x509.load_pem_x509_certificate((dev / "devca.crt").read_bytes())
    extensions = {e.oid._name: e for e in leaf.extensions}
    assert not extensions["subjectAltName"].critical
    assert extensions["basicConstraints"].critical and not extensions["basicConstraints"].value.ca
    assert [u._name for u in extensions["extendedKeyUsage"].value] == ["serverAuth", "clientAuth"]
    aki = extensions["authorityKeyIdentifier"].value.key_identifier
    assert aki == ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert leaf.subject.rfc4514_string() == "CN=web"


@pytest_twisted.ensureDeferred
async def test_sslyze_validates_a_new_certificate(dev: Path, tmp_path: Path) -> None:
    """sslyze rejects leaves without key identifiers or with a critical SAN: this one passes."""
    if not SSLYZE.exists():
        message = f"sslyze is not installed at {SSLYZE} (see .ci/install)"
        if REQUIRE_INTEROP:
            pytest.fail(f"{message}, and SECURESOCK_REQUIRE_INTEROP=1 requires it")
        pytest.skip(message)
    port = await listen(f"tls:0:interface=127.0.0.1:certificate=web:store={dev}")
    out = tmp_path / "sslyze.json"
    try:
        done = await run(
            [
                str(SSLYZE),
                "--quiet",
                f"--json_out={out}",
                "--certinfo",
                f"--certinfo_ca_file={dev / 'devca.crt'}",
            ]
            + [f"localhost:{port.getHost().port}{{127.0.0.1}}"],
            timeout=120,
        )
    finally:
        await port.stopListening()
    assert out.exists(), done.stderr.decode(errors="replace")
    [server] = json.loads(out.read_text())["server_scan_results"]
    info = server["scan_result"]["certificate_info"]
    assert info["status"] == "COMPLETED", info.get("error_trace")
    [deployment] = info["result"]["certificate_deployments"]
    supplied = [
        p for p in deployment["path_validation_results"] if p["trust_store"]["name"] == "Supplied CA file"
    ]
    assert [(p["was_validation_successful"], p["validation_error"]) for p in supplied] == [(True, None)]
    # sslyze 6 validates with cryptography's verifier: server name, key identifiers, SAN criticality
    assert len(deployment["verified_certificate_chain"]) == 2  # leaf and the development CA
    assert deployment["received_chain_has_valid_order"] is True


@pytest_twisted.ensureDeferred
async def test_curl_trusts_the_one_development_ca(dev: Path) -> None:
    curl = requireTool("curl")
    port = await listen(f"tls:0:interface=127.0.0.1:certificate=web:store={dev}")
    try:
        url = f"https://localhost:{port.getHost().port}/"
        ok = await run([curl, "-sS", "--max-time", "10", "--cacert", str(dev / "devca.crt"), url], timeout=30)
        refused = await run([curl, "-sS", "--max-time", "10", url], timeout=30)  # system roots only
    finally:
        await port.stopListening()
    # The Shout application answers the request line in upper case, so curl gets a reply or an
    # empty/odd answer; what matters is that TLS verification succeeded (not 60) with the CA.
    assert ok.returncode not in (35, 60), ok.stderr
    assert refused.returncode == 60, refused.stderr


def _script() -> str:
    path = shutil.which("securesock")
    if path is None:
        pytest.fail("the securesock console script is not installed (pip install -e .)")
    return path


def test_console_script_uses_the_default_store(tmp_path: Path) -> None:
    """$XDG_DATA_HOME/securesock/store when $SECURESOCK_STORE is unset; each command's exit status."""
    env = {k: v for k, v in os.environ.items() if k != "SECURESOCK_STORE"}
    env.update(HOME=str(tmp_path / "home"), XDG_DATA_HOME=str(tmp_path / "data"))
    store = tmp_path / "data" / "securesock" / "store"

    def securesock(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([_script(), *argv], capture_output=True, text=True, timeout=60, env=env)

    listed = securesock("store", "list")
    assert listed.returncode == 0 and f"the certificate store {store} does not exist yet" in listed.stdout
    made = securesock("store", "new", "web", "--san", "localhost")
    assert made.returncode == 0 and f"created {store / 'web.pem'}" in made.stdout
    assert "serve it:  tls:8443:certificate=web\n" in made.stdout  # default store: no store= needed
    assert stat.S_IMODE((store / "web.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((store / ".devca" / "devca.key").stat().st_mode) == 0o600
    listed = securesock("store", "list")
    assert listed.returncode == 0 and listed.stdout.splitlines()[0].startswith("NAMES")
    assert any(line.startswith("web, localhost") for line in listed.stdout.splitlines())
    leaf = x509.load_pem_x509_certificate((store / "web.pem").read_bytes())
    shown = securesock("store", "show", sha1(leaf))
    assert shown.returncode == 0 and "Names:        web, localhost" in shown.stdout
    exported = securesock("store", "export", "web")
    assert exported.returncode == 0 and x509.load_pem_x509_certificates(exported.stdout.encode()) == [leaf]
    missing = securesock("store", "remove", "wbe")
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.splitlines() == [
        f"securesock: error: no certificate in the store {store} has the name 'wbe'; nearest names: web"
    ]
    removed = securesock("store", "remove", "web")
    assert removed.returncode == 0 and removed.stdout == f"removed {store / 'web.pem'}\n"
    env["HOME"] = str(tmp_path / "home")
    del env["XDG_DATA_HOME"]  # then ~/.local/share
    made = securesock("store", "new", "home")
    assert made.returncode == 0
    assert (tmp_path / "home" / ".local" / "share" / "securesock" / "store" / "home.pem").exists()


def test_removing_the_development_ca_removes_its_key(dev: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = x509.load_pem_x509_certificate((dev / "devca.crt").read_bytes())
    status, out, _ = cli(capsys, "--store", str(dev), "store", "remove", sha1(old))
    assert status == 0
    assert out.splitlines() == [f"removed {dev / 'devca.crt'}", f"removed {dev / '.devca' / 'devca.key'}"]
    status, out, _ = cli(capsys, "--store", str(dev), "store", "new", "fresh")
    assert status == 0 and "development CA (created now)" in out
    assert x509.load_pem_x509_certificate((dev / "devca.crt").read_bytes()) != old


def test_removing_a_certificate_removes_every_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same certificate in a bundle, split into .crt/.key, and in a chain: its own files go, the chain stays."""
    kit = StoreKit(tmp_path / "store")
    issued = kit.leaf(["copies.example"])
    kit.write("bundle.pem", issued)
    kit.write("split.pem", issued, split=True)
    kit.add("other.pem", ["other.example"])
    with open(kit.root / "other.pem", "ab") as chain:  # issued, as a chain certificate of other.pem
        chain.write((kit.root / "split.crt").read_bytes())
    status, out, _ = cli(capsys, "--store", str(kit.root), "store", "remove", "copies.example")
    assert status == 0
    assert sorted(out.splitlines()) == sorted(
        f"removed {kit.root / name}" for name in ("bundle.pem", "split.crt", "split.key")
    )
    assert sorted(p.name for p in kit.root.iterdir() if not p.name.startswith(".")) == ["other.pem"]
    status, out, _ = cli(capsys, "--store", str(kit.root), "store", "show", "other.example")
    assert status == 0


def test_development_certificate_follows_a_remade_ca(dev: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """twistd's localhost certificate is reissued when the CA clients are told to trust was remade."""
    from securesock._devcert import developmentCertificate

    leafFile, caFile = developmentCertificate(str(dev))
    first = x509.load_pem_x509_certificate(Path(leafFile).read_bytes())
    assert developmentCertificate(str(dev)) == (leafFile, caFile)
    assert x509.load_pem_x509_certificate(Path(leafFile).read_bytes()) == first  # still good: kept
    old = x509.load_pem_x509_certificate(Path(caFile).read_bytes())
    status, _, _ = cli(capsys, "--store", str(dev), "store", "remove", sha1(old))
    assert status == 0
    assert developmentCertificate(str(dev)) == (leafFile, caFile)
    ca = x509.load_pem_x509_certificate(Path(caFile).read_bytes())
    leaf = x509.load_pem_x509_certificate(Path(leafFile).read_bytes())
    assert ca != old and leaf != first
    leaf.verify_directly_issued_by(ca)


def test_store_path_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = tmp_path / "plain"
    plain.write_text("x")
    for argv in (("list",), ("new", "web"), ("show", "web"), ("import", str(plain))):
        err = failing(capsys, "--store", str(plain), "store", *argv)
        assert f"the certificate store {plain} is not a directory" in err, argv


def test_new_names_the_argument_it_refuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = failing(capsys, "--store", str(tmp_path / "s"), "store", "new", "bad name")
    assert "NAME 'bad name': a store name is a file name" in err
    assert not (tmp_path / "s").exists()


def test_a_name_that_looks_like_a_thumbprint_is_still_a_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kit = StoreKit(tmp_path / "store")
    name = "deadbeefcafe0123456789ab"  # 24 hex digits: neither SHA-1 nor SHA-256
    kit.add(f"{name}.pem", ["odd.example"])
    status, out, _ = cli(capsys, "--store", str(kit.root), "store", "show", name)
    assert status == 0 and "odd.example" in out
    err = failing(capsys, "--store", str(kit.root), "store", "show", name + "00")
    assert "26 hex digits found" in err


def test_a_name_already_used_by_another_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kit = StoreKit(tmp_path / "store")
    kit.add("web.pem", ["web.example"], split=True)  # web.crt + web.key
    err = failing(capsys, "--store", str(kit.root), "store", "new", "web")
    assert "the name 'web' is already used in the store by sha1" in err and "web.crt" in err
    assert not (kit.root / "web.pem").exists()
    kit.addP12("bundle.p12", b"friendly", None, ["p12.example"])
    assert "already used" in failing(capsys, "--store", str(kit.root), "store", "new", "friendly")


def test_export_of_an_encrypted_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography.hazmat.primitives import serialization

    kit = StoreKit(tmp_path / "store")
    issued = kit.add("locked.pem", ["locked.example"], passphrase=b"open sesame")
    store = ("--store", str(kit.root))
    err = failing(capsys, *store, "store", "export", "locked", "--key")
    assert "--key: the private key of sha1" in err and "give --passphrase env:VARIABLE" in err
    monkeypatch.setenv("EXPORT_PASS", "closed sesame")
    err = failing(capsys, *store, "store", "export", "locked", "--key", "--passphrase", "env:EXPORT_PASS")
    assert "--passphrase env:EXPORT_PASS does not open the private key of sha1" in err
    assert f"(in {kit.root / 'locked.pem'}; a wrong passphrase?)" in err and "closed sesame" not in err
    monkeypatch.setenv("EXPORT_PASS", "open sesame")
    status, out, _ = cli(
        capsys, *store, "store", "export", "locked", "--key", "--passphrase", "env:EXPORT_PASS"
    )
    assert status == 0 and "-----BEGIN ENCRYPTED PRIVATE KEY-----" in out  # stays encrypted
    key = serialization.load_pem_private_key(out.encode(), b"open sesame")
    assert key.public_key() == issued.key.public_key()


def test_an_encrypted_pkcs12_the_passphrase_does_not_open_is_named_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    kit = StoreKit(tmp_path / "store")
    kit.addP12("bundle.p12", b"friendly", b"right one", ["p12.example"])
    store = ("--store", str(kit.root))
    err = failing(capsys, *store, "store", "show", "friendly")
    assert "1 encrypted PKCS#12 file(s) not searched: give --passphrase" in err
    monkeypatch.setenv("SHOW_PASS", "wrong one")
    err = failing(capsys, *store, "store", "show", "friendly", "--passphrase", "env:SHOW_PASS")
    assert "not searched: the --passphrase given does not open them" in err
    assert "wrong one" not in err
    monkeypatch.setenv("SHOW_PASS", "right one")
    status, out, _ = cli(capsys, *store, "store", "show", "friendly", "--passphrase", "env:SHOW_PASS")
    assert status == 0 and "p12.example" in out


def test_removing_without_the_passphrase_names_the_encrypted_files_not_searched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy inside an encrypted PKCS#12 would still answer to the ID: say so, and remove it with --passphrase."""
    from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12

    kit = StoreKit(tmp_path / "store")
    issued = kit.leaf(["copies.example"])
    kit.write("copies.pem", issued)
    encrypted = pkcs12.serialize_key_and_certificates(
        b"copies",
        issued.key,
        issued.certificate,
        None,
        BestAvailableEncryption(b"p12 secret"),  # type: ignore[arg-type]
    )
    (kit.root / "copies.p12").write_bytes(encrypted)
    status, out, err = cli(capsys, "--store", str(kit.root), "store", "remove", "copies.example")
    assert status == 0 and out.splitlines() == [f"removed {kit.root / 'copies.pem'}"]
    assert f"not searched for copies: {kit.root / 'copies.p12'} (an encrypted PKCS#12 file" in err
    kit.write("copies.pem", issued)  # again, beside the encrypted copy

    def removeWith(passphrase: str) -> tuple[int, str, str]:
        monkeypatch.setenv("REMOVE_PASS", passphrase)
        store = ("--store", str(kit.root), "store")
        return cli(capsys, *store, "remove", "copies.example", "--passphrase", "env:REMOVE_PASS")

    status, out, err = removeWith("not it")
    assert status == 0
    assert "copies.p12 (an encrypted PKCS#12 file; the --passphrase given does not open it)" in err
    kit.write("copies.pem", issued)
    status, out, err = removeWith("p12 secret")
    assert status == 0 and "not searched" not in err
    assert sorted(out.splitlines()) == sorted(f"removed {kit.root / n}" for n in ("copies.p12", "copies.pem"))


def test_names_are_found_in_any_case(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kit = StoreKit(tmp_path / "store")
    kit.add("Site.pem", ["site.example"], commonName="Web Server")
    kit.addP12("fn.p12", b"My Friendly WWW", None, ["www.example"])
    store = ("--store", str(kit.root), "store")
    for name, expected in (("site", "CN=Web Server"), ("web server", "CN=Web Server")):
        status, out, _ = cli(capsys, *store, "show", name)
        assert status == 0 and f"Subject:      {expected}" in out, name
    status, out, _ = cli(capsys, *store, "show", "my friendly www")
    assert status == 0 and "www.example" in out
    err = failing(capsys, *store, "new", "SITE")  # the name Site.pem answers to, in another case
    assert "the name 'SITE' is already used in the store by sha1" in err and "Site.pem" in err
    kit.add("site2.pem", ["other.example"], commonName="SITE")
    err = failing(capsys, *store, "show", "Site")
    assert "2 certificates in the store" in err and "have the name 'Site'; give the SHA-1 of one" in err


def test_the_stem_of_an_encrypted_pkcs12_is_a_taken_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """web.p12 answers to 'web' once opened: another file may not take the name, and commands say why nothing is found."""
    kit = StoreKit(tmp_path / "store")
    kit.addP12("web.p12", b"friendly", b"p12 secret", ["web.example"])
    other = tmp_path / "api.pem"
    issued = kit.leaf(["api.example"])
    other.write_bytes(certificatePEM(issued.certificate) + keyPEM(issued.key))
    store = ("--store", str(kit.root), "store")
    err = failing(capsys, *store, "import", str(other), "--name", "WEB")
    assert (
        f"the name 'WEB' is already used in the store by the encrypted PKCS#12 file {kit.root / 'web.p12'}"
        in err
    )
    assert "choose another --name" in err and not (kit.root / "WEB.pem").exists()
    for command in ("show", "export", "remove"):
        err = failing(capsys, *store, command, "web")
        assert (
            f"the name 'web' belongs to the encrypted PKCS#12 file {kit.root / 'web.p12'} (its stem): give --passphrase"
            in err
        ), command
    monkeypatch.setenv("STEM_PASS", "not it")
    err = failing(capsys, *store, "show", "web", "--passphrase", "env:STEM_PASS")
    assert "(its stem): the --passphrase given does not open it" in err
    # the friendlyName inside is unknown without the passphrase: a warning, not silence
    status, out, err = cli(capsys, *store, "import", str(other), "--name", "friendly")
    assert status == 0 and "imported" in out
    assert (
        "warning: not checked whether the friendlyName inside 1 encrypted PKCS#12 file(s) is 'friendly'"
        in err
    )
    assert "give --passphrase to check them" in err and str(kit.root / "web.p12") in err
    (kit.root / "friendly.pem").unlink()
    monkeypatch.setenv("STEM_PASS", "p12 secret")
    err = failing(capsys, *store, "import", str(other), "--name", "friendly", "--passphrase", "env:STEM_PASS")
    assert "the name 'friendly' is already used in the store by sha1" in err and "web.p12" in err


@pytest.mark.parametrize("name", ["web.pem", "web.PFX", "web.key", "site.crt"])
def test_a_name_ending_in_a_file_extension_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """certificate=web.pem is a path: a store entry called web.pem could never be reached."""
    kit = StoreKit(tmp_path / "store")
    source = tmp_path / "in.pem"
    issued = kit.leaf(["web.example"])
    source.write_bytes(certificatePEM(issued.certificate) + keyPEM(issued.key))
    stem = name.rsplit(".", 1)[0]
    err = failing(capsys, "--store", str(kit.root), "store", "import", str(source), "--name", name)
    assert f"--name {name!r}: a store name is a file name without its extension" in err
    assert "would be taken for a file's path by certificate=" in err and f"give {stem!r}" in err
    err = failing(capsys, "--store", str(kit.root), "store", "new", name)
    assert f"NAME {name!r}: a store name is a file name without its extension" in err
    assert list(kit.root.iterdir()) == []
    double = tmp_path / f"{name}.pem"  # its stem is the name refused
    double.write_bytes(source.read_bytes())
    err = failing(capsys, "--store", str(kit.root), "store", "import", str(double))
    assert f"FILE's stem (give --name NAME) {name!r}" in err


def test_import_messages_name_the_option_and_the_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    kit = StoreKit(tmp_path / "store")
    www, api = kit.leaf(["www.example"], commonName="www"), kit.leaf(["api.example"])
    (tmp_path / "www.crt").write_bytes(certificatePEM(www.certificate))
    (tmp_path / "api.key").write_bytes(keyPEM(api.key))
    (tmp_path / "www-enc.key").write_bytes(keyPEM(www.key, b"right one"))
    store = ("--store", str(kit.root), "store", "import", str(tmp_path / "www.crt"))
    err = failing(capsys, *store, "--key", str(tmp_path / "api.key"))
    assert (
        f"--key {tmp_path / 'api.key'}: the private key does not belong to any certificate in "
        f"FILE {tmp_path / 'www.crt'} (CN=www); give --key the key of one of them"
    ) in err
    monkeypatch.setenv("IMPORT_WRONG", "wrong one")
    err = failing(capsys, *store, "--key", str(tmp_path / "www-enc.key"), "--passphrase", "env:IMPORT_WRONG")
    assert (
        f"--passphrase env:IMPORT_WRONG does not open the private key in --key {tmp_path / 'www-enc.key'}"
    ) in err
    assert "wrong one" not in err
    monkeypatch.delenv("IMPORT_NOPE", raising=False)
    err = failing(capsys, *store, "--passphrase", "env:IMPORT_NOPE")
    assert "--passphrase env:IMPORT_NOPE: the environment variable IMPORT_NOPE is not set" in err
    assert "passphrase=" not in err
    assert list(kit.root.iterdir()) == []  # nothing written


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_import_refuses_a_fifo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "in.pem"
    os.mkfifo(fifo)
    err = failing(capsys, "--store", str(tmp_path / "store"), "store", "import", str(fifo))
    assert f"FILE {fifo} is a FIFO (named pipe), not a regular file" in err


def test_export_out_in_a_missing_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kit = StoreKit(tmp_path / "store")
    kit.add("web.pem", ["web.example"])
    target = tmp_path / "missing" / "dir" / "x.pem"
    err = failing(capsys, "--store", str(kit.root), "store", "export", "web", "--out", str(target))
    assert f"--out {target}: the directory {target.parent} does not exist; create it first" in err
    assert f"mkdir -p {target.parent}" in err


def test_new_on_a_taken_name_asks_for_another_name_argument(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """store new takes NAME positionally: there is no --name to choose."""
    store = ("--store", str(tmp_path / "store"), "store")
    status, _, _ = cli(capsys, *store, "new", "web")
    assert status == 0
    err = failing(capsys, *store, "new", "web")
    assert "choose another NAME" in err and "--name" not in err
    (tmp_path / "store" / "web.pem").rename(tmp_path / "store" / "web.crt")
    err = failing(capsys, *store, "new", "web")
    assert "already used in the store" in err and "choose another NAME" in err and "--name" not in err


def test_list_with_a_passphrase_that_opens_nothing_and_a_p12_that_is_not_pkcs12(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    kit = StoreKit(tmp_path / "store")
    kit.addP12("enc.p12", b"friendly", b"right one", ["enc.example"])
    (kit.root / "junk.p12").write_bytes(b"junk\n")
    store = ("--store", str(kit.root), "store", "list")
    status, out, err = cli(capsys, *store)
    assert status == 0
    (row,) = [line for line in out.splitlines() if line.startswith("enc ")]
    assert "(encrypted PKCS#12: give --passphrase)" in row
    assert "junk" not in out
    assert (
        err
        == f"securesock: warning: skipped {kit.root / 'junk.p12'}: not a PKCS#12 file (damaged, cut short, or another format)\n"
    )
    monkeypatch.setenv("LIST_PASS", "wrong one")
    status, out, err = cli(capsys, *store, "--passphrase", "env:LIST_PASS")
    (row,) = [line for line in out.splitlines() if line.startswith("enc ")]
    assert "(encrypted PKCS#12: the --passphrase given does not open it)" in row
    assert "junk" not in out and "skipped" in err and "wrong one" not in out + err
