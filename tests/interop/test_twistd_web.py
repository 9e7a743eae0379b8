"""
The C{securesock:} plugin as a Twisted user meets it: C{twistd web --listen
securesock:...}, a program we did not write parsing our description through
Twisted's own tokenizer, checked with curl.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import securesock

from ..conftest import HAVE_IPV6, PKI, requireTool
from ..peers import Background, freePort

pytestmark = pytest.mark.interop

PAGE = "twistd web served this through securesock\n"
# The directory holding securesock/ and twisted/plugins/, for the child's sys.path.
PROJECT = str(Path(securesock.__file__).resolve().parents[1])


def twistd(cwd: Path, *args: str) -> Background:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PROJECT, env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", *args]
    return Background(command, output=str(cwd / "twistd.out"), cwd=str(cwd), env=env)


def fetchWhileRunning(server: Background, curlArgs: list[str], limit: float = 10) -> str:
    """Poll with curl until twistd serves (or exits, or the limit passes)."""
    curl = requireTool("curl")
    deadline = time.monotonic() + limit
    while True:
        result = subprocess.run(
            [curl, "-sS", "--max-time", "5", *curlArgs], capture_output=True, timeout=15, check=False
        )
        if result.returncode == 0:
            return result.stdout.decode()
        if server.process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(
                f"twistd did not serve (curl status {result.returncode}: "
                f"{result.stderr.decode(errors='replace').strip()}); twistd's output:\n{server.text()}"
            )
        time.sleep(0.1)


def site(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.html").write_text(PAGE)
    return root


FORMS = [
    ("securesock:{port}:interface=127.0.0.1:certificate={cert}", "127.0.0.1"),
    ("securesock://127.0.0.1:{port}?certificate={cert}", "127.0.0.1"),
    ("securesock:{port}:interface=127.0.0.1:certificate={cert}:protocols=TLS1_2", "127.0.0.1"),
]
if HAVE_IPV6:
    FORMS += [
        (r"securesock:{port}:interface=\:\:1:certificate={cert}", "::1"),
        ("securesock://[::1]:{port}?certificate={cert}&protocols=TLS1_2+TLS1_3", "::1"),
    ]


@pytest.mark.parametrize("form, address", FORMS)
def test_twistd_web(pki: PKI, tmp_path: Path, form: str, address: str) -> None:
    port = freePort(address)
    description = form.format(port=port, cert=pki.server_pem)
    server = twistd(tmp_path, "web", "--listen", description, "--path", str(site(tmp_path)))
    try:
        host = f"[{address}]" if ":" in address else address
        page = fetchWhileRunning(
            server,
            ["--cacert", pki.ca_pem, "--resolve", f"localhost:{port}:{host}", f"https://localhost:{port}/"],
        )
        assert page == PAGE
        assert (tmp_path / "twistd.pid").read_text().strip() == str(server.process.pid)
        # plain HTTP on the same port gets no page: the listener really is TLS
        plain = subprocess.run(
            [requireTool("curl"), "-sS", "--max-time", "5", f"http://{host}:{port}/"],
            capture_output=True,
            timeout=15,
            check=False,
        )
        assert PAGE.encode() not in plain.stdout
    finally:
        status = server.stop()
    assert status in (0, -signal.SIGTERM), server.text()  # Twisted re-raises the signal it stopped on
    assert "Server Shut Down." in server.text()
    assert not (tmp_path / "twistd.pid").exists()


def test_twistd_web_protocols_enforced(pki: PKI, tmp_path: Path) -> None:
    port = freePort()
    description = f"securesock:{port}:interface=127.0.0.1:certificate={pki.server_pem}:protocols=TLS1_2"
    server = twistd(tmp_path, "web", "--listen", description, "--path", str(site(tmp_path)))
    try:
        where = [
            "--cacert",
            pki.ca_pem,
            "--resolve",
            f"localhost:{port}:127.0.0.1",
            f"https://localhost:{port}/",
        ]
        assert fetchWhileRunning(server, where) == PAGE
        refused = subprocess.run(
            [requireTool("curl"), "-sS", "--max-time", "5", "--tlsv1.3", *where],
            capture_output=True,
            timeout=15,
            check=False,
        )
        assert refused.returncode == 35, refused.stderr
    finally:
        server.stop()


def test_twistd_web_escape_hint(pki: PKI, tmp_path: Path) -> None:
    """An unescaped passphrase=env:VAR in twistd's tokenizer gets the fix in words."""
    description = (
        f"securesock:{freePort()}:interface=127.0.0.1:certificate={pki.server_crt}"
        f":privateKey={pki.encrypted_key}:passphrase=env:SECURESOCK_TEST_KEYPASS"
    )
    server = twistd(tmp_path, "web", "--listen", description, "--path", str(site(tmp_path)))
    try:
        server.process.wait(30)
    finally:
        server.stop()
    assert server.process.returncode != 0
    output = server.text()
    assert "escape the colon (passphrase=env\\:...)" in output
