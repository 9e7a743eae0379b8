"""Certificate files: every way they can be wrong is a CertificateError, checked by message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from twisted.internet import reactor

import securesock
from securesock import CertificateError, DescriptionError

from .conftest import PASSPHRASE, PKI


def build(description: str) -> object:
    return securesock.serverFromString(reactor, description)


def message(description: str, kind: type[Exception] = CertificateError) -> str:
    with pytest.raises(kind) as caught:
        build(description)
    text = str(caught.value)
    assert PASSPHRASE.decode() not in text
    assert "PRIVATE KEY" not in text
    return text


def test_missing_file(pki: PKI) -> None:
    text = message("tls:0:certificate=/nonexistent/site.pem")
    assert "certificate='/nonexistent/site.pem': no such file" in text


def test_directory_instead_of_file(pki: PKI) -> None:
    assert "is a directory" in message(f"tls:0:certificate={pki.cadir}")


def test_not_a_certificate(pki: PKI) -> None:
    assert "holds no certificate" in message(f"tls:0:certificate={pki.empty_pem}")


@pytest.mark.parametrize("option, side", [("caCerts", "server"), ("trustRoots", "client")])
def test_a_trust_file_without_certificates_says_what_is_accepted(pki: PKI, option: str, side: str) -> None:
    from twisted.internet import reactor

    import securesock
    from securesock import CertificateError

    description = (
        f"tls:0:certificate={pki.server_pem}:verifyClient=require:caCerts={pki.server_key}"
        if side == "server"
        else f"tls:localhost:443:trustRoots={pki.server_key}"
    )
    build = securesock.serverFromString if side == "server" else securesock.clientFromString
    with pytest.raises(CertificateError) as caught:
        build(reactor, description)
    assert (
        f"{option}={pki.server_key!r} holds no certificate; accepted: a PEM file of CA certificates"
        in str(caught.value)
    )
    assert "or store for the certificate store's CAs" in str(caught.value)


def test_certificate_without_key(pki: PKI) -> None:
    assert "has a certificate but no private key" in message(f"tls:0:certificate={pki.server_crt}")


def test_key_that_does_not_match(pki: PKI) -> None:
    text = message(f"tls:0:certificate={pki.server_crt}:privateKey={pki.other_key}")
    assert "does not match the certificate" in text and "CN=localhost" in text


def test_encrypted_key_without_passphrase(pki: PKI) -> None:
    text = message(f"tls:0:certificate={pki.server_crt}:privateKey={pki.encrypted_key}")
    assert "is encrypted: add passphrase=env:VARIABLE or passphrase=file:PATH" in text


def test_wrong_passphrase(pki: PKI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECURESOCK_WRONG", "not the passphrase")
    text = message(
        f"tls:0:certificate={pki.server_crt}:privateKey={pki.encrypted_key}:passphrase=env:SECURESOCK_WRONG"
    )
    assert "passphrase=env:SECURESOCK_WRONG does not decrypt" in text
    assert "not the passphrase" not in text


def test_unset_passphrase_variable(pki: PKI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SECURESOCK_UNSET", raising=False)
    text = message(
        f"tls:0:certificate={pki.server_crt}:privateKey={pki.encrypted_key}:passphrase=env:SECURESOCK_UNSET"
    )
    assert "environment variable SECURESOCK_UNSET is not set" in text


@pytest.mark.parametrize(
    "reference, gone",
    [
        ("env:Hunter2Secret", "the environment variable (not shown) is not set (its name is not shown"),
        (
            "file:Hunter2Secret",
            "passphrase=file:(not shown: it holds no '/' or '.', so it may be the passphrase",
        ),
    ],
)
def test_a_passphrase_typed_after_env_or_file_is_not_shown(
    pki: PKI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, reference: str, gone: str
) -> None:
    """passphrase=env:SECRET by mistake: what follows env: or file: is shown only if it looks like a name or path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("Hunter2Secret", raising=False)
    text = message(
        f"tls:0:certificate={pki.server_crt}:privateKey={pki.encrypted_key}:passphrase={reference}"
    )
    assert gone in text and "Hunter2Secret" not in text


def test_an_empty_passphrase_is_named_as_the_problem(pki: PKI, tmp_path: Path) -> None:
    for content in (b"", b"\nthe passphrase on the second line\n"):
        (tmp_path / "keypass").write_bytes(content)
        text = message(
            f"tls:0:certificate={pki.server_crt}:privateKey={pki.encrypted_key}:passphrase=file:{tmp_path}/keypass"
        )
        assert (
            f"passphrase=file:{tmp_path}/keypass gave an empty passphrase (an empty file or first line"
            in text
        )
        assert "is encrypted: put its passphrase there" in text


@pytest.mark.skipif(os.name == "nt", reason="POSIX environments hold bytes")
def test_passphrase_variable_with_non_utf8_bytes(
    pki: PKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The variable's bytes are the passphrase, even when they are not UTF-8 (no UnicodeEncodeError)."""
    from securesock._devca import keyPEM
    from securesock._material import loadIdentity
    from securesock._options import IdentitySpec, Passphrase

    secret = b"caf\xe9 \xff"
    key = tmp_path / "latin1.key"
    plain = loadIdentity(IdentitySpec(certificate=pki.server_pem)).key
    key.write_bytes(keyPEM(plain, secret))  # type: ignore[arg-type]
    monkeypatch.setenv("SECURESOCK_LATIN1", os.fsdecode(secret))
    passphrase = Passphrase("env", "SECURESOCK_LATIN1")
    identity = loadIdentity(
        IdentitySpec(certificate=pki.server_crt, privateKey=str(key), passphrase=passphrase)
    )
    assert identity.certificate.subject.rfc4514_string() == "CN=localhost"


def test_pkcs12_needs_passphrase(pki: PKI) -> None:
    assert "PKCS#12 file cannot be opened without a passphrase" in message(
        f"tls:0:certificate={pki.server_p12}"
    )


def test_pkcs12_with_private_key_option(pki: PKI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECURESOCK_TEST_PASS", PASSPHRASE.decode())
    text = message(
        f"tls:0:certificate={pki.server_p12}:privateKey={pki.server_key}:passphrase=env:SECURESOCK_TEST_PASS"
    )
    assert "carries its own key: remove privateKey=" in text


def test_expired_and_future(pki: PKI) -> None:
    assert "expired on" in message(f"tls:0:certificate={pki.expired_pem}")
    assert "is not valid yet: valid from" in message(f"tls:0:certificate={pki.future_pem}")


def test_empty_chain_file(pki: PKI) -> None:
    text = message(f"tls:0:certificate={pki.server_pem}:extraCertChain={pki.empty_pem}")
    assert "extraCertChain=" in text


def test_ciphers_nothing_matches(pki: PKI) -> None:
    text = message(f"tls:0:certificate={pki.server_pem}:ciphers=NOTHING-REAL", DescriptionError)
    assert "ciphers='NOTHING-REAL': OpenSSL accepts none of these cipher suites" in text


def test_bad_dh_parameters(pki: PKI) -> None:
    assert "holds no PEM DH parameters" in message(
        f"tls:0:certificate={pki.server_pem}:dhParameters={pki.empty_pem}"
    )
    assert "dhParameters='/nonexistent': no such file" in message(
        f"tls:0:certificate={pki.server_pem}:dhParameters=/nonexistent"
    )


def test_client_trust_roots_missing(pki: PKI) -> None:
    with pytest.raises(CertificateError, match="trustRoots='/nonexistent': no such file"):
        securesock.clientFromString(reactor, "tls:localhost:443:trustRoots=/nonexistent")


def test_empty_trust_directory(tmp_path: Path) -> None:
    with pytest.raises(CertificateError, match="the directory holds no certificates"):
        securesock.clientFromString(reactor, f"tls:localhost:443:trustRoots={tmp_path}")


def test_chain_is_ordered_and_sent(pki: PKI) -> None:
    endpoint = build(
        f"tls:0:certificate={pki.chained_crt}:privateKey={pki.chained_key}:extraCertChain={pki.intermediate_pem}"
    )
    identity = endpoint.identity  # type: ignore[attr-defined]
    assert [c.subject.rfc4514_string() for c in identity.chain] == ["CN=securesock test intermediate"]
    assert "PRIVATE" not in repr(identity)


def test_readable_key_file_warns(pki: PKI, tmp_path: Path) -> None:
    from twisted.logger import globalLogPublisher

    seen: list[str] = []

    def observer(event: dict) -> None:  # type: ignore[type-arg]
        if "can be read by group or others" in event.get("log_format", ""):
            seen.append(event["path"])

    loose = tmp_path / "loose.pem"
    loose.write_bytes(Path(pki.server_pem).read_bytes())
    os.chmod(loose, 0o644)
    globalLogPublisher.addObserver(observer)
    try:
        build(f"tls:0:certificate={loose}")
        build(f"tls:0:certificate={pki.server_pem}")  # 0600: no warning
    finally:
        globalLogPublisher.removeObserver(observer)
    assert seen == [str(loose)]


def test_a_version_sslmethod_asked_for_is_blamed_on_sslmethod(pki: PKI) -> None:
    from securesock import ProtocolUnavailableError

    with pytest.raises(ProtocolUnavailableError) as caught:
        build(f"ssl:0:certificate={pki.server_pem}:sslmethod=SSLv3_METHOD")
    assert caught.value.option == "sslmethod" and caught.value.message.startswith("sslmethod: SSL3 (SSLv3)")


def test_ssl_without_a_certificate_says_it_read_twisteds_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    text = message("ssl:0")
    assert "privateKey='server.pem': no such file" in text
    assert (
        "an ssl: server given neither certificate= nor privateKey= reads server.pem, as Twisted's does"
        in text
    )


def test_a_store_name_with_a_private_key_is_explained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pki: PKI
) -> None:
    monkeypatch.chdir(tmp_path)
    text = message(f"tls:0:certificate=web:privateKey={pki.server_key}")
    assert "certificate='web': no such file" in text
    assert "a name in the certificate store brings its own key, so remove privateKey=" in text


def _buildInChild(description: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """
    Build a server endpoint in a child process with 1 GiB of address space:
    reading a FIFO would block it and /dev/zero fill it, never this process.
    """
    code = (
        "import sys\n"
        "from twisted.internet import reactor\n"
        "import securesock\n"
        "try:\n"
        "    securesock.serverFromString(reactor, sys.argv[1])\n"
        "except securesock.DescriptionError as e:\n"
        "    print(e)\n"
    )

    def limit() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))

    return subprocess.run(
        [sys.executable, "-c", code, description],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limit,
    )


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs and /dev/zero are POSIX")
@pytest.mark.parametrize(
    "option, kind",
    [
        ("certificate", "fifo"),
        ("privateKey", "fifo"),
        ("extraCertChain", "fifo"),
        ("caCerts", "fifo"),
        ("certificate", "zero"),
        ("privateKey", "zero"),
    ],
)
def test_only_regular_files_are_read(pki: PKI, tmp_path: Path, option: str, kind: str) -> None:
    """A FIFO blocked for ever, /dev/zero grew until MemoryError: both are refused, naming the option."""
    if kind == "fifo":
        path = str(tmp_path / "pipe.pem")
        os.mkfifo(path)
        what = "is a FIFO (named pipe), not a regular file"
    else:
        path, what = "/dev/zero", "is a character device, not a regular file"
    options = {"certificate": pki.server_crt, "privateKey": pki.server_key, option: path}
    if option == "caCerts":
        options.update(certificate=pki.server_pem, verifyClient="require")
        del options["privateKey"]
    description = "tls:0:interface=127.0.0.1:" + ":".join(f"{k}={v}" for k, v in options.items())
    done = _buildInChild(description)
    assert f"{option}={path!r} {what}; give the path of" in done.stdout, (done.stdout, done.stderr)


def test_a_file_too_large_for_certificate_material(pki: PKI, tmp_path: Path) -> None:
    huge = tmp_path / "huge.pem"
    with open(huge, "wb") as f:  # sparse: nothing is written
        f.truncate(10 * 1024 * 1024 + 1)
    text = message(f"tls:0:certificate={huge}")
    assert f"certificate={str(huge)!r} is larger than 10 MiB, too large for a certificate" in text


@pytest.mark.skipif(os.name == "nt", reason="/dev/fd is POSIX")
def test_a_passphrase_file_that_is_a_pipe_is_refused(pki: PKI) -> None:
    """file:/dev/fd/N (the shell's <(...)) is read again for each file and renewal: a pipe gives it once."""
    read, write = os.pipe()
    try:
        os.write(write, PASSPHRASE + b"\n")
        os.close(write)
        text = message(
            f"tls:0:certificate={pki.server_crt}:privateKey={pki.encrypted_key}:passphrase=file:/dev/fd/{read}"
        )
    finally:
        os.close(read)
    assert (
        f"passphrase=file:/dev/fd/{read} is a FIFO (named pipe), not a regular file; give the path of a file holding the passphrase"
        in text
    )


def test_a_p12_file_that_is_not_pkcs12(tmp_path: Path) -> None:
    junk = tmp_path / "junk.p12"
    junk.write_bytes(b"junk\n")
    text = message(f"tls:0:certificate={junk}")
    assert f"certificate={str(junk)!r} is not a PKCS#12 file (damaged, cut short, or another format" in text
    assert "passphrase" not in text
