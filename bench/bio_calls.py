"""
What pyOpenSSL's per-call wrapper costs on the data path, and what
securesock/_bio.py saves of it: the OpenSSL calls of one echoed message on
a securesock server connection (the client's records into the receive BIO,
C{SSL_read}, C{SSL_write}, the answer out of the send BIO), made through
pyOpenSSL's C{Connection} methods (one C{recv} per record, as Twisted's TLS
layer reads) and through securesock._bio (the message's records read into
one buffer, as securesock's layer reads), alternating, in one process,
without sockets.

    python3 bench/bio_calls.py [--size 100] [--messages 5000] [--runs 5] [--tls 1.3]

A message of up to 16384 bytes is one record; up to 65536, up to four,
which securesock reads with one call.  OpenSSL's own work (record
encryption and decryption) is in both figures.  Each run checks that the
client reads back every message it sent, so both ways did the whole job.
Prints a Markdown table: median and min-max of the microseconds per echoed
message, and the ratio.
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


def recvEach(connection: SSL.Connection, records: int) -> list[bytes]:
    """pyOpenSSL's C{recv}, once per record: what the application gets, one chunk per record."""
    if records == 1:  # (no comprehension's frame for a one-record message)
        return [connection.recv(_bio.RECORD)]
    return [connection.recv(_bio.RECORD) for _ in range(records)]


def readTogether(connection: SSL.Connection, records: int) -> list[bytes]:
    """securesock._bio's C{decryptRecords}: the records in one buffer, one chunk."""
    data, error = _bio.decryptRecords(connection, records)
    if error is not None:
        raise error
    return [data]


Calls = tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any], Callable[..., Any]]
WAYS: dict[str, Calls] = {
    "pyOpenSSL methods": (_bio.publicFeed, recvEach, _bio.publicEncrypt, _bio.publicDrain),
    "securesock._bio": (_bio.feed, readTogether, _bio.encrypt, _bio.drain),
}
LARGEST = 4 * _bio.RECORD  # a message securesock's layer reads with one call (its batch)
VERSIONS = {"1.2": SSL.TLS1_2_VERSION, "1.3": SSL.TLS1_3_VERSION}


def certificate(directory: Path) -> str:
    """An ECDSA P-256 server certificate and key in one PEM file."""
    leaf = issue(makeAuthority("bio_calls"), ["localhost"])
    path = directory / "server.pem"
    path.write_bytes(certificatePEM(leaf.certificate) + keyPEM(leaf.key))
    path.chmod(0o600)
    return str(path)


def echoed(
    calls: Calls, server: SSL.Connection, sent: Iterator[bytes], count: int, records: int
) -> tuple[float, bytes]:
    """Seconds per message for C{count} echoed messages of C{records} records, and the TLS bytes sent back."""
    feed, read, encrypt, drain = calls
    answers = []
    started = time.perf_counter()
    for _ in range(count):
        feed(server, next(sent))
        for chunk in read(server, records):  # the application echoes each chunk it gets
            encrypt(server, chunk)
        answers.append(drain(server, 2 * LARGEST))
    return (time.perf_counter() - started) / count, b"".join(answers)


def measure(
    certificatePath: str, version: int, size: int, messages: int, runs: int
) -> dict[str, list[float]]:
    """Microseconds per echoed message, each way, C{runs} times, alternating; each run checked."""
    protocols = "TLS1_3" if version == SSL.TLS1_3_VERSION else "TLS1_2"
    server, client = serverConnection(certificatePath, protocols), clientConnection(version)
    handshake(client, server)
    message = (bytes(range(256)) * (size // 256 + 1))[:size]
    records = -(-size // _bio.RECORD)
    sent = []
    for _ in range(messages * runs * len(WAYS)):  # records only the client can make, in sequence
        client.sendall(message)
        sent.append(client.bio_read(2 * LARGEST))
    messagesSent = iter(sent)
    figures: dict[str, list[float]] = {way: [] for way in WAYS}
    for _ in range(runs):
        for way, calls in WAYS.items():
            seconds, answers = echoed(calls, server, messagesSent, messages, records)
            client.bio_write(answers)
            for number in range(messages):
                if b"".join(recvEach(client, records)) != message:
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
    """--size: four TLS records' worth at most, what securesock's layer reads with one call."""
    size = int(text)
    if not 1 <= size <= LARGEST:
        raise argparse.ArgumentTypeError(
            f"{size} bytes: a message is 1 to {LARGEST} bytes (up to four TLS records)"
        )
    return size


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--size", type=messageSize, default=100, help="bytes per message, 1 to 65536 (default 100)"
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
