"""
The benchmark suite: securesock against Twisted's own ``ssl:`` endpoint,
stunnel and asyncio + the standard library's ssl, in one run, with the floor
of the stack securesock and ``ssl:`` share: a blocking pyOpenSSL server with
no event loop (handshakes and bulk only; it serves one connection at a time).

    python3 -m pip install -r bench/requirements.txt   # matplotlib
    python3 bench/run.py [--quick] [--runs N] [--no-docs]

Needs gcc, libssl-dev, openssl, stunnel4 and taskset (Debian: util-linux).
Every server runs pinned to core 0, every load generator (bench/loadgen.c,
``openssl s_time``) to core 1; everything is on 127.0.0.1.  Server CPU per
operation comes from /proc (to the nanosecond from each thread's schedstat
when the sum agrees with the clock ticks of /proc/PID/stat, from those
ticks, all threads, otherwise), and so do its minor
page faults, shown for the bulk figures.  Each figure is the median of RUNS runs, with
min-max; the ratio against Twisted's ``ssl:`` is taken run by run (inside
a run, each figure is measured on every server back to back) before the
median.  The "workers"
figure runs ``twistd securesock --workers 1`` and ``--workers 2`` on the
server core alone and records each process's CPU, from which
bench/report.py projects two workers' rate on a core each.

Writes bench/results.json, docs/performance.md (from the results and the
issue's targets) and docs/performance.png.  The whole suite takes about
13 minutes (--quick: about 3, for a smoke test; its figures are not for
publication).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT))

from securesock._devca import certificatePEM, issue, keyPEM, makeAuthority  # noqa: E402

sys.path.insert(0, str(BENCH))
from servers import SERVERS  # noqa: E402  # bench/servers.py

SERVER_CORE = "0"
CLIENT_CORE = "1"
KINDS = ("securesock", "twisted", "stunnel", "asyncio", "pyopenssl")
# The floors (pyOpenSSL, plain TCP) serve one connection at a time: no loads of many concurrent clients.
SEQUENTIAL = {"pyopenssl", "plain"}
TICK = os.sysconf("SC_CLK_TCK")
_ROUNDING = 3 / TICK  # two readings rounded down to whole ticks, and the moments between their two reads


# ---- processes ---------------------------------------------------------------


def cpuTimes() -> list[int]:
    """The machine's CPU time counters (/proc/stat "cpu" line: user ... steal), in ticks."""
    return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]


def stealShare(start: list[int], end: list[int]) -> float:
    """Percent of the machine's CPU time taken by the hypervisor for other guests (steal) in between."""
    spent = [b - a for a, b in zip(start, end, strict=True)]
    return 100.0 * spent[7] / sum(spent) if sum(spent) else 0.0


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat after the command name (which may hold spaces): fields 3 onwards."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpuSeconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc, in clock ticks (10 ms)."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / TICK


class CPUReading(NamedTuple):
    """
    A process's CPU time, read two ways: in clock ticks for the whole
    process (threads that ended included), and to the nanosecond for each
    thread alive at the time (/proc/PID/task/TID/schedstat).
    """

    ticks: float  # seconds
    threads: dict[int, int] | None  # thread id -> nanoseconds; None if a thread ended while read


def cpuReading(pid: int) -> CPUReading:
    threads: dict[int, int] = {}
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            threads[int(tid)] = int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
    except (FileNotFoundError, ProcessLookupError):
        return CPUReading(cpuSeconds(pid), None)  # a thread ended while read
    return CPUReading(cpuSeconds(pid), threads)


def cpuSpent(before: CPUReading, after: CPUReading) -> float:
    """
    CPU seconds between two readings: to the nanosecond from the threads'
    schedstat when their sums agree with the clock ticks, from the ticks
    otherwise.  A bulk figure of 512 MiB counts only 15 to 35 ticks, hence
    the nanoseconds; but a thread that ended between the readings (stunnel
    starts one per connection, and between two connections has only its
    main thread) is only in the ticks, the kernel's precise per-process
    total rounded down to whole ticks.  So the nanoseconds are taken only
    when the two agree within that rounding, whichever threads came or went.
    """
    ticks = after.ticks - before.ticks
    if before.threads is not None and after.threads is not None:
        precise = (sum(after.threads.values()) - sum(before.threads.values())) / 1e9
        if abs(ticks - precise) <= _ROUNDING:
            return precise
    return ticks


def minorFaults(pid: int) -> int:
    """Minor page faults of a process (all its threads), from /proc: pages the kernel mapped in and zeroed."""
    return int(_stat(pid)[7])


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def settledRSS(pid: int) -> int:
    last = rss(pid)
    for _ in range(20):  # at most 5 s
        time.sleep(0.25)
        now = rss(pid)
        if now == last:
            return now
        last = now
    return last


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def waitPort(port: int, process: subprocess.Popen[bytes], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with status {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {seconds} s")


def children(pid: int) -> list[int]:
    """The processes whose parent is C{pid}, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(_stat(int(entry.name))[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue  # ended meanwhile
    return found


def processTree(pid: int) -> dict[int, list[int]]:
    """C{pid} and its descendants, each with its children (at most 64 processes)."""
    tree: dict[int, list[int]] = {}
    waiting = [pid]
    while waiting and len(tree) < 64:
        current = waiting.pop()
        tree[current] = children(current)
        waiting += tree[current]
    return tree


def listeners(port: int) -> int:
    """How many sockets listen on C{port} (one per worker with SO_REUSEPORT), from /proc/net."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":  # 0A: LISTEN
                count += 1
    return count


def _moreFiles() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 8192), hard), hard))


def pinned(core: str, args: Sequence[str]) -> list[str]:
    return ["taskset", "-c", core, *args]


class Server:
    """A TLS server of one kind, pinned to the server core; stopped by its PID."""

    def __init__(self, kind: str, cert: Path, key: Path, work: Path, loadgen: Path | None) -> None:
        self.kind = kind
        self.extra: list[subprocess.Popen[bytes]] = []
        log = open(work / f"{kind}-{time.monotonic_ns()}.log", "wb")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        if kind in SERVERS:  # the Python servers of bench/servers.py
            self.process = subprocess.Popen(
                pinned(
                    SERVER_CORE, [sys.executable, str(BENCH / "servers.py"), kind, "0", str(cert), str(key)]
                ),
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                preexec_fn=_moreFiles,
            )
            assert self.process.stdout is not None
            line = self.process.stdout.readline().decode()
            if not line.startswith("READY"):
                raise RuntimeError(f"{kind} server did not start: {line!r}")
            self.port = int(line.split()[1])
            return
        self.port = freePort()
        twistd = [
            sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
            f"--logfile={work}/{kind}.log", "securesock", "--listen",
            f"tls:{self.port}:interface=127.0.0.1:certificate={cert}:privateKey={key}:"
            "maxHandshakes=100000:handshakeTimeout=600:backlog=4096",
        ]  # fmt: skip
        if kind.startswith("workers"):  # twistd securesock --workers N, serving its diagnostic page
            args = [*twistd, "--workers", kind.removeprefix("workers")]
        elif kind in ("stunnel", "relay"):  # both relay to a backend that sends and echoes
            backend = subprocess.Popen(
                pinned(CLIENT_CORE, [str(loadgen), "backend", "0"]),
                stdout=subprocess.PIPE,
                preexec_fn=_moreFiles,
            )
            self.extra.append(backend)
            assert backend.stdout is not None
            backendPort = int(backend.stdout.readline().split()[1])
            if kind == "relay":
                args = [*twistd, "--connect", f"tcp:127.0.0.1:{backendPort}"]
            else:
                config = work / f"stunnel-{self.port}.conf"
                config.write_text(
                    f"foreground = yes\npid =\ndebug = 3\n[bench]\naccept = 127.0.0.1:{self.port}\n"
                    f"connect = 127.0.0.1:{backendPort}\ncert = {cert}\nkey = {key}\n"
                )
                args = [shutil.which("stunnel4") or "stunnel", str(config)]
        else:
            raise ValueError(kind)
        self.process = subprocess.Popen(
            pinned(SERVER_CORE, args), stdout=log, stderr=log, env=env, cwd=work, preexec_fn=_moreFiles
        )
        waitPort(self.port, self.process)
        if kind.startswith("workers"):  # every worker listening, not only the first
            deadline = time.monotonic() + 30
            while listeners(self.port) < int(kind.removeprefix("workers")) and time.monotonic() < deadline:
                time.sleep(0.1)

    @property
    def pid(self) -> int:
        return self.process.pid  # taskset execs the server: the same PID

    def stop(self) -> None:
        for process in [self.process, *self.extra]:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)


@contextmanager
def servers(
    kinds: Sequence[str], cert: Path, key: Path, work: Path, loadgen: Path
) -> Iterator[dict[str, Server]]:
    started: dict[str, Server] = {}
    try:
        for kind in kinds:
            started[kind] = Server(kind, cert, key, work, loadgen)
        time.sleep(0.3)
        yield started
    finally:
        for server in started.values():
            server.stop()


def client(args: Sequence[str], timeout: float = 120, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        pinned(CLIENT_CORE, args),
        capture_output=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        preexec_fn=_moreFiles,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{args[0]} {args[1]} failed ({result.returncode}): {result.stderr.decode()[-500:]}"
        )
    return result.stdout.decode()


def measured(
    server: Server, load: Callable[..., tuple[float, dict[str, float]]], *args: Any
) -> dict[str, float]:
    """
    Run C{load(*args)} against a server: its figures, plus the server's CPU
    microseconds and minor page faults per operation (faults show memory the
    C library hands back to the kernel and takes again: see "Not more than
    64 KiB per call" in docs/performance.md).
    """
    before, faultsBefore = cpuReading(server.pid), minorFaults(server.pid)
    operations, figures = load(*args)
    spent = cpuSpent(before, cpuReading(server.pid))
    faults = minorFaults(server.pid) - faultsBefore
    figures["cpu_us_per_op"] = spent / operations * 1e6 if operations else float("nan")
    figures["faults_per_op"] = faults / operations if operations else float("nan")
    return figures


def workersMeasured(server: Server, seconds: int) -> dict[str, float]:
    """
    Full TLS 1.3 handshakes (C{openssl s_time -new}) against C{twistd
    securesock --workers N}, every process of it pinned to the server core:
    CPU per handshake of the processes that accept (the workers, the
    processes without children; with one worker, twistd itself), the
    busiest one's share of it, and what the others (twistd, the
    supervisor) spent per handshake.  On two cores this cannot show two
    workers outrunning one (the load generator has the other core); it
    shows what decides that on a larger machine: how evenly the kernel
    spreads connections, and whether a worker pays more per handshake.
    """
    tree = processTree(server.pid)
    workers = [pid for pid, kids in tree.items() if not kids]
    before = {pid: cpuReading(pid) for pid in tree}
    count, figures = sTime(server.port, seconds, "1_3", False, False)
    spent = {pid: cpuSpent(before[pid], cpuReading(pid)) for pid in tree}
    accepting = [spent[pid] for pid in workers]
    return {
        "one_core_per_second": figures["per_second"],
        "cpu_us_per_op": sum(accepting) / count * 1e6,
        "busiest_share": max(accepting) / sum(accepting) if sum(accepting) else float("nan"),
        "others_us_per_op": (sum(spent.values()) - sum(accepting)) / count * 1e6,
    }


# ---- loads -------------------------------------------------------------------


def sTime(port: int, seconds: int, version: str, reuse: bool, www: bool) -> tuple[float, dict[str, float]]:
    args = ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-time", str(seconds), f"-tls{version}"]
    args += ["-reuse" if reuse else "-new"]
    if www:
        args += ["-www", "/"]
    out = client(args, timeout=seconds * 4 + 30)
    found = re.findall(r"^(\d+) connections in ([\d.]+) real seconds", out, re.M)
    if not found:
        raise RuntimeError(f"s_time printed no result:\n{out[-500:]}")
    count, real = int(found[-1][0]), float(found[-1][1])
    figures = {"per_second": count / max(real, 1e-9)}
    if reuse:
        # s_time prints one character per connection: 'r' resumed, else the version number or '*'.
        marks = "".join(line for line in out.splitlines() if re.fullmatch(r"[r*0-9]+", line))
        timed = marks[1:] if marks else ""  # the first connection makes the session
        figures["resumed_pct"] = 100.0 * timed.count("r") / max(len(timed), 1)
    return count, figures


def bulk(loadgen: Path, port: int, direction: str, size: int) -> tuple[float, dict[str, float]]:
    out = client([str(loadgen), direction, str(port), str(size)])
    found = re.search(r"bytes (\d+) seconds ([\d.]+)", out)
    assert found, out
    return size / 1e9, {"mb_per_s": int(found.group(1)) / float(found.group(2)) / 1e6}


def echo(loadgen: Path, port: int, seconds: float) -> tuple[float, dict[str, float]]:
    out = client([str(loadgen), "echo", str(port), "50", str(seconds), "100"], timeout=seconds * 4 + 30)
    found = re.search(r"requests (\d+) seconds ([\d.]+) p50_us ([\d.]+) p99_us ([\d.]+) failed (\d+)", out)
    assert found, out
    requests = int(found.group(1))
    return requests, {
        "req_per_s": requests / float(found.group(2)),
        "p50_us": float(found.group(3)),
        "p99_us": float(found.group(4)),
    }


def ttfb(loadgen: Path, port: int, seconds: float, rate: int = 300) -> tuple[float, dict[str, float]]:
    out = client([str(loadgen), "ttfb", str(port), str(rate), str(seconds), "16"], timeout=seconds * 4 + 30)
    found = re.search(r"connections (\d+) p50_us ([\d.]+) p99_us ([\d.]+) failed (\d+)", out)
    assert found, out
    return int(found.group(1)), {"p50_ms": float(found.group(2)) / 1e3, "p99_ms": float(found.group(3)) / 1e3}


def idleMemory(server: Server, loadgen: Path, count: int) -> dict[str, float]:
    """Server RSS growth per idle TLS connection (handshake done, one echo, then quiet)."""
    warm = subprocess.Popen(
        pinned(CLIENT_CORE, [str(loadgen), "idle", str(server.port), "50"]),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        preexec_fn=_moreFiles,
    )
    assert warm.stdout is not None and warm.stdin is not None
    warm.stdout.readline()
    warm.stdin.close()
    warm.wait(30)
    before = settledRSS(server.pid)
    holder = subprocess.Popen(
        pinned(CLIENT_CORE, [str(loadgen), "idle", str(server.port), str(count)]),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        preexec_fn=_moreFiles,
    )
    assert holder.stdout is not None and holder.stdin is not None
    try:
        line = holder.stdout.readline().decode()
        if not line.startswith("READY"):
            raise RuntimeError(f"loadgen idle: {line!r}")
        after = settledRSS(server.pid)
    finally:
        holder.stdin.close()
        holder.wait(60)
    return {"kib_per_conn": (after - before) / count / 1024}


def opensslSpeed(seconds: int) -> dict[str, float]:
    """The physical limit on one core: signatures/s and AES-128-GCM MB/s (system openssl)."""
    out = client(["openssl", "speed", "-seconds", str(seconds), "ecdsap256", "rsa2048"], timeout=120)
    figures: dict[str, float] = {}
    found = re.search(r"^\s*256 bits ecdsa \(nistp256\)\s+\S+s\s+\S+s\s+([\d.]+)", out, re.M)
    if found:
        figures["ecdsa_p256_sign_per_s"] = float(found.group(1))
    found = re.search(r"^rsa\s+2048 bits\s+\S+s\s+\S+s\s+([\d.]+)", out, re.M)
    if found:
        figures["rsa2048_sign_per_s"] = float(found.group(1))
    out = client(
        ["openssl", "speed", "-seconds", str(seconds), "-bytes", "16384", "-evp", "aes-128-gcm"], timeout=120
    )
    found = re.search(r"^AES-128-GCM\s+([\d.]+)k", out, re.M | re.I)
    if found:
        figures["aes128gcm_16k_mb_per_s"] = float(found.group(1)) * 1000 / 1e6
    return figures


# ---- the suite ---------------------------------------------------------------


def certificates(work: Path) -> dict[str, tuple[Path, Path]]:
    ca = makeAuthority("bench root")
    made = {}
    for name, keyType in (("ecdsa", "ec"), ("rsa", "rsa")):
        leaf = issue(ca, ["localhost", "127.0.0.1"], keyType=keyType)
        cert, key = work / f"{name}.crt", work / f"{name}.key"
        cert.write_bytes(certificatePEM(leaf.certificate))
        key.write_bytes(keyPEM(leaf.key))
        key.chmod(0o600)
        made[name] = (cert, key)
    return made


def buildLoadgen(work: Path) -> Path:
    binary = work / "loadgen"
    subprocess.run(
        ["gcc", "-O2", "-o", str(binary), str(BENCH / "loadgen.c"), "-lssl", "-lcrypto", "-lpthread"],
        check=True,
    )
    return binary


Results = dict[str, dict[str, list[dict[str, float]]]]  # figure -> kind -> one dict per run


def record(results: Results, figure: str, kind: str, values: dict[str, float]) -> None:
    results.setdefault(figure, {}).setdefault(kind, []).append(values)
    print(f"  {figure:28} {kind:10} " + " ".join(f"{k}={v:.1f}" for k, v in values.items()), flush=True)


def inTurn(kinds: list[str], number: int) -> list[str]:
    """
    The servers' order in run C{number}: forwards, then backwards.  Every
    figure is measured on each server back to back, so a pair compared run by
    run (securesock's and C{ssl:}'s) is seconds apart, not the length of a
    whole series of figures: these shared virtual machines drift by tens of
    percent within minutes.  Reversing the order every other run spreads
    what going first or last may cost.
    """
    return kinds if number % 2 == 0 else kinds[::-1]


class Load(NamedTuple):
    """A figure and how to measure it on a server."""

    figure: str
    measure: Callable[[Server], dict[str, float]]
    concurrent: bool = False  # needs concurrent clients, which the floor (SEQUENTIAL) cannot serve
    only: frozenset[str] | None = None  # the kinds it is measured on, if not every one running

    def measuredOn(self, kind: str) -> bool:
        """Whether this figure is measured on a server of C{kind}."""
        if self.concurrent and kind in SEQUENTIAL:
            return False
        return self.only is None or kind in self.only


def measureInTurn(
    results: Results,
    running: dict[str, Server],
    loads: Sequence[Load],
    runs: int,
    names: dict[str, str] | None = None,
) -> None:
    """
    C{runs} runs of C{loads} on the C{running} servers: in each, one figure
    after the other, each on every server in turn (L{inTurn}); the floor,
    which serves one connection at a time, skips loads of concurrent
    clients, and a load with C{only} is measured on those kinds alone
    (L{Load.measuredOn}).  C{names}: the name a server's figures are
    recorded under, if not its kind.
    """
    for number in range(runs):
        for load in loads:
            for kind in inTurn(list(running), number):
                if not load.measuredOn(kind):
                    continue
                record(results, load.figure, (names or {}).get(kind, kind), load.measure(running[kind]))


def certificateLoads(certName: str, loadgen: Path, seconds: int, size: int) -> list[Load]:
    """
    The figures measured with one certificate, in order.  Bulk transfers,
    echo and time to first byte are measured with the ECDSA certificate
    only; RSA's resumptions under TLS 1.3 only (TLS 1.2's sign nothing
    either).

    Each resumption is compared with a full handshake doing the same work
    around it.  A TLS 1.2 handshake is measured alone, full or resumed (no
    page: the client resumes from the session of the handshake alone).
    ``s_time`` resumes TLS 1.3 sessions only with ``-www`` (it reads the
    tickets the server sends after the handshake while it reads the page),
    so TLS 1.3 resumptions serve a page each, and securesock's full TLS 1.3
    handshake is measured once more serving that page (``+ page``): issue
    #6 compares its resumption with that.
    """

    def handshakes(version: str, reuse: bool, www: bool) -> Callable[[Server], dict[str, float]]:
        return lambda server: measured(server, sTime, server.port, seconds, version, reuse, www)

    loads = [
        Load(f"full {certName} TLS1.2", handshakes("1_2", False, False)),
        Load(f"full {certName} TLS1.3", handshakes("1_3", False, False)),
    ]
    if certName == "ecdsa":
        loads.append(Load(f"resumed {certName} TLS1.2", handshakes("1_2", True, False)))
    loads += [
        Load(
            f"full {certName} TLS1.3 + page", handshakes("1_3", False, True), only=frozenset({"securesock"})
        ),
        Load(f"resumed {certName} TLS1.3", handshakes("1_3", True, True)),
    ]
    if certName != "ecdsa":
        return loads
    return loads + [
        Load("bulk server sends", lambda server: measured(server, bulk, loadgen, server.port, "recv", size)),
        Load(
            "bulk server receives", lambda server: measured(server, bulk, loadgen, server.port, "send", size)
        ),
        Load(
            "echo 100 B, 50 clients",
            lambda server: measured(server, echo, loadgen, server.port, seconds),
            concurrent=True,
        ),
        Load(
            "TTFB at 300 conn/s",
            lambda server: measured(server, ttfb, loadgen, server.port, seconds + 1),
            concurrent=True,
        ),
    ]


def runSuite(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    loadgen = buildLoadgen(work)
    certs = certificates(work)
    runs, seconds = args.runs, (1 if args.quick else 2)
    results: Results = {}
    started = time.monotonic()
    stealStart = cpuTimes()

    size = (64 if args.quick else 512) * 2**20
    for certName, (cert, key) in certs.items():
        loads = certificateLoads(certName, loadgen, seconds, size)
        with servers(KINDS, cert, key, work, loadgen) as running:
            measureInTurn(results, running, loads, runs)
        print(f"-- {certName} done after {time.monotonic() - started:.0f} s", flush=True)

    cert, key = certs["ecdsa"]
    count = 300 if args.quick else 1000
    for _run in range(runs):
        for kind in KINDS:
            if kind in SEQUENTIAL:
                continue
            with servers([kind], cert, key, work, loadgen) as running:
                record(
                    results, f"idle memory, {count} conns", kind, idleMemory(running[kind], loadgen, count)
                )

    with servers(["relay", "stunnel"], cert, key, work, loadgen) as running:
        relayLoads = [
            Load(
                "relay: bulk server sends",
                lambda server: measured(server, bulk, loadgen, server.port, "recv", size),
            ),
            Load(
                "relay: echo 100 B, 50 clients",
                lambda server: measured(server, echo, loadgen, server.port, seconds),
            ),
        ]
        measureInTurn(results, running, relayLoads, runs, {"relay": "twistd securesock"})

    with servers(["workers1", "workers2"], cert, key, work, loadgen) as running:
        workers = Load("workers: full ecdsa TLS1.3", lambda server: workersMeasured(server, seconds))
        measureInTurn(results, running, [workers], runs, {"workers1": "1 worker", "workers2": "2 workers"})

    speed = opensslSpeed(1)
    print(f"-- suite done after {time.monotonic() - started:.0f} s", flush=True)
    stealEnd = cpuTimes()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": bool(args.quick),
        "runs": runs,
        "seconds": time.monotonic() - started,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}",
        "load": os.getloadavg(),
        "steal_pct": stealShare(stealStart, stealEnd),
        "openssl_speed": speed,
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer, shorter runs (a smoke test)")
    parser.add_argument("--runs", type=int, default=None, help="runs per figure (default 5, --quick 2)")
    parser.add_argument("--no-docs", action="store_true", help="only write bench/results.json")
    parser.add_argument("--from-json", help="write the docs from an earlier results file, measuring nothing")
    args = parser.parse_args()
    args.runs = args.runs or (2 if args.quick else 5)
    if args.from_json:
        data = json.loads(Path(args.from_json).read_text())
    else:
        for tool in ("gcc", "openssl", "taskset", "stunnel4"):
            if shutil.which(tool) is None:
                raise SystemExit(f"bench/run.py needs {tool} (see bench/requirements.txt)")
        if (os.cpu_count() or 1) < 2:
            raise SystemExit("bench/run.py needs two cores: one for the servers, one for the load")
        with tempfile.TemporaryDirectory(prefix="securesock-bench-") as directory:
            data = runSuite(args, Path(directory))
        (BENCH / "results.json").write_text(json.dumps(data, indent=1))
    if not args.no_docs:
        from report import writeReport  # bench/report.py

        writeReport(data, ROOT / "docs")


if __name__ == "__main__":
    main()
