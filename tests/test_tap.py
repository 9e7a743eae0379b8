"""
``twistd securesock`` as an operator runs it: a real twistd process, real
backends (a TCP echo, Python's HTTP server, ``openssl s_server``) and real
clients (curl, openssl s_client, Python's ssl).
"""

from __future__ import annotations

import http.server
import os
import re
import signal
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from .conftest import PKI, requireTool
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
def twistd(tmp_path: Path, *args: str, expectRunning: bool = True) -> Iterator[Twistd]:
    log = tmp_path / f"twistd-{time.monotonic_ns()}.log"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [*TWISTD, "-n", "--pidfile=", "securesock", *args],
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


def tlsExchange(port: int, ca: str, payload: bytes, *, expect: int) -> bytes:
    context = ssl.create_default_context(cafile=ca)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            # Write while reading: an echo through any bounded relay deadlocks otherwise.
            writer = threading.Thread(target=tls.sendall, args=(payload,), daemon=True)
            writer.start()
            received = b""
            while len(received) < expect:
                chunk = tls.recv(65536)
                if not chunk:
                    break
                received += chunk
            writer.join(10)
            return received


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


def test_workers_need_fixed_port(pki: PKI, tmp_path: Path) -> None:
    with twistd(tmp_path, "--listen", listen(pki, 0), "--workers", "2", expectRunning=False) as server:
        server.process.wait(20)
        assert "--workers needs a fixed port" in server.log


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


def test_default_listen_uses_development_certificate(tmp_path: Path) -> None:
    curl = requireTool("curl")
    store = tmp_path / "store"
    port = 8443
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        pytest.skip("port 8443 is busy on this machine; the default listener needs it")
    except OSError:
        pass
    env = dict(os.environ, SECURESOCK_STORE=str(store))
    old = os.environ.copy()
    os.environ.update(env)
    try:
        with twistd(tmp_path) as server:
            assert "no --listen given" in server.log and str(store / "devca.crt") in server.log
            result = subprocess.run(
                [curl, "-sS", "--cacert", str(store / "devca.crt"), "https://localhost:8443/"], capture_output=True, timeout=20
            )
            assert result.returncode == 0, result.stderr
            assert b"Server certificate: CN=localhost" in result.stdout
    finally:
        os.environ.clear()
        os.environ.update(old)
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
                [swaks, "--server", "127.0.0.1", "--port", str(port), "--tls", "--tls-verify", "--tls-ca-path", pki.ca_pem,
                 "--tls-sni", "localhost", "--from", "a@example.test", "--to", "c@example.test", "--header", "Subject: via swaks"],
                capture_output=True, timeout=30,
            )
            assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
        subjects = b"\n".join(controller.handler.messages)
        assert b"via smtplib" in subjects and b"via swaks" in subjects
    finally:
        controller.stop()
