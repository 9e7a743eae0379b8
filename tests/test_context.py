"""
securesock._context: what OpenSSL refuses while a context is built is said
in words, naming the option at fault (DH parameters too small for the
security level, a level raised by ciphers=, ciphers= that cannot apply to
TLS 1.3), and what passes works with a real client.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import pytest_twisted
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

import securesock
from securesock import CertificateError, DescriptionError

from .conftest import PKI, requireTool, writeDHParameters, writeSelfSigned
from .peers import listen


def refused(description: str) -> DescriptionError:
    with pytest.raises(DescriptionError) as caught:
        if description.startswith("tls:localhost"):
            securesock.clientFromString(reactor, description)
        else:
            securesock.serverFromString(reactor, description)
    return caught.value


@pytest.fixture(scope="module")
def dhFiles(tmp_path_factory: pytest.TempPathFactory) -> dict[int, str]:
    """Real PEM DH parameters of OpenSSL's named groups, by size: no slow generation."""
    openssl = requireTool("openssl")
    directory = tmp_path_factory.mktemp("dh")
    files = {}
    for bits, group in ((1024, "dh_1024_160"), (1536, "modp_1536"), (2048, "ffdhe2048"), (3072, "ffdhe3072")):
        path = directory / f"dh{bits}.pem"
        writeDHParameters(openssl, path, group)
        assert path.read_bytes().startswith(b"-----BEGIN DH PARAMETERS-----")
        files[bits] = str(path)
    return files


@pytest.mark.parametrize("bits", [1024, 1536])
def test_dh_parameters_under_2048_bits_are_called_too_small(
    pki: PKI, dhFiles: dict[int, str], bits: int
) -> None:
    path = dhFiles[bits]
    error = refused(f"tls:0:certificate={pki.rsa_pem}:dhParameters={path}")
    assert isinstance(error, CertificateError)
    assert error.option == "dhParameters" and error.value == path
    assert "holds no PEM DH parameters" not in error.message
    assert (
        f"dhParameters={path!r} holds {bits}-bit DH parameters, too small: the security level "
        "(2, OpenSSL's default) needs at least 2048 bits; make new ones with "
        "'openssl dhparam -out dh.pem 2048', or, if that is really wanted, lower the level with "
        "ciphers=...,@SECLEVEL=1" == error.message
    )


def test_lowering_the_level_as_the_message_says_is_accepted(pki: PKI, dhFiles: dict[int, str]) -> None:
    securesock.serverFromString(
        reactor,
        f"tls:0:certificate={pki.rsa_pem}:dhParameters={dhFiles[1024]}:ciphers=DHE+AESGCM,@SECLEVEL=1",
    )


def test_dh_parameters_under_a_level_raised_by_ciphers(tmp_path: Path, dhFiles: dict[int, str]) -> None:
    """2048 bits pass the default level; @SECLEVEL=3 needs 3072 (a P-384 certificate passes that level)."""
    certificate = writeSelfSigned(
        tmp_path / "p384.pem", ec.generate_private_key(ec.SECP384R1()), hashes.SHA384()
    )
    ciphers = "ECDHE+AESGCM,DHE+AESGCM,@SECLEVEL=3"
    error = refused(f"tls:0:certificate={certificate}:dhParameters={dhFiles[2048]}:ciphers={ciphers}")
    assert error.option == "dhParameters"
    assert f"holds 2048-bit DH parameters, too small: the security level (3, set by ciphers={ciphers!r})" in (
        error.message
    )
    assert "needs at least 3072 bits" in error.message and "openssl dhparam -out dh.pem 3072" in error.message
    assert "ciphers=...,@SECLEVEL=2" in error.message
    securesock.serverFromString(
        reactor, f"tls:0:certificate={certificate}:dhParameters={dhFiles[3072]}:ciphers={ciphers}"
    )


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_dh_parameters_are_read_only_from_a_regular_file(pki: PKI, tmp_path: Path, kind: str) -> None:
    """OpenSSL would wait on a FIFO for ever and read /dev/zero without end: refused before it reads."""
    import os

    path = tmp_path / "dh.fifo"
    if kind == "fifo":
        os.mkfifo(path)
    shown = str(path) if kind == "fifo" else "/dev/zero"
    with pytest.raises(CertificateError) as caught:
        securesock.serverFromString(reactor, f"tls:0:certificate={pki.server_pem}:dhParameters={shown}")
    assert caught.value.option == "dhParameters"
    assert "not a regular file; give the path of a PEM file of DH parameters" in caught.value.message


def test_a_file_without_dh_parameters_holds_none(pki: PKI) -> None:
    for path in (pki.empty_pem, pki.server_key):
        error = refused(f"tls:0:certificate={pki.rsa_pem}:dhParameters={path}")
        assert error.message == (
            f"dhParameters={path!r} holds no PEM DH parameters (make some with 'openssl dhparam -out dh.pem 2048')"
        )


@pytest.mark.parametrize(
    ("certificate", "level", "key", "needs"),
    [
        ("rsa_pem", 3, "RSA-2048", "at least a 3072-bit RSA or a 256-bit EC key"),
        ("server_pem", 4, "ECDSA secp256r1", "at least a 7680-bit RSA or a 384-bit EC key"),
        ("server_pem", 5, "ECDSA secp256r1", "at least a 15360-bit RSA or a 512-bit EC key"),
    ],
)
def test_a_certificate_refused_at_a_level_ciphers_raised_names_ciphers(
    pki: PKI, certificate: str, level: int, key: str, needs: str
) -> None:
    """The certificate is fine at the default level: the message blames @SECLEVEL in ciphers=, not its size."""
    path = getattr(pki, certificate)
    securesock.serverFromString(reactor, f"tls:0:certificate={path}")
    ciphers = f"ECDHE+AESGCM,@SECLEVEL={level}"
    error = refused(f"tls:0:certificate={path}:ciphers={ciphers}")
    assert error.option == "ciphers" and error.value == ciphers
    assert (
        f"it has an {key} key) at security level {level}, which ciphers={ciphers!r} sets with "
        in error.message
    )
    assert f"level {level} requires {needs}" in error.message
    assert f"remove @SECLEVEL={level} from ciphers=" in error.message
    assert "use a certificate with at least a 2048-bit RSA" not in error.message


def test_a_client_certificate_refused_at_a_raised_level_names_ciphers(pki: PKI) -> None:
    error = refused(f"tls:localhost:443:certificate={pki.rsa_pem}:ciphers=ECDHE+AESGCM,@SECLEVEL=3")
    assert error.option == "ciphers" and "at security level 3" in error.message


@pytest.mark.parametrize(
    "description",
    [
        "tls:0:certificate={pem}:protocols=TLS1_3:ciphers=ECDHE+AESGCM",
        "tls:localhost:443:protocols=TLS1_3:ciphers=ECDHE+AESGCM",
    ],
)
def test_ciphers_with_only_tls_1_3_is_refused(pki: PKI, description: str) -> None:
    error = refused(description.format(pem=pki.server_pem))
    assert error.option == "ciphers"
    assert (
        "has no effect with protocols=TLS1_3 (only TLS 1.3): ciphers= chooses the cipher suites of TLS 1.2 and below"
        in (error.message)
    )
    assert "TLS 1.3's suites are OpenSSL's" in error.message and "not configurable" in error.message
    assert "remove ciphers=, or add TLS1_2 to protocols=" in error.message


def test_ciphers_with_the_tls_1_3_prefix_says_to_change_the_prefix(pki: PKI) -> None:
    """tlsv1.3: allows no protocols=: the advice is the tls: prefix, not an option the prefix refuses."""
    error = refused(f"tlsv1.3:0:certificate={pki.server_pem}:ciphers=AES128-SHA")
    assert error.option == "ciphers"
    assert "has no effect with the prefix tlsv1.3:" in error.message
    assert "write tls: with protocols=TLS1_2+TLS1_3" in error.message and "add TLS1_2" not in error.message


@pytest.mark.parametrize(
    ("ciphers", "named"),
    [
        ("TLS_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256 is a TLS 1.3 suite"),
        ("ECDHE+AESGCM,TLS_CHACHA20_POLY1305_SHA256", "TLS_CHACHA20_POLY1305_SHA256 is a TLS 1.3 suite"),
        (
            "TLS_AES_256_GCM_SHA384,TLS_AES_128_GCM_SHA256",
            "TLS_AES_256_GCM_SHA384, TLS_AES_128_GCM_SHA256 are TLS 1.3 suites",
        ),
    ],
)
def test_tls_1_3_suite_names_in_ciphers_are_explained(pki: PKI, ciphers: str, named: str) -> None:
    for protocols in ("TLS1_2+TLS1_3", "TLS1_3"):
        error = refused(f"tls:0:certificate={pki.server_pem}:protocols={protocols}:ciphers={ciphers}")
        assert error.option == "ciphers" and error.value == ciphers
        assert f"ciphers={ciphers!r}: {named}; ciphers= chooses the cipher suites of TLS 1.2 and below" in (
            error.message
        )
        assert "OpenSSL accepts none of these cipher suites" not in error.message


@pytest_twisted.ensureDeferred
async def test_ciphers_with_tls_1_2_still_chooses_its_suites(pki: PKI) -> None:
    """ciphers= beside TLS 1.2 is kept: a TLS 1.2 client is served the suite chosen."""
    openssl = requireTool("openssl")
    port = await listen(
        f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}:protocols=TLS1_2+TLS1_3:"
        "ciphers=ECDHE-ECDSA-AES256-GCM-SHA384"
    )
    try:
        result = await deferToThread(
            subprocess.run,
            [openssl, "s_client", "-connect", f"127.0.0.1:{port.getHost().port}", "-tls1_2"],
            input="",
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        await port.stopListening()
    assert "ECDHE-ECDSA-AES256-GCM-SHA384" in result.stdout, result.stdout + result.stderr
