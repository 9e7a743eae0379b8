"""
The long run of the fuzzed-descriptions property (tests/test_fuzz.py runs
200 examples of it in the default suite).

    python3 bench/fuzz_descriptions.py [--examples 100000] [--seed N]

Builds every description hypothesis draws (the grammar of
securesock._optiontable.OPTIONS, both spellings, typos, random text and
bytes; tests/descriptiongrammar.py) with the reactor, server and client
side, against a PKI written to a temporary directory, and checks each: an
endpoint or a DescriptionError, no key material or passphrase in any
message, value or repr, no write to the file system.  Prints how many
examples ran, how they ended and how long it took; exits 1 with the
(shrunk) failing description otherwise.  docs/hardening.md records a run.
"""

from __future__ import annotations

import argparse
import collections
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402
from twisted.internet import reactor  # noqa: E402

from tests.descriptiongrammar import build, descriptions, fuzzEnvironment, writeFuzzPKI  # noqa: E402
from tests.leaks import LeakScanner  # noqa: E402

PASSPHRASE = b"correct horse battery staple"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--examples", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: random)")
    args = parser.parse_args()
    outcomes: collections.Counter[str] = collections.Counter()
    with tempfile.TemporaryDirectory() as directory:
        pkiRoot = Path(directory, "pki")
        pkiRoot.mkdir()
        workdir = Path(directory, "cwd")
        workdir.mkdir()
        files = writeFuzzPKI(pkiRoot, PASSPHRASE)
        scanner = LeakScanner()
        scanner.addPassphrase(PASSPHRASE)
        scanner.addDirectory(pkiRoot, [PASSPHRASE])

        @settings(
            max_examples=args.examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(descriptions(files, PASSPHRASE.decode()))
        def check(case: tuple[str, str | bytes]) -> None:
            outcomes[f"{case[0]} {build(reactor, case[0], case[1], scanner)}"] += 1

        if args.seed is not None:
            check = seed(args.seed)(check)
        started = time.monotonic()
        failed = None
        with fuzzEnvironment(files, PASSPHRASE.decode(), workdir):
            try:
                check()
            except Exception as e:  # hypothesis has printed the falsifying example
                failed = e
        elapsed = time.monotonic() - started
        leftovers = list(workdir.iterdir())
    total = sum(outcomes.values())
    print(
        f"{total} descriptions built in {elapsed:.0f} s ({total / elapsed:.0f}/s) on "
        f"{platform.python_implementation()} {platform.python_version()}, {platform.machine()}"
    )
    for outcome, count in sorted(outcomes.items()):
        print(f"  {outcome}: {count}")
    if leftovers:
        print(f"FAILED: files appeared in the working directory: {leftovers}")
        return 1
    if failed is not None:
        print(f"FAILED: {type(failed).__name__}: {failed}")
        return 1
    print(
        "property held: every description built an endpoint or raised DescriptionError, "
        "no secret in any message, no write"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
