"""
What a TLS handshake in progress costs a securesock server, in memory.

    python3 bench/handshake_memory.py [--count 2000]

Starts a securesock server in a child process (ECDSA P-256 certificate from
securesock._devca, default options but a cap and timeout out of the way),
then opens COUNT connections to it in one of three ways (a fresh server for
each), and reads the server's resident set size (/proc/PID/status VmRSS) before and
after:

  - silent:    connect and send nothing;
  - partial:   send the first 60 bytes of a ClientHello and stop;
  - full:      send a whole ClientHello, read the server's answer (its
               ServerHello ... Finished flight), and stop there: the server
               has done its key exchange and signature and waits for our
               Finished; the costliest state a client can leave it in.

Prints a Markdown table (docs/hardening.md quotes it); maxHandshakes's
default is chosen from the "full" row.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from securesock._devca import certificatePEM, issue, keyPEM, makeAuthority  # noqa: E402
from tests import rawclients  # noqa: E402

_SERVER = """
import sys
from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
import securesock

class Echo(Protocol):
    def dataReceived(self, data):
        self.transport.write(data)

def ready(port):
    print(port.getHost().port, flush=True)

securesock.serverFromString(reactor, sys.argv[1]).listen(Factory.forProtocol(Echo)).addCallback(ready)
reactor.callLater(float(sys.argv[2]), reactor.stop)
reactor.run()
"""


def rss(pid: int) -> int:
    """Resident set size of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def settle(pid: int, seconds: float = 1.0) -> int:
    """RSS once it stops moving (the server has processed what arrived)."""
    last = rss(pid)
    deadline = time.monotonic() + seconds * 5
    while time.monotonic() < deadline:
        time.sleep(seconds / 4)
        now = rss(pid)
        if now == last:
            return now
        last = now
    return last


def measure(pid: int, port: int, count: int, kind: str) -> tuple[int, int]:
    """Server RSS before and after COUNT connections of one kind (closed again afterwards)."""
    hello = rawclients.clientHello()
    first = {"silent": b"", "partial": hello[:60], "full": hello}[kind]
    before = settle(pid)
    sockets = rawclients.openMany("127.0.0.1", port, count, lambda i: first, timeout=120)
    try:
        if kind == "full":
            for s in sockets:  # wait for each server flight: the server did its part
                s.settimeout(10)
                if not s.recv(65536):
                    raise RuntimeError("the server closed a connection during the measurement")
        after = settle(pid)
    finally:
        rawclients.closeAll(sockets)
    return before, after


def measureKind(kind: str, count: int) -> tuple[int, int]:
    """
    A fresh server (freed memory stays in a process, in allocator pools, so
    a second measurement would reuse it), COUNT connections of one kind:
    the server's RSS before and after, in bytes.
    """
    with tempfile.TemporaryDirectory() as directory:
        ca = makeAuthority("bench root")
        leaf = issue(ca, ["localhost", "127.0.0.1"])
        pem = Path(directory, "server.pem")
        pem.write_bytes(certificatePEM(leaf.certificate) + keyPEM(leaf.key))
        pem.chmod(0o600)
        description = (
            f"tls:0:interface=127.0.0.1:certificate={pem}:backlog=4096:"
            f"handshakeTimeout=600:maxHandshakes={count * 4}"
        )
        server = subprocess.Popen(
            [sys.executable, "-c", _SERVER, description, "900"],
            stdout=subprocess.PIPE,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            assert server.stdout is not None
            port = int(server.stdout.readline())
            # Warm up: the first connections allocate OpenSSL's and Python's pools.
            measure(server.pid, port, 50, "full")
            time.sleep(0.5)
            return measure(server.pid, port, count, kind)
        finally:
            server.terminate()
            server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=2000)
    args = parser.parse_args()
    rawclients.raiseFileLimit(args.count * 2 + 200)
    rows = [(kind, *measureKind(kind, args.count)) for kind in ("silent", "partial", "full")]
    print(
        f"{args.count} connections held open; {platform.python_implementation()} {platform.python_version()}, "
    )
    print(f"{platform.machine()}, {os.cpu_count()} cores\n")
    print("| connections that... | server RSS before | after | per connection |")
    print("|---|---|---|---|")
    for kind, before, after in rows:
        per = (after - before) / args.count
        print(f"| {kind} | {before / 2**20:.1f} MiB | {after / 2**20:.1f} MiB | {per / 1024:.1f} KiB |")


if __name__ == "__main__":
    main()
