"""bench/cpu_split.py: perf's per-object report turned into shares per component."""

from __future__ import annotations

from typing import Any

import pytest

from .benchscripts import loadBenchScript

# The lines of `perf report --sort dso --stdio -q` for a Twisted TLS server (one real run).
REPORT = """
    41.56%  libpython3.11.so.1.0
    35.60%  _rust.abi3.so
    13.12%  [kernel.kallsyms]
     7.90%  libc.so.6
     1.18%  _cffi_backend.cpython-311-x86_64-linux-gnu.so
     0.18%  _socket.cpython-311-x86_64-linux-gnu.so
     0.16%  _zope_interface_coptimizations.cpython-311-x86_64-linux-gnu.so
     0.11%  ld-linux-x86-64.so.2
     0.10%  [vdso]
     0.09%  libffi.so.8.1.2
"""


def _split() -> Any:
    return loadBenchScript("cpu_split")


def test_shares_per_component() -> None:
    shares = _split().parseDSOReport(REPORT)
    assert shares["Python"] == pytest.approx((41.56 + 1.18 + 0.18 + 0.16) / 100, abs=1e-9)
    assert shares["OpenSSL"] == pytest.approx(0.3560)
    assert shares["kernel"] == pytest.approx(0.1322)
    assert shares["libc"] == pytest.approx(0.0801)
    assert shares["other"] == pytest.approx(0.0009)  # libffi
    assert sum(shares.values()) == pytest.approx(1.0)


def test_shares_are_of_what_was_sampled() -> None:
    """A report that lists less than 100% (perf leaves out tiny objects) is scaled to whole."""
    shares = _split().parseDSOReport("    60.00%  _rust.abi3.so\n    20.00%  [kernel.kallsyms]\n")
    assert shares["OpenSSL"] == pytest.approx(0.75) and shares["kernel"] == pytest.approx(0.25)


def test_no_samples_no_shares() -> None:
    assert set(_split().parseDSOReport("# no samples\n").values()) == {0.0}
