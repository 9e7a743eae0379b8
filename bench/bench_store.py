"""
How fast the certificate store indexes and answers lookups.

    python3 bench/bench_store.py [--count 10000] [--keep DIR]

Makes COUNT leaf certificates (one key signs them all and is reused by all
of them, so making them takes seconds, not minutes), writes each to its own
PEM file with the key, then measures: indexing the directory cold, the
re-check a server or endpoint does (one stat per file), lookups by each kind
of name and by thumbprint, a miss with its "nearest names", and a complete
resolution of certificate=NAME (index lookup + loading the files, as an
endpoint build does).  Prints a Markdown table (docs/store.md quotes one).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

from securesock._devca import certificatePEM, keyPEM, makeAuthority  # noqa: E402
from securesock._errors import CertificateError  # noqa: E402
from securesock._hashes import CertificateHash  # noqa: E402
from securesock._identity import selectServerIdentities  # noqa: E402
from securesock._options import IdentitySpec  # noqa: E402
from securesock._store import Store, openStore  # noqa: E402


def makeStore(directory: Path, count: int) -> list[x509.Certificate]:
    """COUNT certificates host0.bench.example ... signed by one CA, all with one key."""
    authority = makeAuthority("bench CA")
    key = ec.generate_private_key(ec.SECP256R1())
    keyText = keyPEM(key)
    now = datetime.datetime.now(datetime.timezone.utc)
    made = []
    for number in range(count):
        name = f"host{number}.bench.example"
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Bench Host {number}")]))
            .issuer_name(authority.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(authority.key, hashes.SHA256())  # type: ignore[arg-type]
        )
        path = directory / f"site{number}.pem"
        path.write_bytes(certificatePEM(certificate) + keyText)
        made.append(certificate)
    return made


def timed(function: Callable[[], object], repeat: int = 1) -> float:
    """Seconds per call."""
    start = time.perf_counter()
    for _ in range(repeat):
        function()
    return (time.perf_counter() - start) / repeat


def duration(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.1f} µs"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--keep", metavar="DIR", help="make the store in DIR and keep it")
    args = parser.parse_args()
    directory = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="securesock-bench-"))
    directory.mkdir(parents=True, exist_ok=True)
    try:
        start = time.perf_counter()
        certificates = makeStore(directory, args.count)
        making = time.perf_counter() - start

        store = Store(str(directory))
        cold = timed(store.refresh)
        assert len(store.entries) == args.count, len(store.entries)
        recheck = timed(store.refresh, 5)

        lookups = min(args.count, 10_000)
        step = max(1, args.count // lookups)
        stems = [f"site{i}" for i in range(0, args.count, step)]
        dns = [f"HOST{i}.Bench.Example" for i in range(0, args.count, step)]
        cns = [f"Bench Host {i}" for i in range(0, args.count, step)]
        sha1s = [CertificateHash("sha1", c.fingerprint(hashes.SHA1())) for c in certificates[::step]]
        sha256s = [CertificateHash("sha256", c.fingerprint(hashes.SHA256())) for c in certificates[::step]]

        def each(found: Callable[[object], list[object]], keys: list[object]) -> Callable[[], None]:
            def run() -> None:
                for key in keys:
                    assert found(key)

            return run

        rows = [
            (f"make {args.count} certificates + keys (one signing key)", duration(making)),
            (f"index {args.count} files, cold (parse every file)", duration(cold)),
            ("re-check, nothing changed (one stat per file)", duration(recheck)),
            ("lookup by file stem", duration(timed(each(store.byName, stems)) / len(stems))),  # type: ignore[arg-type]
            ("lookup by subject CN", duration(timed(each(store.byName, cns)) / len(cns))),  # type: ignore[arg-type]
            ("lookup by DNS name, other case", duration(timed(each(store.byName, dns)) / len(dns))),  # type: ignore[arg-type]
            ("lookup by SHA-1", duration(timed(each(store.byHash, sha1s)) / len(sha1s))),  # type: ignore[arg-type]
            ("lookup by SHA-256", duration(timed(each(store.byHash, sha256s)) / len(sha256s))),  # type: ignore[arg-type]
            (
                "miss, with nearest names (error path)",
                duration(timed(lambda: store.nearestNames("site99999x"), 3)),
            ),
        ]

        def resolve() -> None:
            selectServerIdentities(IdentitySpec(certificate="site4242"), str(directory))

        os.environ.pop("SECURESOCK_STORE", None)
        openStore(str(directory))  # the process-wide index endpoints use, built once
        try:
            rows.append(
                ("certificate=NAME resolved (re-check + lookup + load key)", duration(timed(resolve, 5)))
            )
        except CertificateError as e:  # fewer than 4243 certificates
            rows.append(("certificate=NAME resolved", f"n/a ({e.message[:40]}...)"))

        print(
            f"{args.count} certificates, Python {platform.python_version()}, {platform.machine()}, "
            f"{os.cpu_count()} CPUs"
        )
        print()
        print("| operation | time |")
        print("|---|---|")
        for what, value in rows:
            print(f"| {what} | {value} |")
    finally:
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
