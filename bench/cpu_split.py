"""
Where each server's CPU goes, by component: the Python interpreter,
OpenSSL, the kernel and the C library, in microseconds per operation.

    python3 bench/cpu_split.py [--runs 3] [--seconds 3] [--loads full13,resumed12,upload]

For each load and run, each Python server (securesock, Twisted's ``ssl:``,
the blocking pyOpenSSL floor) serves the load generator of bench/run.py
(``openssl s_time`` or bench/loadgen.c, pinned to core 1) while
``perf record -p PID`` samples it; ``perf report --sort dso`` splits the
samples by shared object, and the server's CPU per operation (from
/proc, as in bench/run.py) is shared out in those proportions.
cProfile counts Python calls; this counts where the time goes, C
included, with no profiler in the process.

Servers (--kinds): by default securesock, Twisted's ``ssl:`` and the
pyOpenSSL floor; also asyncio, and relay (``twistd securesock
--connect``).  Not stunnel: it starts a thread per connection, which
``perf record -p`` does not follow.  Loads: full13 (full TLS 1.3 handshakes, ``s_time -new``), resumed12 (TLS
1.2 resumptions with one page, ``s_time -reuse -www /``), upload (the
server receives 512 MiB), download (it sends 512 MiB).  Prints a Markdown
table of medians (docs/performance.md quotes one).  Needs perf (Debian:
linux-perf) allowed to sample the server (kernel.perf_event_paranoid <= 2
for a process of the same user).
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import run as suite  # noqa: E402  # bench/run.py

KINDS = ("securesock", "twisted", "pyopenssl")
COMPONENTS = ("Python", "OpenSSL", "kernel", "libc", "other")
BULK = {"upload", "download"}


def component(dso: str) -> str:
    """The component a shared object of a Python TLS server belongs to."""
    if dso.startswith("[kernel") or dso == "[vdso]":
        return "kernel"
    if dso.startswith("libpython") or dso.startswith("python3") or "cpython-" in dso:
        return "Python"  # the interpreter, and C extensions' glue (cffi, _socket, zope)
    if dso.startswith("_rust.abi3") or dso.startswith("libssl") or dso.startswith("libcrypto"):
        return "OpenSSL"  # pyca/cryptography's wheel links OpenSSL into _rust.abi3.so
    if dso.startswith("libc.so") or dso.startswith("libm.so") or dso.startswith("ld-linux"):
        return "libc"
    return "other"


def parseDSOReport(text: str) -> dict[str, float]:
    """Shares (0-1) per component from ``perf report --sort dso --stdio`` lines such as ``42.1%  libc.so.6``."""
    shares = dict.fromkeys(COMPONENTS, 0.0)
    for line in text.splitlines():
        found = re.match(r"\s*([\d.]+)%\s+(\S+)", line)
        if found:
            shares[component(found.group(2))] += float(found.group(1)) / 100
    total = sum(shares.values())
    return {name: share / total for name, share in shares.items()} if total else shares


def sampled(
    server: suite.Server, load: Callable[[suite.Server], tuple[float, dict[str, float]]], work: Path
) -> dict[str, float]:
    """Run C{load} against C{server} under perf: microseconds per operation, per component."""
    data = work / f"{server.kind}.perf"
    recorder = subprocess.Popen(
        ["perf", "record", "-q", "-o", str(data), "-p", str(server.pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        perOperation = suite.measured(server, load, server)["cpu_us_per_op"]
    finally:
        recorder.send_signal(2)  # SIGINT: perf writes its data and exits
        _, errors = recorder.communicate(timeout=60)
    report = subprocess.run(
        ["perf", "report", "-i", str(data), "--sort", "dso", "--stdio", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if report.returncode != 0 or not report.stdout.strip():
        raise RuntimeError(
            f"perf gave no samples for {server.kind}: {errors.decode()[-300:]} {report.stderr[-300:]}"
        )
    shares = parseDSOReport(report.stdout)
    return {"total": perOperation, **{name: share * perOperation for name, share in shares.items()}}


def loads(loadgen: Path, seconds: int) -> dict[str, Callable[[suite.Server], tuple[float, dict[str, float]]]]:
    size = 512 * 2**20
    return {
        "full13": lambda s: suite.sTime(s.port, seconds, "1_3", False, False),
        "resumed12": lambda s: suite.sTime(s.port, seconds, "1_2", True, True),
        "upload": lambda s: suite.bulk(loadgen, s.port, "send", size),
        "download": lambda s: suite.bulk(loadgen, s.port, "recv", size),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--loads", default="full13,resumed12,upload")
    parser.add_argument(
        "--kinds",
        default=",".join(KINDS),
        help="servers, of bench/run.py's: securesock, twisted, pyopenssl, asyncio, relay",
    )
    args = parser.parse_args()
    for tool in ("perf", "gcc", "openssl", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench/cpu_split.py needs {tool}")
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="securesock-split-") as directory:
        work = Path(directory)
        loadgen = suite.buildLoadgen(work)
        cert, key = suite.certificates(work)["ecdsa"]
        chosen: dict[str, Any] = {
            name: load for name, load in loads(loadgen, args.seconds).items() if name in args.loads.split(",")
        }
        kinds = args.kinds.split(",")
        if "stunnel" in kinds:
            raise SystemExit("bench/cpu_split.py: perf record -p misses stunnel's per-connection threads")
        with suite.servers(kinds, cert, key, work, loadgen) as running:
            for _run in range(args.runs):
                for name, load in chosen.items():
                    for kind, server in running.items():
                        figures = sampled(server, load, work)
                        results.setdefault((name, kind), []).append(figures)
    print("| load | server | total | " + " | ".join(COMPONENTS) + " |")
    print("|---|---|---|" + "---|" * len(COMPONENTS))
    for name in chosen:
        for kind in kinds:
            runs = results[(name, kind)]
            scale = 1e-3 if name in BULK else 1.0  # bulk operations are GB: ms per GB
            medians = {
                column: statistics.median(r[column] for r in runs) * scale
                for column in ("total", *COMPONENTS)
            }
            cells = " | ".join(f"{medians[c]:,.0f}" for c in COMPONENTS)
            print(f"| {name} | {kind} | {medians['total']:,.0f} | {cells} |")
    print(
        f"\nServer CPU per operation (handshakes: µs; upload, download: ms per GB), medians of {args.runs} runs."
    )


if __name__ == "__main__":
    main()
