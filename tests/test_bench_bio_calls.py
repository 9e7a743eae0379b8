"""bench/bio_calls.py: both ways echo every message (checked, so a broken way fails), timed, reported."""

from __future__ import annotations

import argparse

import pytest
from OpenSSL import SSL

from .benchscripts import loadBenchScript
from .conftest import PKI

bench = loadBenchScript("bio_calls")


@pytest.mark.parametrize("version", [SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION])
def test_both_ways_echo_every_message_and_are_timed(pki: PKI, version: int) -> None:
    figures = bench.measure(pki.server_pem, version, 100, 50, 2)
    assert list(figures) == ["pyOpenSSL methods", "securesock._bio"]
    assert all(len(values) == 2 and all(value > 0 for value in values) for values in figures.values())
    table = bench.report(figures, 100, 50, "1.3").splitlines()
    assert table[0].startswith("One echoed 100-byte message over TLS 1.3, 2 runs of 50")
    assert [line.split(" | ")[0] for line in table[4:]] == [
        "| pyOpenSSL methods",
        "| securesock._bio",
        "| ratio",
    ]


def test_a_way_that_echoes_something_else_is_caught(pki: PKI, monkeypatch: pytest.MonkeyPatch) -> None:
    feed, decrypt, encrypt, drain = bench.WAYS["securesock._bio"]
    reversing = (feed, decrypt, lambda connection, data: encrypt(connection, data[::-1]), drain)
    monkeypatch.setitem(bench.WAYS, "securesock._bio", reversing)
    with pytest.raises(RuntimeError, match="securesock._bio: echoed message 0 is not what the client sent"):
        bench.measure(pki.server_pem, SSL.TLS1_3_VERSION, 100, 10, 1)


def test_a_message_larger_than_one_record_is_refused() -> None:
    assert bench.messageSize("16384") == 16384
    for bad in ("16385", "0"):
        with pytest.raises(argparse.ArgumentTypeError, match=f"{bad} bytes: a message is 1 to 16384 bytes"):
            bench.messageSize(bad)
