"""
securesock._rehearsal: cipher suites, versions and keys that can never
meet are refused when the description is read, and what passes works with
real clients.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
import pytest_twisted
from cryptography.hazmat.primitives.asymmetric import ed25519
from OpenSSL import SSL
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

import securesock
from securesock import DescriptionError, _rehearsal

from .conftest import PKI, requireTool, writeDHParameters, writeSelfSigned
from .peers import listen


def server(description: str) -> object:
    return securesock.serverFromString(reactor, description)


def refused(description: str) -> DescriptionError:
    with pytest.raises(DescriptionError) as caught:
        if description.startswith("tls:localhost"):
            securesock.clientFromString(reactor, description)
        else:
            server(description)
    return caught.value


def test_gcm_suites_under_tls_1_0_are_refused(pki: PKI) -> None:
    error = refused(f"tls:0:certificate={pki.server_pem}:protocols=TLS1:ciphers=ECDHE+AESGCM")
    assert error.option == "ciphers" and error.value == "ECDHE+AESGCM"
    assert (
        "ciphers='ECDHE+AESGCM' leaves no cipher suite that TLSv1 can use with the ECDSA secp256r1 "
        "certificate" in error.message
    )
    assert "openssl ciphers -v -s -tls1 'ECDHE+AESGCM'" in error.message
    assert "protocols= without TLS1 (now TLS1)" in error.message


def test_ecdsa_suites_with_an_rsa_certificate_are_refused(pki: PKI) -> None:
    error = refused(f"tls:0:certificate={pki.rsa_pem}:ciphers=ECDHE-ECDSA-AES128-GCM-SHA256")
    assert "can use with the RSA-2048 certificate (OpenSSL: no shared cipher)" in error.message
    assert "TLSv1.2" in error.message and "(now TLS1_2+TLS1_3)" in error.message


def test_a_version_missing_from_a_set_is_named(pki: PKI) -> None:
    """TLS 1.2 works, TLS 1.0 cannot: the set is refused, naming TLS 1.0."""
    error = refused(f"tls:0:certificate={pki.server_pem}:protocols=TLS1+TLS1_2:ciphers=ECDHE+AESGCM")
    assert "no cipher suite that TLSv1 can use" in error.message and "(now TLS1+TLS1_2)" in error.message


def test_every_version_with_the_default_suites_passes(pki: PKI) -> None:
    for certificate in (pki.server_pem, pki.rsa_pem):
        server(f"tls:0:certificate={certificate}:protocols=TLS1+TLS1_1+TLS1_2+TLS1_3")


def _ed25519(directory: Path) -> str:
    return writeSelfSigned(directory / "ed25519.pem", ed25519.Ed25519PrivateKey.generate(), None)


def test_a_key_a_version_cannot_use_is_refused(tmp_path: Path) -> None:
    """Ed25519 signs only under TLS 1.2 and 1.3."""
    certificate = _ed25519(tmp_path)
    server(f"tls:0:certificate={certificate}")
    error = refused(f"tls:0:certificate={certificate}:protocols=TLS1_1+TLS1_2")
    assert error.option == "protocols"
    assert "protocols=TLS1_1+TLS1_2: TLSv1.1 cannot be used with the Ed25519 certificate" in error.message


def test_a_client_that_could_offer_no_suite_is_refused() -> None:
    error = refused("tls:localhost:443:protocols=TLS1:ciphers=ECDHE+AESGCM")
    assert (
        "no cipher suite that TLSv1 can use by this client (OpenSSL: no ciphers available)" in error.message
    )
    securesock.clientFromString(reactor, "tls:localhost:443:protocols=TLS1_2+TLS1_3:ciphers=ECDHE+AESGCM")


def test_one_rehearsal_per_kind_of_key_and_policy(pki: PKI, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store of many certificates of one kind is rehearsed once per version, not once per certificate."""
    handshakes: list[object] = []
    real = _rehearsal._handshake
    monkeypatch.setattr(_rehearsal, "_rehearsed", {})
    monkeypatch.setattr(
        _rehearsal,
        "_handshake",
        lambda context, version: handshakes.append(version) or real(context, version),
    )
    for _ in range(3):
        server(f"tls:0:certificate={pki.server_pem}:protocols=TLS1_2+TLS1_3")
    assert len(handshakes) == 2
    server(f"tls:0:certificate={pki.rsa_pem}:protocols=TLS1_2+TLS1_3")
    assert len(handshakes) == 4


def _sClientHandshake(openssl: str, port: int, *args: str) -> str:
    result = subprocess.run(
        [openssl, "s_client", "-connect", f"127.0.0.1:{port}", *args],
        input="",
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result.stdout + result.stderr


@pytest_twisted.ensureDeferred
async def test_what_is_refused_no_real_client_can_use(pki: PKI, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rehearsal turned off, the same server fails openssl s_client's handshake offering every suite."""
    openssl = requireTool("openssl")
    description = f"tls:0:interface=127.0.0.1:certificate={pki.rsa_pem}:ciphers=ECDHE-ECDSA-AES128-GCM-SHA256"
    refused(description)
    monkeypatch.setattr("securesock._context.rehearseServer", lambda *args: None)
    port = await listen(description)
    try:
        output = await deferToThread(
            _sClientHandshake, openssl, port.getHost().port, "-tls1_2", "-cipher", "ALL:@SECLEVEL=0"
        )
    finally:
        await port.stopListening()
    assert "handshake failure" in output and "Cipher is (NONE)" in output


def _dheHandshake(port: int) -> str:
    """A client of the OpenSSL pyOpenSSL links (4.x: names finite-field groups), offering DHE alone."""
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_max_proto_version(SSL.TLS1_2_VERSION)
    context.set_cipher_list(b"DHE-RSA-AES128-GCM-SHA256")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.setblocking(True)  # pyOpenSSL's blocking calls; the server answers at once
        connection = SSL.Connection(context, raw)
        connection.set_connect_state()
        connection.do_handshake()
        return str(connection.get_cipher_name())


@pytest_twisted.ensureDeferred
async def test_dhe_needs_dh_parameters_and_then_serves_clients_naming_ffdhe_groups(
    pki: PKI, tmp_path: Path
) -> None:
    openssl = requireTool("openssl")
    description = f"tls:0:interface=127.0.0.1:certificate={pki.rsa_pem}:ciphers=DHE-RSA-AES128-GCM-SHA256"
    error = refused(description + ":protocols=TLS1_2")
    assert "(DHE suites also need dhParameters=FILE)" in error.message
    port = await listen(
        f"{description}:protocols=TLS1_2:dhParameters={writeDHParameters(openssl, tmp_path / 'dh.pem')}"
    )
    try:
        assert await deferToThread(_dheHandshake, port.getHost().port) == "DHE-RSA-AES128-GCM-SHA256"
    finally:
        await port.stopListening()
