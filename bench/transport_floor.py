"""
How fast any TLS layer on Twisted's TCP transport could be: what Twisted's
event loop and TCP transport cost per connection and per read, measured
without TLS, and what the leanest memory-BIO TLS layer on them costs.

    python3 bench/transport_floor.py [--runs 5] [--seconds 3]

Seven servers of bench/servers.py, each pinned to core 0, each load
generator to core 1, server CPU per connection from /proc (as in
bench/run.py), the servers measured back to back in turns that reverse:

- plain TCP, one page per connection (bench/loadgen.c ``pages``), and
  100-byte echo over one connection (one read and one write per request):
  ``tcp`` (the benchmark's Twisted protocol on Twisted's ``tcp:``
  endpoint) and ``plain`` (a blocking loop, one connection at a time);
- TLS, one page per connection (``openssl s_time -www /``), full TLS 1.3
  and resumed TLS 1.2: securesock, Twisted's ``ssl:``, the pyOpenSSL
  floor (``ssl:`` makes a full handshake where the others resume), and
  ``bare`` and ``bare-close``: the least a memory-BIO TLS layer on
  Twisted's transport can be (bench/servers.py ``bareServer``: pages
  only, none of a real layer's duties), which waits for the client's
  close_notify as Twisted's TLS and securesock do, or closes at once as
  the floor does.

Twisted's cost per connection is ``tcp`` minus ``plain`` of the pages, its
cost per read (and write) the same difference of the echo.  A TLS layer
that cost nothing at all on Twisted's transport would still spend the
pyOpenSSL floor, Twisted's cost per connection, and its cost per read
once more, since a TLS connection's handshake takes one reactor read more
than a plain page (``strace -c`` of the servers: 2 reads with data against
1): their sum is the "transport bound".  The table says, for each TLS
load, how far securesock is above the bound, and the ratios against
``ssl:`` of securesock, of the bare layers and of the bound: a target
above the bare layer's ratio is out of reach of any memory-BIO layer on
Twisted's event loop and TCP transport, one above the bound's out of
reach of any TLS layer on them.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import run as suite  # noqa: E402  # bench/run.py

PLAIN_KINDS = ("tcp", "plain")
TLS_KINDS = ("securesock", "twisted", "pyopenssl", "bare", "bare-close")
# The TLS loads, and the ratio issue #6 asks of securesock against ssl: for each.
TARGETS = {"full TLS 1.3": 1.25, "resumed TLS 1.2": 2.0}


def _plainClient(
    loadgen: Path, mode: list[str], seconds: int, counted: str
) -> tuple[float, dict[str, float]]:
    """Run ``loadgen MODE...`` over plain TCP: (how many C{counted} it printed, figures)."""
    out = suite.client([str(loadgen), *mode], timeout=seconds * 4 + 30, env={"LOADGEN_PLAIN": "1"})
    found = re.search(rf"{counted} (\d+) seconds ([\d.]+)", out)
    if not found or int(found.group(1)) == 0:
        raise RuntimeError(f"loadgen {mode[0]}: {out[-300:]!r}")
    count = int(found.group(1))
    return count, {"per_second": count / float(found.group(2))}


def pages(loadgen: Path, port: int, seconds: int) -> tuple[float, dict[str, float]]:
    """Plain TCP connections one after the other, one page each: (connections, figures)."""
    return _plainClient(loadgen, ["pages", str(port), str(seconds)], seconds, "connections")


def echoOne(loadgen: Path, port: int, seconds: int) -> tuple[float, dict[str, float]]:
    """100-byte requests over one plain TCP connection, each answered before the next: (requests, figures)."""
    return _plainClient(loadgen, ["echo", str(port), "1", str(seconds), "100"], seconds, "requests")


def loads(
    loadgen: Path, seconds: int
) -> dict[str, tuple[Sequence[str], Callable[[suite.Server], dict[str, float]]]]:
    """Each load: the servers it runs on, and how to measure it on one."""

    def tls(version: str, reuse: bool) -> Callable[[suite.Server], dict[str, float]]:
        return lambda server: suite.measured(server, suite.sTime, server.port, seconds, version, reuse, True)

    return {
        "plain TCP": (
            PLAIN_KINDS,
            lambda server: suite.measured(server, pages, loadgen, server.port, seconds),
        ),
        "plain TCP echo": (
            PLAIN_KINDS,
            lambda server: suite.measured(server, echoOne, loadgen, server.port, seconds),
        ),
        "full TLS 1.3": (TLS_KINDS, tls("1_3", False)),
        "resumed TLS 1.2": (TLS_KINDS, tls("1_2", True)),
    }


def transportBound(cost: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """
    From the medians (µs per connection or request, by load and server): for
    each TLS load, Twisted's cost per connection and per read (tcp - plain),
    the transport bound (pyOpenSSL floor + Twisted's cost per connection +
    one read), securesock's distance above the bound, and the ratios against
    ssl: of securesock, of the bare layers and of the bound.
    """
    perConnection = cost["plain TCP"]["tcp"] - cost["plain TCP"]["plain"]
    perRead = cost["plain TCP echo"]["tcp"] - cost["plain TCP echo"]["plain"]
    bounds: dict[str, dict[str, float]] = {}
    for load in TARGETS:
        row = cost[load]
        bound = row["pyopenssl"] + perConnection + perRead
        bounds[load] = {
            "twisted_per_connection": perConnection,
            "twisted_per_read": perRead,
            "bound": bound,
            "securesock_above_bound": row["securesock"] - bound,
            "securesock_ratio": row["twisted"] / row["securesock"],
            "bare_ratio": row["twisted"] / row["bare"],
            "bare_close_ratio": row["twisted"] / row["bare-close"],
            "bound_ratio": row["twisted"] / bound,
            "target": TARGETS[load],
        }
    return bounds


def table(cost: dict[str, dict[str, float]], spread: dict[str, dict[str, tuple[float, float]]]) -> str:
    """Markdown: the medians with min-max, then what the bound allows for each target."""
    lines = ["| load | server | µs per connection or request (min-max) |", "|---|---|---|"]
    for load, row in cost.items():
        for kind, value in row.items():
            low, high = spread[load][kind]
            lines.append(f"| {load} | {kind} | {value:,.0f} ({low:,.0f}-{high:,.0f}) |")
    lines += [
        "",
        "| TLS load | Twisted per connection | per read | transport bound | securesock above it "
        "| ssl: / securesock | ssl: / bare | ssl: / bare-close | ssl: / bound | target |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for load, b in transportBound(cost).items():
        lines.append(
            f"| {load} | {b['twisted_per_connection']:,.0f} µs | {b['twisted_per_read']:,.0f} µs "
            f"| {b['bound']:,.0f} µs "
            f"| {b['securesock_above_bound']:,.0f} µs | {b['securesock_ratio']:.2f}x "
            f"| {b['bare_ratio']:.2f}x | {b['bare_close_ratio']:.2f}x "
            f"| {b['bound_ratio']:.2f}x | {b['target']:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=3)
    args = parser.parse_args()
    for tool in ("gcc", "openssl", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench/transport_floor.py needs {tool}")
    values: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="securesock-transport-") as directory:
        work = Path(directory)
        loadgen = suite.buildLoadgen(work)
        cert, key = suite.certificates(work)["ecdsa"]
        chosen = loads(loadgen, args.seconds)
        with suite.servers([*PLAIN_KINDS, *TLS_KINDS], cert, key, work, loadgen) as running:
            for number in range(args.runs):
                for load, (kinds, measure) in chosen.items():
                    for kind in suite.inTurn(list(kinds), number):
                        spent = measure(running[kind])["cpu_us_per_op"]
                        values.setdefault(load, {}).setdefault(kind, []).append(spent)
                        print(f"  {load:16} {kind:10} {spent:8.1f} µs", flush=True)
    cost = {load: {kind: statistics.median(v) for kind, v in row.items()} for load, row in values.items()}
    spread = {load: {kind: (min(v), max(v)) for kind, v in row.items()} for load, row in values.items()}
    print()
    print(table(cost, spread))
    print(
        f"\nServer CPU per connection (echo: per request), medians of {args.runs} runs of {args.seconds} s each."
    )


if __name__ == "__main__":
    main()
