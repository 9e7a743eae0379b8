"""
Where a securesock (or Twisted ssl:) server spends its CPU: cProfile of the
server process under one load from bench/loadgen.c.

    python3 bench/profile_datapath.py securesock|twisted echo|handshake|resumed|bulk|upload [--seconds 5]

handshake: full TLS 1.3 handshakes (openssl s_time -new); resumed: TLS 1.2
resumptions, each with one page (s_time -reuse -www /); bulk: the server
sends 256 MiB per second asked; upload: it receives them.

Prints the top functions by own time and by cumulative time.  The server
runs in this process (pinned to core 0), the load generator on core 1.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import run as suite  # noqa: E402  # bench/run.py
import servers  # noqa: E402  # bench/servers.py


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("kind", choices=["securesock", "twisted"])
    parser.add_argument("load", choices=["echo", "handshake", "resumed", "bulk", "upload"])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--dump", help="also write the raw profile here (pstats format)")
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})
    with tempfile.TemporaryDirectory(prefix="securesock-profile-") as directory:
        work = Path(directory)
        loadgen = suite.buildLoadgen(work)
        cert, key = suite.certificates(work)["ecdsa"]
        port = suite.freePort()
        from twisted.internet import reactor

        def drive() -> None:
            suite.waitPort(port, subprocess.Popen(["sleep", "30"]), 20)
            try:
                if args.load == "echo":
                    suite.echo(loadgen, port, args.seconds)
                elif args.load in ("bulk", "upload"):
                    direction = "recv" if args.load == "bulk" else "send"  # the load generator's side
                    for _ in range(args.seconds):
                        suite.bulk(loadgen, port, direction, 256 * 2**20)
                elif args.load == "resumed":
                    suite.sTime(port, args.seconds, "1_2", True, True)
                else:
                    suite.sTime(port, args.seconds, "1_3", False, False)
            finally:
                reactor.callFromThread(reactor.stop)  # type: ignore[attr-defined]

        threading.Thread(target=drive, daemon=True).start()
        servers.LIFETIME = args.seconds * 20 + 60
        profile = cProfile.Profile()
        profile.runcall(servers.twistedServer, args.kind, port, str(cert), str(key))
        if args.dump:
            profile.dump_stats(args.dump)
        stats = pstats.Stats(profile)
        stats.sort_stats("tottime").print_stats(args.top)
        stats.sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
