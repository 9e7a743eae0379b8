"""Protocol flags: every accepted spelling, exact sets, precise errors."""

from __future__ import annotations

import pytest

from securesock import DescriptionError, TLSVersion
from securesock._versions import DEFAULT_PROTOCOLS, formatProtocols, parseProtocols

V = TLSVersion


@pytest.mark.parametrize(
    "text, expected",
    [
        ("TLS1_2+TLS1_3", {V.TLS1_2, V.TLS1_3}),
        ("tls1_2+tls1_3", {V.TLS1_2, V.TLS1_3}),
        ("ProtocolTLS1_2", {V.TLS1_2}),
        ("TLSv1.2+TLSv1.3", {V.TLS1_2, V.TLS1_3}),
        ("TLS1+TLS1_2", {V.TLS1, V.TLS1_2}),
        ("TLSv1+TLSv1.0+TLS1_0", {V.TLS1}),
        ("SSL2+SSL3", {V.SSL2, V.SSL3}),
        ("SSLv3", {V.SSL3}),
        (" TLS1_1 + TLS1_3 ", {V.TLS1_1, V.TLS1_3}),
        ("ProtocolSSL3+ProtocolTLS1+ProtocolTLS1_1+ProtocolTLS1_2+ProtocolTLS1_3", set(V) - {V.SSL2}),
    ],
)
def test_spellings(text: str, expected: set[TLSVersion]) -> None:
    assert parseProtocols(text) == frozenset(expected)


def test_unknown_flag_suggests_nearest() -> None:
    with pytest.raises(DescriptionError) as caught:
        parseProtocols("TLS1_2+TLS12")
    message = str(caught.value)
    assert "unknown protocol flag 'TLS12'" in message
    assert "did you mean TLS1_2?" in message
    assert "SSL2, SSL3, TLS1, TLS1_1, TLS1_2, TLS1_3" in message
    assert caught.value.option == "protocols"


def test_empty_flag() -> None:
    with pytest.raises(DescriptionError, match="empty flag"):
        parseProtocols("TLS1_2++TLS1_3")


def test_default_and_format() -> None:
    assert DEFAULT_PROTOCOLS == {V.TLS1_2, V.TLS1_3}
    assert formatProtocols(frozenset({V.TLS1_3, V.TLS1})) == "TLS1+TLS1_3"
    assert V.TLS1_1.deprecated and not V.TLS1_2.deprecated
    assert V.TLS1.displayName == "TLSv1"
