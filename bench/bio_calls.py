"""
What pyOpenSSL's per-call wrapper costs on the data path, and what
securesock/_bio.py saves of it: the four OpenSSL calls of one echoed
message on a securesock server connection (the client's record into the
receive BIO, C{SSL_read}, C{SSL_write}, the answer out of the send BIO),
made through pyOpenSSL's C{Connection} methods and through securesock._bio,
alternating, in one process, without sockets.

    python3 bench/bio_calls.py [--size 100] [--messages 5000] [--runs 5] [--tls 1.3]

OpenSSL's own work (record encryption and decryption) is in both figures.
Each run checks that the client reads back every message it sent, so both
ways did the whole job.  Prints a Markdown table: median and min-max of the
microseconds per echoed message, and the ratio.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from OpenSSL import SSL  # noqa: E402

from securesock import _bio  # noqa: E402
from securesock._devca import certificatePEM, issue, keyPEM, makeAuthority  # noqa: E402
from tests.memorypair import clientConnection, handshake, serverConnection  # noqa: E402

Calls = tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any], Callable[..., Any]]
WAYS: dict[str, Calls] = {
    "pyOpenSSL methods": (_bio.publicFeed, _bio.publicDecrypt, _bio.publicEncrypt, _bio.publicDrain),
    "securesock._bio": (_bio.feed, _bio.decrypt, _bio.encrypt, _bio.drain),
}
VERSIONS = {"1.2": SSL.TLS1_2_VERSION, "1.3": SSL.TLS1_3_VERSION}


def certificate(directory: Path) -> str:
    """An ECDSA P-256 server certificate and key in one PEM file."""
    leaf = issue(makeAuthority("bio_calls"), ["localhost"])
    path = directory / "server.pem"
    path.write_bytes(certificatePEM(leaf.certificate) + keyPEM(leaf.key))
    path.chmod(0o600)
    return str(path)


def echoed(calls: Calls, server: SSL.Connection, records: Iterator[bytes], count: int) -> tuple[float, bytes]:
    """Seconds per message for C{count} echoed records, and the TLS bytes the server sent back."""
    feed, decrypt, encrypt, drain = calls
    answers = []
    started = time.perf_counter()
    for _ in range(count):
        feed(server, next(records))
        encrypt(server, decrypt(server, 2**16))
        answers.append(drain(server, 2**16))
    return (time.perf_counter() - started) / count, b"".join(answers)


def measure(
    certificatePath: str, version: int, size: int, messages: int, runs: int
) -> dict[str, list[float]]:
    """Microseconds per echoed message, each way, C{runs} times, alternating; each run checked."""
    protocols = "TLS1_3" if version == SSL.TLS1_3_VERSION else "TLS1_2"
    server, client = serverConnection(certificatePath, protocols), clientConnection(version)
    handshake(client, server)
    message = (bytes(range(256)) * (size // 256 + 1))[:size]
    sent = []
    for _ in range(messages * runs * len(WAYS)):  # records only the client can make, in sequence
        client.send(message)
        sent.append(client.bio_read(2**16))
    records = iter(sent)
    figures: dict[str, list[float]] = {way: [] for way in WAYS}
    for _ in range(runs):
        for way, calls in WAYS.items():
            seconds, answers = echoed(calls, server, records, messages)
            client.bio_write(answers)
            for number in range(messages):  # one record per message
                if client.recv(2**16) != message:
                    raise RuntimeError(f"{way}: echoed message {number} is not what the client sent")
            figures[way].append(seconds * 1e6)
    return figures


def report(figures: dict[str, list[float]], size: int, messages: int, tls: str) -> str:
    (publicName, public), (fastName, fast) = figures.items()
    lines = [
        f"One echoed {size}-byte message over TLS {tls}, {len(public)} runs of {messages} "
        f"(CPython {platform.python_version()}, {SSL.SSLeay_version(SSL.SSLEAY_VERSION).decode()}):",
        "",
        "| calls made through | µs per echoed message |",
        "|---|---|",
    ]
    for name, values in ((publicName, public), (fastName, fast)):
        lines.append(f"| {name} | {statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f}) |")
    lines.append(f"| ratio | {statistics.median(p / f for p, f in zip(public, fast, strict=True)):.2f}× |")
    return "\n".join(lines)


def messageSize(text: str) -> int:
    """--size: one TLS record's worth at most, so that one SSL_read takes a whole message."""
    size = int(text)
    if not 1 <= size <= 2**14:
        raise argparse.ArgumentTypeError(f"{size} bytes: a message is 1 to 16384 bytes (one TLS record)")
    return size


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--size", type=messageSize, default=100, help="bytes per message, 1 to 16384 (default 100)"
    )
    parser.add_argument("--messages", type=int, default=5000, help="messages per run (default 5000)")
    parser.add_argument("--runs", type=int, default=5, help="runs each way (default 5)")
    parser.add_argument("--tls", choices=sorted(VERSIONS), default="1.3")
    args = parser.parse_args()
    if not _bio.FAST:
        sys.exit("this pyOpenSSL lacks an internal securesock._bio uses: both ways would be the same")
    with tempfile.TemporaryDirectory() as directory:
        figures = measure(
            certificate(Path(directory)), VERSIONS[args.tls], args.size, args.messages, args.runs
        )
    print(report(figures, args.size, args.messages, args.tls))


if __name__ == "__main__":
    main()
