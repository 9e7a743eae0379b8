"""
``twistd securesock`` as an operator runs it: a real twistd process, real
backends (a TCP echo, Python's HTTP server, ``openssl s_server``) and real
clients (curl, openssl s_client, Python's ssl).
"""

from __future__ import annotations

import asyncio
import http.server
import os
import re
import select
import shlex
import shutil
import signal
import socket
import socketserver
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from .conftest import HAVE_IPV6, PKI, requireTool
from .peers import freePort

TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
ROOT = Path(__file__).resolve().parent.parent


class Twistd:
    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.logPath = log

    @property
    def log(self) -> str:
        return self.logPath.read_text(errors="replace")

    def waitFor(self, pattern: str, count: int = 1, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(re.findall(pattern, self.log)) >= count:
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{pattern!r} not seen {count}x in twistd's log:\n{self.log}")


@contextmanager
def twistd(
    tmp_path: Path,
    *args: str,
    expectRunning: bool = True,
    command: list[str] | None = None,
    environ: dict[str, str] | None = None,
) -> Iterator[Twistd]:
    """Run twistd (by default C{twistd -n --pidfile= securesock ARGS}) until the block ends."""
    log = tmp_path / f"twistd-{time.monotonic_ns()}.log"
    base = os.environ if environ is None else environ
    env = dict(base, PYTHONPATH=str(ROOT) + os.pathsep + base.get("PYTHONPATH", ""))
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command or [*TWISTD, "-n", "--pidfile=", "securesock", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env=env,
        )
    running = Twistd(process, log)
    try:
        if expectRunning:
            running.waitFor(r"listening: ")
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
    # nothing securesock did raised where nobody handled it
    assert "Traceback" not in running.log and "Unhandled Error" not in running.log, running.log


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        for _ in range(10000):
            data = self.request.recv(65536)
            if not data:
                return
            self.request.sendall(data)


@contextmanager
def serving(server: socketserver.TCPServer) -> Iterator[int]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


class _ThreadingTCP(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def tlsExchange(port: int, ca: str, payload: bytes, *, expect: int, timeout: float = 60) -> bytes:
    """
    Send C{payload} while reading up to C{expect} bytes (or to the end).  Writing
    and reading at once is needed (an echo through a bounded relay deadlocks
    otherwise); asyncio does both on one TLS connection in one thread, which an
    C{ssl.SSLSocket} shared by two threads cannot do safely.
    """

    async def exchange() -> bytes:
        context = ssl.create_default_context(cafile=ca)
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="localhost"
        )

        async def send() -> None:
            writer.write(payload)
            await writer.drain()

        sending = asyncio.ensure_future(send())
        received = bytearray()
        try:
            while len(received) < expect:
                chunk = await reader.read(1 << 16)
                if not chunk:
                    break
                received += chunk
            await sending
        finally:
            sending.cancel()
            writer.close()
        return bytes(received)

    return asyncio.run(asyncio.wait_for(exchange(), timeout))


def listen(pki: PKI, port: int, extra: str = "") -> str:
    return f"tls:{port}:interface=127.0.0.1:certificate={pki.server_pem}{extra}"


def test_diagnostic_page_with_curl(pki: PKI, tmp_path: Path) -> None:
    curl = requireTool("curl")
    port = freePort()
    with twistd(tmp_path, "--listen", listen(pki, port)) as server:
        result = subprocess.run(
            [curl, "-sS", "--cacert", pki.ca_pem, f"https://localhost:{port}/"],
            capture_output=True,
            timeout=20,
        )
        page = result.stdout.decode()
        assert result.returncode == 0, result.stderr
        assert page.startswith("<!DOCTYPE html>")
        for fact in (
            "Protocol version: TLSv1.3",
            "ALPN: http/1.1",
            "SNI: localhost",
            "Session: new (full handshake)",
            "Server certificate: CN=localhost",
            "Client certificate: (none)",
        ):
            assert fact in page
        server.waitFor(r"sni=localhost TLSv1\.3 \S+ in=\d+ out=\d+ [\d.]+s closed")


def test_diagnostic_text_with_s_client(pki: PKI, tmp_path: Path) -> None:
    openssl = requireTool("openssl")
    port = freePort()
    with twistd(tmp_path, "--listen", listen(pki, port, ":protocols=TLS1_2")):
        result = subprocess.run(
            [
                openssl,
                "s_client",
                "-connect",
                f"127.0.0.1:{port}",
                "-servername",
                "localhost",
                "-CAfile",
                pki.ca_pem,
                "-verify_return_error",
                "-brief",
                "-ign_eof",
                "-cert",
                pki.client_pem,
            ],
            input=b"",
            capture_output=True,
            timeout=20,
        )
        text = result.stdout.decode()
        assert "Protocol version: TLSv1.2" in text and "Cipher: ECDHE-" in text
        assert "Client certificate: (none)" in text  # not requested without verifyClient


def test_handshake_failure_is_logged_with_reason(pki: PKI, tmp_path: Path) -> None:
    openssl = requireTool("openssl")
    port = freePort()
    with twistd(tmp_path, "--listen", listen(pki, port)) as server:
        subprocess.run(
            [
                openssl,
                "s_client",
                "-connect",
                f"127.0.0.1:{port}",
                "-tls1_1",
                "-cipher",
                "DEFAULT:@SECLEVEL=0",
                "-brief",
            ],
            input=b"",
            capture_output=True,
            timeout=20,
        )
        server.waitFor(r"127\.0\.0\.1:\d+ handshake failed: TLS error: unsupported protocol")
        assert "PRIVATE KEY" not in server.log


def test_terminating_relay_to_tcp_echo(pki: PKI, tmp_path: Path) -> None:
    with serving(_ThreadingTCP(("127.0.0.1", 0), _Echo)) as echo:
        port = freePort()
        with twistd(tmp_path, "--listen", listen(pki, port), "--connect", f"tcp:127.0.0.1:{echo}") as server:
            payload = os.urandom(3 * 1024 * 1024)
            assert tlsExchange(port, pki.ca_pem, payload, expect=len(payload)) == payload
            server.waitFor(rf"in={len(payload)} out={len(payload)} ")


def test_terminating_relay_to_http_with_curl_and_s_client(pki: PKI, tmp_path: Path) -> None:
    curl = requireTool("curl")
    openssl = requireTool("openssl")
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("hello through securesock\n")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(site), **kwargs)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as backend:  # type: ignore[arg-type]
        port = freePort()
        with twistd(tmp_path, "--listen", listen(pki, port), "--connect", f"tcp:127.0.0.1:{backend}"):
            result = subprocess.run(
                [curl, "-sS", "--cacert", pki.ca_pem, f"https://localhost:{port}/"],
                capture_output=True,
                timeout=20,
            )
            assert result.stdout == b"hello through securesock\n", result.stderr
            result = subprocess.run(
                [
                    openssl,
                    "s_client",
                    "-connect",
                    f"127.0.0.1:{port}",
                    "-servername",
                    "localhost",
                    "-CAfile",
                    pki.ca_pem,
                    "-verify_return_error",
                    "-quiet",
                    "-ign_eof",
                ],
                input=b"GET / HTTP/1.0\r\n\r\n",
                capture_output=True,
                timeout=20,
            )
            assert b"200 OK" in result.stdout and b"hello through securesock" in result.stdout


def test_originating_relay_to_openssl_s_server(pki: PKI, tmp_path: Path) -> None:
    openssl = requireTool("openssl")
    backendPort = freePort()
    backend = subprocess.Popen(
        [
            openssl,
            "s_server",
            "-accept",
            f"127.0.0.1:{backendPort}",
            "-cert",
            pki.server_crt,
            "-key",
            pki.server_key,
            "-www",
            "-quiet",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", backendPort), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        port = freePort()
        with twistd(
            tmp_path,
            "--listen",
            f"tcp:{port}:interface=127.0.0.1",
            "--connect",
            f"tls:localhost:{backendPort}:trustRoots={pki.ca_pem}",
        ):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as plain:
                plain.sendall(b"GET / HTTP/1.0\r\n\r\n")
                page = b""
                for _ in range(1000):
                    chunk = plain.recv(65536)
                    if not chunk:
                        break
                    page += chunk
            assert b"HTTP/1.0 200 ok" in page and b"TLSv1.3" in page
    finally:
        backend.terminate()
        backend.wait(10)


def test_exclusive_refuses_busy_port(pki: PKI, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with twistd(tmp_path, "--listen", listen(pki, port, ":exclusive=yes"), expectRunning=False) as server:
            assert server.process.wait(20) == 1
            assert "exclusive=yes refuses to share it" in server.log
            assert f"cannot listen with tls:{port}" in server.log


def test_workers_share_the_port(pki: PKI, tmp_path: Path) -> None:
    port = freePort()
    with twistd(tmp_path, "--listen", listen(pki, port), "--workers", "2") as server:
        server.waitFor(r"worker 1: .*listening: ", timeout=30)
        pids = set()
        for _ in range(60):
            reply = tlsExchange(port, pki.ca_pem, b"who\n", expect=10**6)
            pids.update(re.findall(rb"Served by: pid (\d+)", reply))
            if len(pids) >= 2:
                break
        assert len(pids) == 2, pids


@pytest.mark.parametrize("version", ["TLSv1_2", "TLSv1_3"])
def test_workers_share_session_tickets(pki: PKI, tmp_path: Path, version: str) -> None:
    """A returning client resumes on whichever worker the kernel hands it to."""
    port = freePort()
    with twistd(tmp_path, "--listen", listen(pki, port), "--workers", "2") as server:
        server.waitFor(r"worker 2: .*listening: ", timeout=30)
        context = ssl.create_default_context(cafile=pki.ca_pem)
        context.minimum_version = context.maximum_version = getattr(ssl.TLSVersion, version)
        session = None
        served: list[tuple[bytes, bool | None]] = []
        for _ in range(40):
            with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
                with context.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
                    tls.sendall(b"who\n")
                    reply = _readAll(tls)  # to the end: TLS 1.3 tickets arrive after the handshake
                    pid = re.search(rb"Served by: pid (\d+)", reply)
                    assert pid is not None, reply
                    served.append((pid.group(1), tls.session_reused))
                    session = session or tls.session
            if len({pid for pid, _ in served[1:]}) == 2 and len(served) >= 10:
                break
        returning = served[1:]
        assert len({pid for pid, _ in returning}) == 2, served  # both workers were reached ...
        assert all(reused for _, reused in returning), served  # ... and each resumed the session


def test_workers_on_a_busy_port_stop_twistd(pki: PKI, tmp_path: Path) -> None:
    with socket.socket() as busy:  # bound without SO_REUSEPORT: the workers cannot share it
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with twistd(tmp_path, "--listen", listen(pki, port), "--workers", "2", expectRunning=False) as server:
            assert server.process.wait(30) == 1
            log = server.log
            assert f"cannot listen with tls:{port}" in log
            assert re.search(
                r"worker [12] ended during its start \(exit status 1\); not restarting it", log
            ), log
            assert "no worker is left running" in log


def test_workers_need_fixed_port(pki: PKI, tmp_path: Path) -> None:
    with twistd(tmp_path, "--listen", listen(pki, 0), "--workers", "2", expectRunning=False) as server:
        server.process.wait(20)
        assert f"--listen {listen(pki, 0)!r}: --workers needs a fixed port" in server.log  # as written


def test_bad_description_is_a_usage_error(pki: PKI, tmp_path: Path) -> None:
    with twistd(tmp_path, "--listen", "tls:8443:certificat=x.pem", expectRunning=False) as server:
        assert server.process.wait(20) != 0
        assert "unknown server option 'certificat' (did you mean 'certificate'?)" in server.log


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class _Firehose(socketserver.BaseRequestHandler):
    """Sends 200 MiB as fast as the relay takes it."""

    def handle(self) -> None:
        block = b"x" * 65536
        try:
            for _ in range(200 * 16):
                self.request.sendall(block)
        except OSError:
            pass


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc to read memory use")
def test_slow_reader_keeps_memory_bounded(pki: PKI, tmp_path: Path) -> None:
    with serving(_ThreadingTCP(("127.0.0.1", 0), _Firehose)) as hose:
        port = freePort()
        with twistd(tmp_path, "--listen", listen(pki, port), "--connect", f"tcp:127.0.0.1:{hose}") as server:
            before = _rss(server.process.pid)
            context = ssl.create_default_context(cafile=pki.ca_pem)
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
                with context.wrap_socket(raw, server_hostname="localhost") as tls:
                    received = 0
                    deadline = time.monotonic() + 2.0
                    while time.monotonic() < deadline:  # a slow reader: 64 KiB every 20 ms
                        received += len(tls.recv(65536))
                        time.sleep(0.02)
                    peak = _rss(server.process.pid)
                    assert peak - before < 40 * 1024 * 1024, (before, peak)
                    deadline = time.monotonic() + 60
                    while received < 200 * 1024 * 1024 and time.monotonic() < deadline:
                        chunk = tls.recv(1 << 20)
                        if not chunk:
                            break
                        received += len(chunk)
            assert received == 200 * 1024 * 1024


def test_sigterm_lets_open_connections_finish(pki: PKI, tmp_path: Path) -> None:
    with serving(_ThreadingTCP(("127.0.0.1", 0), _Echo)) as echo:
        port = freePort()
        with twistd(
            tmp_path, "--listen", listen(pki, port), "--connect", f"tcp:127.0.0.1:{echo}", "--grace", "20"
        ) as server:
            context = ssl.create_default_context(cafile=pki.ca_pem)
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with context.wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.sendall(b"before\n")
                    assert tls.recv(100) == b"before\n"
                    server.process.send_signal(signal.SIGTERM)
                    server.waitFor(r"1 open connection\(s\) may finish")
                    with pytest.raises(OSError):
                        socket.create_connection(("127.0.0.1", port), timeout=2).close()
                    tls.sendall(b"after\n")
                    assert tls.recv(100) == b"after\n"
            # twistd re-raises SIGTERM once stopped, the conventional way to report it
            assert server.process.wait(20) in (0, -signal.SIGTERM)
            assert "Server Shut Down." in server.log


def test_idle_timeout_closes_a_quiet_relayed_connection(pki: PKI, tmp_path: Path) -> None:
    """--idle-timeout 1 on the command line: a connection quiet for a second is closed, and says why."""
    with serving(_ThreadingTCP(("127.0.0.1", 0), _Echo)) as echo:
        port = freePort()
        arguments = [
            "--listen",
            listen(pki, port),
            "--connect",
            f"tcp:127.0.0.1:{echo}",
            "--idle-timeout",
            "1",
        ]
        with twistd(tmp_path, *arguments) as server:
            context = ssl.create_default_context(cafile=pki.ca_pem)
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with context.wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.sendall(b"hello\n")
                    assert tls.recv(100) == b"hello\n"
                    quiet = time.monotonic()
                    assert tls.recv(100) == b""  # the relay's close_notify
                    assert time.monotonic() - quiet < 5
            server.waitFor(r"closed: idle for 1 s \(--idle-timeout\)")


def test_default_listen_uses_development_certificate(tmp_path: Path) -> None:
    """With $SECURESOCK_STORE set, the development certificate is made there."""
    curl = requireTool("curl")
    store = tmp_path / "store"
    if _portBusy(8443):
        pytest.skip("port 8443 is busy on this machine; the default listener needs it")
    environ = dict(os.environ, SECURESOCK_STORE=str(store))
    with twistd(tmp_path, environ=environ) as server:
        assert "no --listen given" in server.log and str(store / "devca.crt") in server.log
        result = subprocess.run(
            [curl, "-sS", "--cacert", str(store / "devca.crt"), "https://localhost:8443/"],
            capture_output=True,
            timeout=20,
        )
        assert result.returncode == 0, result.stderr
        assert b"Server certificate: CN=localhost" in result.stdout
    assert oct((store / "localhost.pem").stat().st_mode & 0o777) == "0o600"


def test_sighup_reloads_a_renewed_certificate(pki: PKI, tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    served = tmp_path / "site.pem"
    served.write_bytes(Path(pki.server_pem).read_bytes())
    served.chmod(0o600)
    renewed = Path(pki.rsa_pem).read_bytes()
    port = freePort()

    def servedHash() -> str:
        context = ssl.create_default_context(cafile=pki.ca_pem)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                der = tls.getpeercert(binary_form=True)
                assert der is not None
                return x509.load_der_x509_certificate(der).fingerprint(hashes.SHA256()).hex()

    with twistd(tmp_path, "--listen", listen(pki, port).replace(pki.server_pem, str(served))) as server:
        before = servedHash()
        time.sleep(1.1)
        served.write_bytes(renewed)
        server.process.send_signal(signal.SIGHUP)
        server.waitFor(r"certificate .* renewed: now serving")
        after = servedHash()
        assert before != after
        assert after == x509.load_pem_x509_certificate(renewed).fingerprint(hashes.SHA256()).hex()


def _plainSMTP() -> object:
    aiosmtpd = pytest.importorskip("aiosmtpd.controller", reason="aiosmtpd (test extra) is not installed")

    class Handler:
        def __init__(self) -> None:
            self.messages: list[bytes] = []

        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            self.messages.append(envelope.content)  # type: ignore[attr-defined]
            return "250 OK"

    handler = Handler()
    controller = aiosmtpd.Controller(handler, hostname="127.0.0.1", port=freePort())
    controller.handler = handler
    return controller


def test_starttls_listener_relays_to_plain_smtp(pki: PKI, tmp_path: Path) -> None:
    import smtplib

    controller: Any = _plainSMTP()
    controller.start()
    try:
        port = freePort()
        description = f"starttls:{port}:interface=127.0.0.1:certificate={pki.server_pem}:dialect=smtp"
        with twistd(tmp_path, "--listen", description, "--connect", f"tcp:127.0.0.1:{controller.port}"):
            context = ssl.create_default_context(cafile=pki.ca_pem)
            with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=20) as smtp:
                smtp.ehlo()
                assert smtp.has_extn("starttls")
                smtp.starttls(context=context)
                smtp.ehlo()
                smtp.sendmail("a@example.test", ["b@example.test"], b"Subject: via smtplib\r\n\r\nhello\r\n")
            swaks = requireTool("swaks")
            result = subprocess.run(
                [
                    swaks,
                    "--server",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--tls",
                    "--tls-verify",
                    "--tls-ca-path",
                    pki.ca_pem,
                    "--tls-sni",
                    "localhost",
                    "--from",
                    "a@example.test",
                    "--to",
                    "c@example.test",
                    "--header",
                    "Subject: via swaks",
                ],
                capture_output=True,
                timeout=30,
            )
            assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
        subjects = b"\n".join(controller.handler.messages)
        assert b"via smtplib" in subjects and b"via swaks" in subjects
    finally:
        controller.stop()


# --- README's main command, the diagnostic page with a client certificate ----------


def _portBusy(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def test_readme_main_command_with_fresh_home(tmp_path: Path) -> None:
    """
    C{twistd -n securesock} exactly as README shows it, for a user with an empty
    home: no $SECURESOCK_STORE, no $XDG_DATA_HOME, the default port, a pid file.
    The CA file is taken from the log line, and its curl command is run as written.
    """
    curl = requireTool("curl")
    if _portBusy(8443):
        pytest.skip("port 8443 is busy on this machine; the default listener needs it")
    home = tmp_path / "home"
    home.mkdir()
    environ = {k: v for k, v in os.environ.items() if k not in ("SECURESOCK_STORE", "XDG_DATA_HOME")}
    environ["HOME"] = str(home)
    script = shutil.which("twistd")
    command = [script] if script is not None else list(TWISTD)
    with twistd(tmp_path, command=[*command, "-n", "securesock"], environ=environ) as server:
        store = home / ".local" / "share" / "securesock" / "store"
        match = re.search(r"trust it with: (curl --cacert (\S+) https://localhost:8443/)", server.log)
        assert match is not None, server.log
        assert match.group(2) == str(store / "devca.crt")
        assert "serving tls:8443 on 127.0.0.1" in server.log
        assert (tmp_path / "twistd.pid").read_text().strip() == str(server.process.pid)
        result = subprocess.run(
            [curl, "-sS", *shlex.split(match.group(1))[1:]], capture_output=True, timeout=20
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(b"<!DOCTYPE html>")
        assert b"Server certificate: CN=localhost" in result.stdout
        assert b"issuer: CN=securesock development CA" in result.stdout
        # loopback only: the default listener is not reachable on another address
        for family, address in ((socket.AF_INET, _otherAddress()), (socket.AF_INET6, "::1")):
            if address is None:
                continue
            with socket.socket(family) as probe, pytest.raises(OSError):
                probe.settimeout(2)
                probe.connect((address, 8443))
    assert oct((store / "localhost.pem").stat().st_mode & 0o777) == "0o600"
    assert not (tmp_path / "twistd.pid").exists()
    # second start: the same certificate, not a new one
    before = (store / "localhost.pem").read_bytes()
    with twistd(tmp_path, command=[*command, "-n", "securesock"], environ=environ):
        pass
    assert (store / "localhost.pem").read_bytes() == before


def _otherAddress() -> str | None:
    """A non-loopback IPv4 address of this machine, if it has one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # TEST-NET: nothing is sent
            address = str(s.getsockname()[0])
    except OSError:
        return None
    return None if address.startswith("127.") else address


def _hashes(pem: str) -> tuple[str, str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    certificate = x509.load_pem_x509_certificate(Path(pem).read_bytes())
    sha1 = " ".join(f"{b:02x}" for b in certificate.fingerprint(hashes.SHA1()))
    return certificate.subject.rfc4514_string(), sha1, certificate.fingerprint(hashes.SHA256()).hex()


def test_diagnostic_shows_client_certificate_and_hashes(pki: PKI, tmp_path: Path) -> None:
    curl = requireTool("curl")
    openssl = requireTool("openssl")
    port = freePort()
    clientSubject, clientSHA1, clientSHA256 = _hashes(pki.client_pem)
    serverSubject, serverSHA1, serverSHA256 = _hashes(pki.server_pem)
    extra = f":verifyClient=optional:caCerts={pki.ca_pem}:alpn=h2,http/1.1"
    with twistd(tmp_path, "--listen", listen(pki, port, extra)) as server:
        where = ["--cacert", pki.ca_pem, "--cert", pki.client_pem, f"https://localhost:{port}/"]
        page = subprocess.run([curl, "-sS", "--http1.1", *where], capture_output=True, timeout=20)
        assert page.returncode == 0, page.stderr
        html = page.stdout.decode()
        assert html.startswith("<!DOCTYPE html>") and "ALPN: http/1.1" in html
        # alpn= offers h2 here: an HTTP/2 client is told HTTP/1.1 is required, not left hanging
        h2 = subprocess.run([curl, "-sS", "-v", *where], capture_output=True, timeout=20)
        assert h2.returncode == 16 and b"GOAWAY, error=13" in h2.stderr, h2.stderr
        text = subprocess.run(
            [
                openssl,
                "s_client",
                "-connect",
                f"127.0.0.1:{port}",
                "-servername",
                "localhost",
                "-CAfile",
                pki.ca_pem,
                "-verify_return_error",
                "-quiet",
                "-cert",
                pki.client_pem,
                "-tls1_2",
                "-alpn",
                "h2",
            ],
            input=b"hello\n",
            capture_output=True,
            timeout=20,
        )
        summary = text.stdout.decode()
        assert summary.startswith("securesock diagnostic responder"), summary + text.stderr.decode()
        assert "<html" not in summary
        assert "Protocol version: TLSv1.2" in summary and "ALPN: h2" in summary
        for output in (html, summary):
            assert "SNI: localhost" in output
            assert f"Client certificate: {clientSubject}" in output
            assert f"SHA-1: {clientSHA1}" in output and f"SHA-256: {clientSHA256}" in output
            assert f"Server certificate: {serverSubject}" in output
            assert f"SHA-1: {serverSHA1}" in output and f"SHA-256: {serverSHA256}" in output
        # without a certificate, optional lets the client in and says so
        anonymous = subprocess.run(
            [curl, "-sS", "--http1.1", "--cacert", pki.ca_pem, f"https://localhost:{port}/"],
            capture_output=True,
            timeout=20,
        )
        assert b"Client certificate: (none)" in anonymous.stdout, anonymous.stderr
        server.waitFor(r"sni=localhost TLSv1\.2 ECDHE-\S+ in=6 out=\d+ ")


def test_client_rejecting_the_server_is_logged_with_its_alert(pki: PKI, tmp_path: Path) -> None:
    port = freePort()
    with twistd(tmp_path, "--listen", listen(pki, port)) as server:
        _rejectedByCurl(port, pki)
        server.waitFor(r"127\.0\.0\.1:\d+ handshake failed: TLS error: .*alert unknown ca")
        assert "PRIVATE KEY" not in server.log and "BEGIN" not in server.log


def _rejectedByCurl(port: int, pki: PKI) -> None:
    """A client that refuses the server's certificate (curl with another CA): a failed handshake."""
    curl = requireTool("curl")
    result = subprocess.run(
        [curl, "-sS", "--cacert", pki.path("other-ca.pem"), f"https://localhost:{port}/"],
        capture_output=True,
        timeout=20,
    )
    assert result.returncode == 60, result.stderr


def test_log_connections_failures_keeps_only_the_failed_ones(pki: PKI, tmp_path: Path) -> None:
    port = freePort()
    with twistd(tmp_path, "--log-connections", "failures", "--listen", listen(pki, port)) as server:
        for _ in range(3):
            assert b"Protocol version: TLSv1.3" in tlsExchange(port, pki.ca_pem, b"hi\n", expect=10**6)
        _rejectedByCurl(port, pki)
        server.waitFor(r"127\.0\.0\.1:\d+ handshake failed: TLS error: .*alert unknown ca")
        assert " closed: " not in server.log, server.log  # the three served connections: no line


def test_log_connections_none_in_the_workers_too(pki: PKI, tmp_path: Path) -> None:
    port = freePort()
    arguments = ["--log-connections", "none", "--workers", "2", "--listen", listen(pki, port)]
    with twistd(tmp_path, *arguments) as server:
        server.waitFor(r"worker 2: .*listening: ", timeout=30)
        for _ in range(3):
            assert b"Protocol version: TLSv1.3" in tlsExchange(port, pki.ca_pem, b"hi\n", expect=10**6)
        _rejectedByCurl(port, pki)
        # The workers pass their lines on within 50 ms; this one ends the run and so comes after them.
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(20) in (0, -signal.SIGTERM)
        assert "no worker is left running" not in server.log
        assert " closed: " not in server.log and "handshake failed" not in server.log, server.log
        assert len(re.findall(r"worker \d ended", server.log)) == 2, server.log


# --- relays ----------------------------------------------------------------------


def test_terminating_relay_to_echo_with_s_client(pki: PKI, tmp_path: Path) -> None:
    openssl = requireTool("openssl")
    with serving(_ThreadingTCP(("127.0.0.1", 0), _Echo)) as echo:
        port = freePort()
        with twistd(tmp_path, "--listen", listen(pki, port), "--connect", f"tcp:127.0.0.1:{echo}") as server:
            client = subprocess.Popen(
                [
                    openssl,
                    "s_client",
                    "-connect",
                    f"127.0.0.1:{port}",
                    "-servername",
                    "localhost",
                    "-CAfile",
                    pki.ca_pem,
                    "-verify_return_error",
                    "-quiet",
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            try:
                assert client.stdin is not None and client.stdout is not None
                lines = [f"line {n} through the relay\n".encode() for n in range(20)]
                client.stdin.write(b"".join(lines))
                client.stdin.flush()
                received = b""
                deadline = time.monotonic() + 20
                while len(received) < sum(map(len, lines)) and time.monotonic() < deadline:
                    if select.select([client.stdout], [], [], 1)[0]:
                        chunk = os.read(client.stdout.fileno(), 65536)
                        if not chunk:
                            break
                        received += chunk
                assert received == b"".join(lines)
            finally:
                client.kill()
                client.wait(10)
            server.waitFor(rf"sni=localhost TLSv1\.3 \S+ in={len(received)} out={len(received)} ")


def test_listen_repeated(pki: PKI, tmp_path: Path) -> None:
    """
    Listeners of every kind in one process: tls: on IPv4, Twisted-style ssl:,
    securesock:, plain tcp:, unix:, and tls:// on IPv6.
    """
    first, legacy, plugin, plain = freePort(), freePort(), freePort(), freePort()
    unixPath = tmp_path / "diag.sock"
    args = [
        "--listen",
        listen(pki, first),
        "--listen",
        f"ssl:{legacy}:interface=127.0.0.1:privateKey={pki.server_key}:certKey={pki.server_crt}",
        "--listen",
        f"securesock:{plugin}:interface=127.0.0.1:certificate={pki.server_pem}:protocols=TLS1_2",
        "--listen",
        f"tcp:{plain}:interface=127.0.0.1",
        "--listen",
        f"unix:{unixPath}",
    ]
    if HAVE_IPV6:
        second = freePort("::1")
        args += ["--listen", f"tls://[::1]:{second}?certificate={pki.server_pem}"]
    with twistd(tmp_path, *args) as server:
        server.waitFor(r"listening: ", count=len(args) // 2)
        assert b"Protocol version: TLSv1.3" in tlsExchange(first, pki.ca_pem, b"x\n", expect=10**6)
        assert b"Protocol version: TLSv1.3" in tlsExchange(legacy, pki.ca_pem, b"x\n", expect=10**6)
        assert b"Protocol version: TLSv1.2" in tlsExchange(plugin, pki.ca_pem, b"x\n", expect=10**6)
        with socket.socket(socket.AF_UNIX) as local:
            local.settimeout(10)
            local.connect(str(unixPath))
            local.sendall(b"hello\n")
            assert b"Protocol version: plaintext" in _readAll(local)
        with socket.create_connection(("127.0.0.1", plain), timeout=10) as s:
            s.sendall(b"hello\n")
            reply = _readAll(s)
        assert b"Protocol version: plaintext (no TLS on this listener)" in reply
        if HAVE_IPV6:
            context = ssl.create_default_context(cafile=pki.ca_pem)
            with socket.create_connection(("::1", second), timeout=10) as raw:
                with context.wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.sendall(b"x\n")
                    assert b"Client: ::1:" in _readAll(tls)


def test_relay_to_a_unix_socket_backend(pki: PKI, tmp_path: Path) -> None:
    class _UnixEcho(socketserver.ThreadingUnixStreamServer):
        daemon_threads = True

    path = tmp_path / "echo.sock"
    server = _UnixEcho(str(path), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = freePort()
        with twistd(tmp_path, "--listen", listen(pki, port), "--connect", f"unix:{path}"):
            payload = os.urandom(256 * 1024)
            assert tlsExchange(port, pki.ca_pem, payload, expect=len(payload)) == payload
    finally:
        server.shutdown()
        server.server_close()


def _readAll(sock: socket.socket) -> bytes:
    data = b""
    for _ in range(1000):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


class _SlowSink(socketserver.BaseRequestHandler):
    """Reads 16 KiB every 20 ms for two seconds, then everything; records the total."""

    totals: list[int] = []

    def handle(self) -> None:
        total = 0
        slowUntil = time.monotonic() + 2.0
        self.request.settimeout(30)
        try:
            for _ in range(100000):
                chunk = self.request.recv(16384 if time.monotonic() < slowUntil else 1 << 20)
                if not chunk:
                    break
                total += len(chunk)
                if time.monotonic() < slowUntil:
                    time.sleep(0.02)
        finally:
            type(self).totals.append(total)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc to read memory use")
def test_fast_client_slow_backend_keeps_memory_bounded(pki: PKI, tmp_path: Path) -> None:
    """The other direction: the client uploads 200 MiB, the backend reads slowly."""
    size = 200 * 1024 * 1024
    _SlowSink.totals = []
    with serving(_ThreadingTCP(("127.0.0.1", 0), _SlowSink)) as sink:
        port = freePort()
        with twistd(tmp_path, "--listen", listen(pki, port), "--connect", f"tcp:127.0.0.1:{sink}") as server:
            before = _rss(server.process.pid)
            context = ssl.create_default_context(cafile=pki.ca_pem)
            with socket.create_connection(("127.0.0.1", port), timeout=60) as raw:
                with context.wrap_socket(raw, server_hostname="localhost") as tls:
                    # the only thread using this socket: it only writes
                    sender = threading.Thread(target=tls.sendall, args=(b"y" * size,), daemon=True)
                    sender.start()
                    peak = before
                    deadline = time.monotonic() + 1.8
                    while time.monotonic() < deadline:  # while the backend reads slowly
                        peak = max(peak, _rss(server.process.pid))
                        time.sleep(0.05)
                    assert peak - before < 40 * 1024 * 1024, (before, peak)
                    sender.join(60)
                    assert not sender.is_alive()
                    # close_notify, then wait for the relay's: closing with its session
                    # tickets unread would reset the connection and lose the tail
                    tls.unwrap()
            server.waitFor(rf"in={size} out=0 ", timeout=60)
        deadline = time.monotonic() + 30
        while not _SlowSink.totals and time.monotonic() < deadline:
            time.sleep(0.05)
    assert _SlowSink.totals == [size]


# --- sockets: reusePort, exclusive, workers ----------------------------------------


def _pidsServing(port: int, ca: str, want: int, attempts: int = 80) -> set[bytes]:
    pids: set[bytes] = set()
    for _ in range(attempts):
        reply = tlsExchange(port, ca, b"who\n", expect=10**6)
        pids.update(re.findall(rb"Served by: pid (\d+)", reply))
        if len(pids) >= want:
            break
    return pids


def test_reuse_port_lets_two_processes_share_a_port(pki: PKI, tmp_path: Path) -> None:
    port = freePort()
    shared = listen(pki, port, ":reusePort=yes")
    with twistd(tmp_path, "--listen", shared) as one, twistd(tmp_path, "--listen", shared) as two:
        pids = _pidsServing(port, pki.ca_pem, 2)
        assert pids == {str(one.process.pid).encode(), str(two.process.pid).encode()}
        # without reusePort a third cannot join, and says why
        with twistd(tmp_path, "--listen", listen(pki, port), expectRunning=False) as third:
            assert third.process.wait(20) == 1
            assert "Address already in use" in third.log


def test_plain_tcp_takes_reuse_port_too(tmp_path: Path) -> None:
    port = freePort()
    shared = f"tcp:{port}:interface=127.0.0.1:reusePort=yes"
    with twistd(tmp_path, "--listen", shared), twistd(tmp_path, "--listen", shared) as two:
        assert "listening: " in two.log and "cannot listen" not in two.log


@pytest.mark.parametrize(
    "description, fragment",
    [
        ("tcp:8080:reusePort=maybe", "reusePort='maybe': not a yes/no value"),
        ("tcp:8080:interface=localhost:reusePort=yes", "need an IP address"),
        ("tcp:99999:reusePort=yes", "port='99999': accepted: a whole number from 0 to 65535"),
        ("tcp:8080:reusePort=yes:exclusive=yes", "contradict"),
        ("tcp:8080:reusePort=yes:colour=blue", "option 'colour' is not one of"),
    ],
)
def test_plain_tcp_socket_option_errors(description: str, fragment: str) -> None:
    from twisted.internet import reactor

    from securesock import DescriptionError
    from securesock._listen import plainTCPServer

    with pytest.raises(DescriptionError) as caught:
        plainTCPServer(reactor, description)
    assert fragment in str(caught.value)


def test_workers_refuse_a_listener_that_cannot_share(tmp_path: Path) -> None:
    with twistd(
        tmp_path, "--workers", "2", "--listen", f"unix:{tmp_path / 's.sock'}", expectRunning=False
    ) as server:
        assert server.process.wait(20) != 0
        assert "--workers shares ports with SO_REUSEPORT, which unix: listeners cannot do" in server.log


def test_workers_on_plain_tcp_both_serve(tmp_path: Path) -> None:
    port = freePort()
    with twistd(tmp_path, "--workers", "2", "--listen", f"tcp:{port}:interface=127.0.0.1") as server:
        server.waitFor(r"worker 1: .*listening: ", timeout=30)
        pids: set[bytes] = set()
        for _ in range(80):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(b"who\n")
                pids.update(re.findall(rb"Served by: pid (\d+)", _readAll(s)))
            if len(pids) == 2:
                break
        # the workers serve; the twistd process only supervises them
        assert len(pids) == 2 and str(server.process.pid).encode() not in pids, pids


def test_worker_stops_when_its_parent_is_killed(pki: PKI, tmp_path: Path) -> None:
    port = freePort()
    with twistd(tmp_path, "--listen", listen(pki, port), "--workers", "2") as server:
        server.waitFor(r"worker 1: .*listening: ", timeout=30)
        match = re.search(r"started worker 1 \(pid (\d+)\)", server.log)
        assert match is not None
        worker = int(match.group(1))
        server.process.kill()
        server.process.wait(10)
        deadline = time.monotonic() + 15
        while Path(f"/proc/{worker}").exists() and time.monotonic() < deadline:
            try:  # reap it if it became our child (it is re-parented to init or a subreaper)
                os.waitpid(worker, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.1)
        alive = (
            Path(f"/proc/{worker}/status").exists()
            and "State:\tZ" not in Path(f"/proc/{worker}/status").read_text()
        )
        if alive:
            os.kill(worker, signal.SIGKILL)
        assert not alive, "the orphaned worker kept running"


def _privilegedPort() -> int:
    for candidate in range(900, 1000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return candidate
    pytest.skip("no free port below 1024 on 127.0.0.1")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="binding below 1024 needs root")
def test_privileged_port_then_uid_with_workers(pki: PKI, tmp_path: Path) -> None:
    """stunnel's setuid: bind as root, then serve as nobody; the workers too."""
    import pwd

    nobody = pwd.getpwnam("nobody").pw_uid
    port = _privilegedPort()
    tmp_path.chmod(0o777)  # twistd (as nobody) keeps its working directory
    command = [*TWISTD, "-n", "--pidfile=", f"--uid={nobody}", "securesock", "--workers", "2"]
    with twistd(tmp_path, command=[*command, "--listen", listen(pki, port)]) as server:
        server.waitFor(r"worker 1: .*listening: ", timeout=30)
        pids = _pidsServing(port, pki.ca_pem, 2)
        assert len(pids) == 2, pids
        for pid in pids:
            status = Path(f"/proc/{int(pid)}/status").read_text()
            uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)", status, re.MULTILINE)
            assert uids is not None and int(uids.group(1)) == nobody and int(uids.group(2)) == nobody, status


def _gone(pids: list[int], timeout: float = 15) -> bool:
    """Whether every process of C{pids} has ended (zombies count as ended), within C{timeout}."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [
            pid
            for pid in pids
            if Path(f"/proc/{pid}/status").exists()
            and "State:\tZ" not in Path(f"/proc/{pid}/status").read_text(errors="replace")
        ]
        if not alive:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="--uid needs root")
def test_workers_under_uid_take_sighup_and_sigterm(pki: PKI, tmp_path: Path) -> None:
    """twistd runs as nobody, its supervisor as root: orders go through a pipe, not signals it may not send."""
    import pwd

    nobody = pwd.getpwnam("nobody").pw_uid
    port = freePort()
    tmp_path.chmod(0o777)
    command = [*TWISTD, "-n", "--pidfile=", f"--uid={nobody}", "securesock", "--workers", "2", "--grace", "1"]
    with twistd(tmp_path, command=[*command, "--listen", listen(pki, port)]) as server:
        server.waitFor(r"worker \d: .*listening: ", count=2, timeout=30)
        workers = [int(pid) for pid in re.findall(r"started worker \d \(pid (\d+)\)", server.log)]
        supervisor = re.search(r"started the workers' supervisor \(pid (\d+)\)", server.log)
        assert len(workers) == 2 and supervisor is not None
        server.process.send_signal(signal.SIGHUP)
        # Each worker re-reads its certificate (as nobody, who may not read the test's files).
        reloaded = (
            r"worker \d: .*(SIGHUP: certificates of .* unchanged|still serving the previous certificate)"
        )
        server.waitFor(reloaded, count=2, timeout=20)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(20) in (0, -signal.SIGTERM)
    assert _gone([*workers, int(supervisor.group(1))]), server.log


def test_a_sighup_right_after_the_start_ends_nothing(pki: PKI, tmp_path: Path) -> None:
    """A reload as the supervisor and the workers start: twistd and every worker go on."""
    port = freePort()
    with twistd(tmp_path, "--listen", listen(pki, port), "--workers", "2", expectRunning=False) as server:
        server.waitFor(r"started the workers' supervisor", timeout=30)
        server.process.send_signal(signal.SIGHUP)
        server.waitFor(r"started worker 2", timeout=30)
        server.process.send_signal(signal.SIGHUP)  # passed on to workers still starting
        server.waitFor(r"worker \d: .*listening: ", count=2, timeout=30)
        assert len(_pidsServing(port, pki.ca_pem, 2)) == 2
        assert server.process.poll() is None
        assert "ended" not in server.log, server.log


# --- signals -------------------------------------------------------------------------


def test_sigterm_cuts_connections_after_grace(pki: PKI, tmp_path: Path) -> None:
    with serving(_ThreadingTCP(("127.0.0.1", 0), _Echo)) as echo:
        port = freePort()
        with twistd(
            tmp_path, "--listen", listen(pki, port), "--connect", f"tcp:127.0.0.1:{echo}", "--grace", "1"
        ) as server:
            context = ssl.create_default_context(cafile=pki.ca_pem)
            with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
                with context.wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.sendall(b"ping\n")
                    assert tls.recv(100) == b"ping\n"
                    server.process.send_signal(signal.SIGTERM)  # the client stays idle
                    assert server.process.wait(20) in (0, -signal.SIGTERM)
                    try:
                        rest = tls.recv(100)
                    except OSError:
                        rest = b""
                    assert rest == b""
            assert "1 open connection(s) may finish for 1.0 s" in server.log
            assert re.search(
                r"in=5 out=5 [\d.]+s closed: cut at the end of --grace 1 s after SIGTERM", server.log
            ), server.log


def test_sighup_reaches_the_workers(pki: PKI, tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    served = tmp_path / "site.pem"
    served.write_bytes(Path(pki.server_pem).read_bytes())
    served.chmod(0o600)
    renewed = Path(pki.rsa_pem).read_bytes()
    port = freePort()
    description = listen(pki, port).replace(pki.server_pem, str(served))
    with twistd(tmp_path, "--listen", description, "--workers", "2") as server:
        server.waitFor(r"worker 1: .*listening: ", timeout=30)
        time.sleep(1.1)  # a new modification time
        served.write_bytes(renewed)
        server.process.send_signal(signal.SIGHUP)
        server.waitFor(r"certificate .* renewed: now serving", count=2, timeout=20)
        want = x509.load_pem_x509_certificate(renewed).fingerprint(hashes.SHA256()).hex()
        seen: dict[bytes, bytes] = {}
        for _ in range(80):
            reply = tlsExchange(port, pki.ca_pem, b"who\n", expect=10**6)
            pid = re.search(rb"Served by: pid (\d+)", reply)
            served256 = re.search(rb"Server certificate: .*\n.*\n.*\n  SHA-256: ([0-9a-f]+)", reply)
            assert pid is not None and served256 is not None, reply
            seen[pid.group(1)] = served256.group(1)
            if len(seen) == 2:
                break
        assert len(seen) == 2 and set(seen.values()) == {want.encode()}, seen


@pytest.mark.parametrize("workers", ["1", "2"])
def test_relative_paths_stay_those_of_the_launch_directory_under_twistd_d(
    pki: PKI, tmp_path: Path, workers: str
) -> None:
    """twistd -d DIR changes directory after the options are read: renewals and workers read the same files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    served = tmp_path / "site.pem"  # the twistd helper starts in tmp_path
    served.write_bytes(Path(pki.server_pem).read_bytes())
    served.chmod(0o600)
    (tmp_path / "run").mkdir()
    port = freePort()
    command = [*TWISTD, "-n", "--pidfile=", "-d", str(tmp_path / "run"), "securesock", "--workers", workers]
    description = f"tls:{port}:interface=127.0.0.1:certificate=site.pem"
    with twistd(tmp_path, command=[*command, "--listen", description]) as server:
        server.waitFor(r"listening: ", count=int(workers), timeout=30)
        time.sleep(1.1)  # a new modification time
        renewed = Path(pki.rsa_pem).read_bytes()
        served.write_bytes(renewed)
        server.process.send_signal(signal.SIGHUP)
        server.waitFor(r"certificate .* renewed: now serving", count=int(workers), timeout=20)
        want = x509.load_pem_x509_certificate(renewed).fingerprint(hashes.SHA256()).hex().encode()
        reply = tlsExchange(port, pki.ca_pem, b"who\n", expect=10**6)
        assert re.search(rb"SHA-256: " + want, reply), reply
        assert "cannot be used" not in server.log and "no such file" not in server.log, server.log


@contextmanager
def _starttlsSMTPBackend(pki: PKI) -> Iterator[tuple[int, list[tuple[bool, bytes]]]]:
    """A plain aiosmtpd that requires STARTTLS: its port, and (secured?, body) for each message it gets."""
    pytest.importorskip("aiosmtpd.controller", reason="aiosmtpd (test extra) is not installed")
    from aiosmtpd.controller import Controller

    messages: list[tuple[bool, bytes]] = []

    class Handler:
        async def handle_DATA(self, server: object, session: Any, envelope: Any) -> str:
            messages.append((session.ssl is not None, envelope.content))
            return "250 OK"

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server_pem)
    controller = Controller(
        Handler(), hostname="127.0.0.1", port=freePort(), tls_context=context, require_starttls=True
    )
    controller.start()
    try:
        yield controller.port, messages
    finally:
        controller.stop()


def test_plain_smtp_client_relayed_through_starttls_to_the_backend(pki: PKI, tmp_path: Path) -> None:
    """--connect starttls:...:dialect=smtp: the client is greeted, the backend only sees TLS."""
    import smtplib

    with _starttlsSMTPBackend(pki) as (backendPort, messages):
        port = freePort()
        backend = f"starttls:localhost:{backendPort}:dialect=smtp:trustRoots={pki.ca_pem}"
        with twistd(tmp_path, "--listen", f"tcp:{port}:interface=127.0.0.1", "--connect", backend) as server:
            with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=20) as smtp:
                assert smtp.docmd("NOOP")[0] == 250  # smtplib read our greeting on connect
                smtp.sendmail("a@example.test", ["b@example.test"], b"Subject: upgraded\r\n\r\nhello\r\n")
            server.waitFor(r"sni=- plaintext - in=\d+ out=\d+ [\d.]+s closed")
    assert [(secured, b"Subject: upgraded" in body) for secured, body in messages] == [(True, True)]


def test_starttls_listener_to_starttls_backend_greets_once(pki: PKI, tmp_path: Path) -> None:
    """starttls: on both sides: the client is greeted before its upgrade, not again after it (RFC 3207)."""
    import smtplib

    with _starttlsSMTPBackend(pki) as (backendPort, messages):
        port = freePort()
        listen = f"starttls:{port}:interface=127.0.0.1:certificate={pki.server_pem}:dialect=smtp"
        backend = f"starttls:localhost:{backendPort}:dialect=smtp:trustRoots={pki.ca_pem}"
        with twistd(tmp_path, "--listen", listen, "--connect", backend):
            with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=20) as smtp:
                smtp.starttls(context=ssl.create_default_context(cafile=pki.ca_pem))
                # A second greeting would be read as the answer to EHLO.
                assert smtp.ehlo()[0] == 250
                smtp.sendmail("a@example.test", ["b@example.test"], b"Subject: twice\r\n\r\nhello\r\n")
    assert [(secured, b"Subject: twice" in body) for secured, body in messages] == [(True, True)]


class _SlowGreeter(socketserver.BaseRequestHandler):
    """
    A plaintext SMTP or FTP backend that greets after a pause, as Postfix's
    postscreen does, with a multi-line greeting whose middle line is free
    text (RFC 959, 4.2), and notes whether the client spoke first.
    """

    greeting: bytes
    answers: dict[bytes, bytes]
    pregreet: list[bytes]

    def handle(self) -> None:
        early, _, _ = select.select([self.request], [], [], 1.0)
        if early:
            self.pregreet.append(self.request.recv(200, socket.MSG_PEEK))
        self.request.sendall(self.greeting)
        lines = self.request.makefile("rb")
        for _ in range(20):
            line = lines.readline(4096)
            if not line:
                return
            verb = line.split(b" ")[0].strip().upper()
            self.request.sendall(self.answers.get(verb, b"250 ok\r\n"))
            if verb == b"QUIT":
                return


@pytest.mark.parametrize("dialect", ["smtp", "ftp"])
def test_starttls_listener_waits_for_the_backends_greeting(pki: PKI, tmp_path: Path, dialect: str) -> None:
    """The client's first command after TLS reaches the backend only after its greeting, which it does not see."""
    import ftplib
    import smtplib

    pregreet: list[bytes] = []
    handler = type(
        "Greeter",
        (_SlowGreeter,),
        {
            "pregreet": pregreet,
            "greeting": b"220-backend.example\r\n    free text\r\n220 backend ready\r\n",
            "answers": {
                b"EHLO": b"250-backend.example\r\n250 8BITMIME\r\n",
                b"USER": b"331 Password please\r\n",
                b"PASS": b"230 Logged in\r\n",
                b"QUIT": b"221 Bye\r\n",
            },
        },
    )
    context = ssl.create_default_context(cafile=pki.ca_pem)
    with serving(_ThreadingTCP(("127.0.0.1", 0), handler)) as backendPort:
        port = freePort()
        listen = f"starttls:{port}:interface=127.0.0.1:certificate={pki.server_pem}:dialect={dialect}"
        with twistd(tmp_path, "--listen", listen, "--connect", f"tcp:127.0.0.1:{backendPort}"):
            if dialect == "smtp":
                with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=20) as smtp:
                    smtp.starttls(context=context)
                    code, text = smtp.ehlo()
                    assert (code, text) == (250, b"backend.example\n8BITMIME")
            else:
                client = ftplib.FTP_TLS(context=context, timeout=20)
                client.connect("127.0.0.1", port)
                client.auth()
                assert client.login("user", "secret") == "230 Logged in"
                client.quit()
    assert pregreet == []


@pytest.mark.parametrize("connectionLog", ["all", "none"])
def test_log_connections_none_covers_starttls_sessions(pki: PKI, tmp_path: Path, connectionLog: str) -> None:
    """A STARTTLS session that never reaches TLS has its line under all, none under none."""
    import smtplib

    port = freePort()
    listen = f"starttls:{port}:interface=127.0.0.1:certificate={pki.server_pem}:dialect=smtp"
    with twistd(tmp_path, "--listen", listen, "--log-connections", connectionLog) as server:
        with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=20) as smtp:
            smtp.ehlo()
        if connectionLog == "all":
            server.waitFor(r"closed before TLS: the client quit before STARTTLS")
        else:
            time.sleep(1.0)  # the session is over (QUIT answered); its line would have come by now
            assert "closed before TLS" not in server.log, server.log


def _postgresThroughTLS(port: int, cafile: str, payload: bytes) -> bytes:
    """A PostgreSQL client's SSLRequest, then TLS, then C{payload}; what comes back (the client speaks first)."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
        raw.sendall(struct.pack(">II", 8, 80877103))  # SSLRequest
        assert raw.recv(1) == b"S"
        context = ssl.create_default_context(cafile=cafile)
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(payload)
            received = b""
            while len(received) < len(payload):
                chunk = tls.recv(4096)
                if not chunk:
                    break
                received += chunk
            return received


def test_a_client_first_dialects_data_reaches_a_silent_backend(pki: PKI, tmp_path: Path) -> None:
    """postgres (as xmpp and ldap): the server never greets, so the relay waits for no greeting."""
    with serving(_ThreadingTCP(("127.0.0.1", 0), _Echo)) as echo:
        port = freePort()
        listen = f"starttls:{port}:interface=127.0.0.1:certificate={pki.server_pem}:dialect=postgres"
        with twistd(tmp_path, "--listen", listen, "--connect", f"tcp:127.0.0.1:{echo}"):
            startup = struct.pack(">II", 17, 196608) + b"user\x00bob\x00\x00"  # StartupMessage
            assert _postgresThroughTLS(port, pki.ca_pem, startup) == startup


# --- the command line, parsed in-process ---------------------------------------------


def _options(*argv: str) -> Any:
    from securesock._tap import Options

    options = Options()
    options.parseOptions(list(argv))
    return options


def test_grace_zero_and_one_connect_are_taken(pki: PKI) -> None:
    options = _options("--grace", "0", "-c", "tcp:127.0.0.1:1", "--listen", listen(pki, 8443))
    assert options["grace"] == 0.0 and options["connect"] == "tcp:127.0.0.1:1"
    assert options["backend"] is not None


@pytest.mark.parametrize(
    "description",
    [
        "tls:8443:certificate=site.p12:passphrase=file:Zq7SecretPw-H91",
        "tls:8443:certificate=site.p12:passphrase=env:Zq7SecretPwH91",
        "tls://127.0.0.1:8443?certificate=site.p12&passphrase=file:Zq7SecretPw-H91",
        "tls:8443:certificate=site.p12:pasphrase=Zq7SecretPw-H91",
        "tls:8443:certificate=site.p12:passphrase=Zq7SecretPw-H91",
    ],
)
def test_a_usage_error_quotes_no_passphrase(tmp_path: Path, description: str) -> None:
    """The description echoed before the message hides what the message hides: a reference that may be the secret."""
    from twisted.python.usage import UsageError

    (tmp_path / "site.p12").write_bytes(b"not a PKCS#12 file")
    previous = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(UsageError) as caught:
            _options("--listen", description)
    finally:
        os.chdir(previous)
    assert "Zq7SecretPw" not in str(caught.value), caught.value
    assert "--listen 'tls" in str(caught.value) and "(not shown)" in str(caught.value)


def test_a_usage_error_keeps_references_that_say_what_to_fix() -> None:
    from securesock._tap import _shown

    assert _shown("tls:1:passphrase=env:KEYPASS") == "'tls:1:passphrase=env:KEYPASS'"
    assert _shown("tls:1:passphrase=file:/etc/securesock/pw") == "'tls:1:passphrase=file:/etc/securesock/pw'"


def test_idle_timeout_defaults_to_stunnels_and_reaches_the_workers(pki: PKI) -> None:
    from securesock._tap import _workerArguments

    assert _options("--listen", listen(pki, 8443))["idle-timeout"] == 43200.0  # TIMEOUTidle
    options = _options("--idle-timeout", "2.5", "--workers", "2", "--listen", listen(pki, 8443))
    arguments = _workerArguments(options)
    assert arguments[arguments.index("--idle-timeout") + 1] == "2.5"
    assert _options("--idle-timeout", "0", "--listen", listen(pki, 8443))["idle-timeout"] == 0.0


def test_workers_auto_is_the_cpu_count(pki: PKI) -> None:
    options = _options("--workers", "auto", "--listen", listen(pki, 8443))
    assert options["workers"] == (os.cpu_count() or 1)
    if options["workers"] > 1:  # the listeners were given reusePort=yes
        assert options["endpoints"][0][0].endswith(":reusePort=yes")


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--workers", "0"], "--workers='0': give 1..256 or auto"),
        (["--workers", "many"], "--workers='many': give a number of processes or auto"),
        (["--grace", "soon"], "--grace='soon': give a number of seconds"),
        (["--grace", "-5"], "--grace='-5': give 0 (close at once) to 86400 seconds (a day)"),
        (["--grace", "nan"], "--grace='nan': give 0 (close at once) to 86400"),
        (["--grace", "inf"], "--grace='inf': give 0 (close at once) to 86400"),
        (
            ["--connect", "tcp:127.0.0.1:1", "--connect", "tcp:127.0.0.1:2"],
            "--connect is given twice ('tcp:127.0.0.1:1' and 'tcp:127.0.0.1:2'); a relay has one backend",
        ),
        (["--log-connections", "some"], "--log-connections='some': give one of all, failures, none"),
        (
            ["--listen", "starttls:2525:interface=127.0.0.1:certificate={pem}:dialect=none"],
            "dialect=none leaves the plaintext exchange and the upgrade to the application, and twistd "
            "securesock has none to do it (the connection would stay plaintext); give the protocol: "
            "dialect=smtp, imap, pop3, ftp, xmpp, ldap, postgres",
        ),
        (
            ["--connect", "starttls:localhost:25:dialect=none"],
            "--connect 'starttls:localhost:25:dialect=none': dialect=none",
        ),
        (["--idle-timeout", "soon"], "--idle-timeout='soon': give a number of seconds, or 0 (never)"),
        (["--idle-timeout", "-1"], "--idle-timeout='-1': give 0 (never) or up to 31536000 seconds (a year)"),
        (["--idle-timeout", "nan"], "--idle-timeout='nan': give 0 (never) or up to 31536000"),
        (["--connect", "tls:example.com:443:verfy=no"], "--connect 'tls:example.com:443:verfy=no': "),
        (["--listen", "tls:8443:protocols=TLS12"], "unknown protocol flag 'TLS12' (did you mean TLS1_2?)"),
        (
            ["--workers", "2", "--listen", "tls:8443:certificate={pem}:reusePort=no"],
            "reusePort=no, but --workers 2 shares each port between its processes with SO_REUSEPORT",
        ),
        (
            ["--workers", "2", "--listen", "tls:8443:certificate={pem}:exclusive=yes"],
            "(--workers 2 adds reusePort=yes: its processes share the port)",
        ),
    ],
)
def test_command_line_errors_are_usage_errors(pki: PKI, argv: list[str], fragment: str) -> None:
    from twisted.python.usage import UsageError

    extra = [] if "--listen" in argv else ["--listen", listen(pki, 8443)]
    with pytest.raises(UsageError) as caught:
        _options(*[arg.replace("{pem}", pki.server_pem) for arg in argv], *extra)
    assert fragment in str(caught.value)


@pytest.mark.parametrize("connectionLog", ["all", "failures"])
def test_unreachable_backend_is_one_log_line_and_the_server_keeps_serving(
    pki: PKI, tmp_path: Path, connectionLog: str
) -> None:
    """Also with --log-connections failures: an unreachable backend is a failure worth its line."""
    closed = freePort()  # nothing listens there
    port = freePort()
    arguments = ["--log-connections", connectionLog, "--listen", listen(pki, port)]
    with twistd(tmp_path, *arguments, "--connect", f"tcp:127.0.0.1:{closed}") as server:
        for _ in range(2):
            assert tlsExchange(port, pki.ca_pem, b"hello\n", expect=10**6) == b""
        server.waitFor(rf"closed: cannot reach tcp:127\.0\.0\.1:{closed}: ConnectionRefusedError", count=2)
        assert server.process.poll() is None
        connectionLines = [line for line in server.log.splitlines() if "securesock.connection" in line]
        assert len(connectionLines) == 2, server.log
        assert "securesock.relay" not in server.log


def test_sighup_with_a_broken_renewal_keeps_the_old_certificate(pki: PKI, tmp_path: Path) -> None:
    served = tmp_path / "site.pem"
    served.write_bytes(Path(pki.server_pem).read_bytes())
    served.chmod(0o600)
    port = freePort()
    _, _, before = _hashes(pki.server_pem)
    with twistd(tmp_path, "--listen", listen(pki, port).replace(pki.server_pem, str(served))) as server:
        time.sleep(1.1)  # a new modification time
        served.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n")
        server.process.send_signal(signal.SIGHUP)
        server.waitFor(r"cannot be used \(.*\); still serving the previous certificate")
        reply = tlsExchange(port, pki.ca_pem, b"x\n", expect=10**6)
        assert f"SHA-256: {before}".encode() in reply
        assert server.process.poll() is None


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc to read memory use")
def test_originating_relay_keeps_memory_bounded_with_a_slow_reader(pki: PKI, tmp_path: Path) -> None:
    """Plaintext in, TLS out: the TLS client leg is paused by a slow plaintext reader too."""
    size = 100 * 1024 * 1024
    with serving(_ThreadingTCP(("127.0.0.1", 0), _Firehose)) as hose:
        terminator, originator = freePort(), freePort()
        with (
            twistd(tmp_path, "--listen", listen(pki, terminator), "--connect", f"tcp:127.0.0.1:{hose}"),
            twistd(
                tmp_path,
                "--listen",
                f"tcp:{originator}:interface=127.0.0.1",
                "--connect",
                f"tls:localhost:{terminator}:trustRoots={pki.ca_pem}",
            ) as server,
        ):
            before = _rss(server.process.pid)
            with socket.create_connection(("127.0.0.1", originator), timeout=20) as plain:
                plain.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
                received = 0
                peak = before
                deadline = time.monotonic() + 2.0
                while time.monotonic() < deadline:  # a slow reader: 64 KiB every 20 ms
                    received += len(plain.recv(65536))
                    peak = max(peak, _rss(server.process.pid))
                    time.sleep(0.02)
                assert peak - before < 40 * 1024 * 1024, (before, peak)
                deadline = time.monotonic() + 60
                while received < size and time.monotonic() < deadline:
                    chunk = plain.recv(1 << 20)
                    if not chunk:
                        break
                    received += len(chunk)
            assert received >= size


class _FakeProcess:
    pid = 4242

    def signalProcess(self, name: str) -> None:
        pass


class _SpawningClock:
    """A Clock whose spawnProcess only records what would be started."""

    def __init__(self) -> None:
        from twisted.internet.task import Clock

        self.clock = Clock()
        self.callLater = self.clock.callLater
        self.spawned: list[Any] = []

    def spawnProcess(
        self, protocol: Any, executable: str, args: list[str], env: dict[str, str], path: str | None = None
    ) -> _FakeProcess:
        self.spawned.append(protocol)
        return _FakeProcess()


def test_supervisor_ending_while_serving_stops_twistd(monkeypatch: pytest.MonkeyPatch) -> None:
    from twisted.internet.error import ProcessTerminated
    from twisted.python.failure import Failure

    from securesock import _tap
    from securesock._workers import WorkerPool

    stops: list[str] = []
    monkeypatch.setattr(_tap, "_stopWithFailure", lambda: stops.append("stop"))
    reactor = _SpawningClock()
    pool = WorkerPool(reactor, [sys.executable])
    pool.startService()
    pool.startService()  # privilegedStartService then startService: one supervisor
    assert len(reactor.spawned) == 1
    reactor.spawned[0].processEnded(Failure(ProcessTerminated(1)))  # no worker could start
    assert stops == ["stop"]

    stopping = WorkerPool(reactor, [sys.executable])
    stopping.startService()
    ended = stopping.stopService()  # SIGTERM to the supervisor, which then ends
    assert not ended.called
    reactor.spawned[1].processEnded(Failure(ProcessTerminated(0)))
    assert ended.called and stops == ["stop"]


def test_supervisor_output_is_logged_line_by_line_per_stream(logLines: Any) -> None:
    from twisted.internet.error import ProcessDone
    from twisted.python.failure import Failure

    from securesock._workers import WorkerPool, _Supervisor

    supervisor = _Supervisor(WorkerPool(_SpawningClock(), [sys.executable]))
    supervisor.childDataReceived(1, b"worker 7: out one\nworker 7: out ")
    supervisor.childDataReceived(2, b"worker 7: err one\n")
    supervisor.childDataReceived(1, b"two\n" + b"worker 7: x\n" * 300)
    supervisor.childDataReceived(2, b"worker 7: no newline at the end")
    supervisor.processEnded(Failure(ProcessDone(0)))
    lines = [text for text in (t for _, _, t in logLines.events) if text.startswith("worker 7: ")]
    assert lines == (
        ["worker 7: out one", "worker 7: err one", "worker 7: out two"]
        + ["worker 7: x"] * 300
        + ["worker 7: no newline at the end"]
    )


def test_a_listen_still_under_way_at_stop_is_undone_when_it_completes() -> None:
    """A host-name listener resolving when the service stops: its port is closed once it arrives."""
    from twisted.internet.defer import Deferred
    from twisted.internet.protocol import Factory

    from securesock._tap import _ListenService

    class Port:
        stopped = False

        def stopListening(self) -> None:
            self.stopped = True

        def getHost(self) -> str:
            return "somewhere"

    class Endpoint:
        def __init__(self) -> None:
            self.pending: Deferred[Any] = Deferred()

        def listen(self, factory: Any) -> Deferred[Any]:
            return self.pending

    endpoint, port = Endpoint(), Port()
    service = _ListenService("tls:8443:interface=www.example", endpoint, Factory())  # type: ignore[arg-type]
    service.startService()
    service.stopService()
    endpoint.pending.callback(port)
    assert port.stopped and service.port is None

    served, second = Endpoint(), Port()  # the ordinary order: listening, then stopped
    service = _ListenService("tls:8443", served, Factory())  # type: ignore[arg-type]
    service.startService()
    served.pending.callback(second)
    assert service.port is second and not second.stopped
    service.stopService()
    assert second.stopped


def test_a_broken_development_ca_is_a_usage_error(tmp_path: Path) -> None:
    """twistd securesock without --listen, with a store whose development CA lost its key."""
    from securesock._devstore import DEVCA_KEY, storeAuthority

    home = tmp_path / "home"
    store = home / ".local" / "share" / "securesock" / "store"
    store.mkdir(parents=True)
    storeAuthority(str(store))
    (store / DEVCA_KEY).unlink()
    environ = dict(os.environ, HOME=str(home))
    environ.pop("XDG_DATA_HOME", None)
    with twistd(tmp_path, expectRunning=False, environ=environ) as server:
        assert server.process.wait(30) != 0
        assert (
            "no --listen given, and the development certificate cannot be made: the development CA of"
            in server.log
        )
        assert "is incomplete" in server.log


def test_a_store_that_cannot_be_written_is_a_usage_error(tmp_path: Path) -> None:
    """twistd securesock without --listen, the store's path running through a file."""
    (tmp_path / "file").write_text("not a directory")
    environ = dict(os.environ, SECURESOCK_STORE=str(tmp_path / "file" / "store"))
    with twistd(tmp_path, expectRunning=False, environ=environ) as server:
        assert server.process.wait(30) != 0
        assert (
            f"the development certificate cannot be made: the certificate store '{tmp_path}/file/store' "
            "cannot hold the development certificate (Not a directory" in server.log
        )
        assert "set SECURESOCK_STORE to a writable directory" in server.log


@pytest.mark.parametrize("option", ["--listen", "--connect"])
def test_a_passphrase_typed_into_a_description_is_not_echoed(pki: PKI, tmp_path: Path, option: str) -> None:
    """The usage error quotes the description, passphrase hidden, even one a ':' cut in two."""
    typed = "tls:8443:certificate=site.p12:passphrase=hunter2:XYZZY"
    args = [option, typed] if option == "--listen" else ["--listen", listen(pki, 0), option, typed]
    with twistd(tmp_path, *args, expectRunning=False) as server:
        assert server.process.wait(20) != 0
        assert f"{option} 'tls:8443:certificate=site.p12:passphrase=(not shown)'" in server.log
        assert "literal passphrases are refused" in server.log
        assert "hunter2" not in server.log and "XYZZY" not in server.log


def test_twistd_web_exits_when_the_interface_does_not_resolve(pki: PKI, tmp_path: Path) -> None:
    """As with Twisted's own tcp:, instead of running without its port."""
    description = f"securesock:0:interface=no-such-name.invalid:certificate={pki.server_pem}"
    command = [*TWISTD, "-n", "--pidfile=", "web", "--listen", description, "--path", str(tmp_path)]
    log = tmp_path / "web.log"
    with open(log, "wb") as out:
        environ = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path, env=environ)
    try:
        assert process.wait(30) != 0  # Twisted's traceback, then exit status 1
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
    assert "CannotListenError" in log.read_text() and (
        "interface=no-such-name.invalid does not resolve" in log.read_text()
    )


def test_a_server_name_cannot_forge_a_log_line(pki: PKI, tmp_path: Path) -> None:
    """The SNI a client sends is logged with its control bytes and spaces escaped."""
    openssl = requireTool("openssl")
    port = freePort()
    forged = "evil\n2026-01-01T00:00:00+0000 [securesock.twistd#info] FORGED"
    with twistd(tmp_path, "--listen", listen(pki, port)) as server:
        subprocess.run(
            [openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", forged, "-brief"],
            input=b"",
            capture_output=True,
            timeout=20,
        )
        server.waitFor(
            r"sni=evil\\x0a2026-01-01T00:00:00\+0000\\x20\[securesock\.twistd#info\]\\x20FORGED TLSv1\.3"
        )
        assert "\n2026-01-01T00:00:00+0000 [securesock.twistd#info] FORGED" not in server.log


def test_a_securesock_client_rejecting_the_servers_chain_sends_its_alert(pki: PKI, tmp_path: Path) -> None:
    """
    securesock probe does not trust the server's CA: the server logs why, not a
    connection reset.  (A name or pin that does not match aborts: OpenSSL
    would have nothing to say but "internal error".)
    """
    port = freePort()
    options, said, alert = f"trustRoots={pki.path('other-ca.pem')}", "did not verify", "alert unknown ca"
    with twistd(tmp_path, "--listen", listen(pki, port)) as server:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "securesock",
                "probe",
                f"tls:localhost:{port}:{options}",
                "--timeout",
                "10",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 1 and said in result.stderr  # the client's own reason, as before
        server.waitFor(rf"127\.0\.0\.1:\d+ handshake failed: TLS error: .*{alert}")


def test_a_plain_http_request_is_one_log_line(pki: PKI, tmp_path: Path) -> None:
    """curl http:// to the TLS port: the 400, and one line that says why (not also 'ConnectionLost')."""
    curl = requireTool("curl")
    port = freePort()
    with twistd(tmp_path, "--listen", listen(pki, port)) as server:
        result = subprocess.run([curl, "-sS", f"http://127.0.0.1:{port}/"], capture_output=True, timeout=20)
        assert result.stdout.startswith(
            b"400 Bad Request: a plain HTTP request was sent to a port that speaks TLS"
        )
        server.waitFor(
            r"127\.0\.0\.1:\d+ handshake failed: the client sent a plain HTTP request \('GET / HTTP/1\.1'\) "
            r"to this TLS port; answered 400 and closed"
        )
        time.sleep(0.3)
        assert "ConnectionLost" not in server.log and server.log.count("plain HTTP request") == 1
