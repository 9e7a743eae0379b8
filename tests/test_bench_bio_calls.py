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
    feed, read, encrypt, drain = bench.WAYS["securesock._bio"]
    reversing = (feed, read, lambda connection, data: encrypt(connection, data[::-1]), drain)
    monkeypatch.setitem(bench.WAYS, "securesock._bio", reversing)
    with pytest.raises(RuntimeError, match="securesock._bio: echoed message 0 is not what the client sent"):
        bench.measure(pki.server_pem, SSL.TLS1_3_VERSION, 100, 10, 1)


@pytest.mark.parametrize("size", [16384, 16385, 65536])
def test_messages_of_several_records_are_echoed(pki: PKI, size: int) -> None:
    """One record, one byte over (two records), four whole records: each checked on the client."""
    figures = bench.measure(pki.server_pem, SSL.TLS1_3_VERSION, size, 20, 1)
    assert all(len(values) == 1 and values[0] > 0 for values in figures.values())


def test_a_message_larger_than_four_records_is_refused() -> None:
    assert bench.messageSize("65536") == 65536
    for bad in ("65537", "0"):
        with pytest.raises(argparse.ArgumentTypeError, match=f"{bad} bytes: a message is 1 to 65536 bytes"):
            bench.messageSize(bad)
