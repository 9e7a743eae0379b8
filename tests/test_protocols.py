"""Protocol sets -> OpenSSL settings, and what the linked OpenSSL can speak."""

from __future__ import annotations

import pytest
from OpenSSL import SSL
from twisted.internet import reactor

import securesock
from securesock import ProtocolUnavailableError, TLSVersion
from securesock._protocols import canSpeak, opensslBuild, speakable, versionSettings

from .conftest import PKI

V = TLSVersion


def test_availability_is_detected_at_run_time() -> None:
    assert canSpeak(V.TLS1_2) and canSpeak(V.TLS1_3)
    assert not canSpeak(V.SSL2)  # no OpenSSL since 1.1.0 has SSLv2
    assert speakable() == frozenset(v for v in V if canSpeak(v))


def test_ssl2_is_not_promised_from_any_build() -> None:
    """No OpenSSL since 1.1.0 speaks SSL 2.0: the message does not send the user looking for one."""
    with pytest.raises(ProtocolUnavailableError) as caught:
        versionSettings(frozenset({V.SSL2}))
    message = caught.value.message
    assert "no OpenSSL since 1.1.0 speaks SSL 2.0" in message and "built with that version" not in message
    if not canSpeak(V.SSL3):
        with pytest.raises(
            ProtocolUnavailableError, match="run with an OpenSSL built with that version enabled"
        ):
            versionSettings(frozenset({V.SSL3}))


def test_hole_kept_with_op_no() -> None:
    settings = versionSettings(frozenset({V.TLS1, V.TLS1_2}))
    assert (settings.minimum, settings.maximum) == (SSL.TLS1_VERSION, SSL.TLS1_2_VERSION)
    assert settings.options == SSL.OP_NO_TLSv1_1
    assert settings.legacy


@pytest.mark.parametrize(
    "versions, whole, upper",
    [
        ({V.TLS1, V.TLS1_2}, "TLS1+TLS1_1+TLS1_2", "TLS1_2"),
        ({V.TLS1_1, V.TLS1_3}, "TLS1_1+TLS1_2+TLS1_3", "TLS1_3"),
        ({V.TLS1, V.TLS1_2, V.TLS1_3}, "TLS1+TLS1_1+TLS1_2+TLS1_3", "TLS1_2+TLS1_3"),
    ],
)
def test_a_client_set_with_a_hole_is_refused(versions: set[TLSVersion], whole: str, upper: str) -> None:
    """OpenSSL's client offers only the versions below a hole: a silent downgrade."""
    with pytest.raises(securesock.DescriptionError) as caught:
        versionSettings(frozenset(versions), client=True)
    message = str(caught.value)
    assert caught.value.option == "protocols"
    assert "one unbroken range" in message
    assert f"accepted for a client: {whole} or {upper}" in message
    versionSettings(frozenset(versions))  # a server keeps it


def test_a_client_description_with_a_hole_is_refused_when_the_endpoint_is_built() -> None:
    with pytest.raises(securesock.DescriptionError, match=r"protocols='TLS1\+TLS1_2': a client offers"):
        securesock.clientFromString(reactor, "tls:localhost:443:protocols=TLS1+TLS1_2")
    securesock.clientFromString(reactor, "tls:localhost:443:protocols=TLS1+TLS1_1+TLS1_2")


def test_contiguous_set_has_no_holes() -> None:
    settings = versionSettings(frozenset({V.TLS1_2, V.TLS1_3}))
    assert (settings.minimum, settings.maximum, settings.options, settings.legacy) == (
        SSL.TLS1_2_VERSION,
        SSL.TLS1_3_VERSION,
        0,
        False,
    )


@pytest.mark.parametrize("version", [v for v in V if not canSpeak(v)])
def test_unavailable_version_names_version_and_build(version: TLSVersion) -> None:
    with pytest.raises(ProtocolUnavailableError) as caught:
        versionSettings(frozenset({version, V.TLS1_2}))
    message = str(caught.value)
    assert version.name in message and version.displayName in message
    assert opensslBuild() in message
    assert "this build speaks" in message


@pytest.mark.parametrize(
    "description",
    [
        "sslv3:0:certificate={pem}",
        "sslv2:0:certificate={pem}",
        "tls:0:certificate={pem}:protocols=SSL3+TLS1_2",
    ],
)
def test_unavailable_versions_refused_when_the_endpoint_is_built(pki: PKI, description: str) -> None:
    if canSpeak(V.SSL3):
        pytest.skip(f"{opensslBuild()} speaks SSLv3; the refusal cannot happen here")
    with pytest.raises(ProtocolUnavailableError, match="cannot be spoken by the linked"):
        securesock.serverFromString(reactor, description.format(pem=pki.server_pem))
