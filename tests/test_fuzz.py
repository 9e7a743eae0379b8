"""
Fuzzed descriptions (hypothesis): whatever the text, building it with a
reactor gives an endpoint or a DescriptionError, never another exception,
never a secret in a message or repr, never a write to the file system.
A small sample here; bench/fuzz_descriptions.py runs 100,000 and more.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from twisted.internet import reactor

from .conftest import PASSPHRASE, PKI
from .descriptiongrammar import FuzzFiles, build, descriptions, fuzzEnvironment
from .leaks import LeakScanner

EXAMPLES = 200


def test_fuzzed_descriptions_build_or_raise_description_error(pki: PKI, tmp_path: Path) -> None:
    files = FuzzFiles(Path(pki.root))
    passphrase = PASSPHRASE.decode()
    scanner = LeakScanner()
    scanner.addPassphrase(PASSPHRASE)
    scanner.addDirectory(files.root, [PASSPHRASE])
    outcomes: dict[str, int] = {}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,  # nothing written in the working tree
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(descriptions(files, passphrase))
    def check(case: tuple[str, str | bytes]) -> None:
        outcome = build(reactor, case[0], case[1], scanner)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    workdir = tmp_path / "cwd"
    workdir.mkdir()
    with fuzzEnvironment(files, passphrase, workdir):
        check()
    assert list(workdir.iterdir()) == []
    # The sample reaches both outcomes: the grammar is not all noise.  About
    # one in 15 builds (docs/hardening.md); fewer than 2 in 200 has odds ~1e-5.
    assert outcomes.get("endpoint", 0) >= 2 and outcomes.get("error", 0) >= EXAMPLES // 4, outcomes


def test_the_property_catches_what_it_should(pki: PKI, tmp_path: Path) -> None:
    """build() fails on a leak (in an error, or logged) and on a write (so a green fuzz run means something)."""
    import pytest

    files = FuzzFiles(Path(pki.root))
    scanner = LeakScanner()
    secret = "only-this-test-knows"  # not a session secret: this leak is on purpose
    scanner.addPassphrase(secret, "this test's secret")

    class Leaky:
        def serverFromString(self, reactor: object, description: str) -> object:
            raise __import__("securesock").DescriptionError(f"bad: {secret}")

    import securesock

    original = securesock.serverFromString
    try:
        securesock.serverFromString = Leaky().serverFromString  # type: ignore[method-assign]
        with pytest.raises(AssertionError, match="this test's secret"):
            build(reactor, "server", "tls:1", scanner)

        def logging(reactor: object, description: str) -> object:
            from twisted.logger import Logger

            Logger().warn("loading with {secret}", secret=secret)
            return original(reactor, f"tls:0:certificate={files.path('server.pem')}")

        securesock.serverFromString = logging  # type: ignore[assignment]
        with pytest.raises(AssertionError, match="this test's secret"):
            build(reactor, "server", "tls:1", scanner)

        def writing(reactor: object, description: str) -> object:
            (tmp_path / "written").write_text("x")
            return original(reactor, f"tls:0:certificate={files.path('server.pem')}")

        securesock.serverFromString = writing  # type: ignore[assignment]
        with pytest.raises(AssertionError, match="wrote to the file system"):
            build(reactor, "server", "tls:1", scanner)
    finally:
        securesock.serverFromString = original  # type: ignore[method-assign]
