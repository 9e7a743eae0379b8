"""
bench/transport_floor.py: the transport bound drawn from its measurements,
and the parts it measures with (bench/loadgen.c ``pages``, the ``tcp``,
``plain``, ``bare`` and ``bare-close`` servers of bench/servers.py), run
for real.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from .benchscripts import loadBenchScript, requirePinnedCores
from .conftest import requireTool

# Medians as bench/transport_floor.py records them (µs per connection; echo: per request).
COST = {
    "plain TCP": {"tcp": 250.0, "plain": 110.0},
    "plain TCP echo": {"tcp": 105.0, "plain": 45.0},
    "full TLS 1.3": {
        "securesock": 1200.0,
        "twisted": 1300.0,
        "pyopenssl": 800.0,
        "bare": 1040.0,
        "bare-close": 1000.0,
    },
    "resumed TLS 1.2": {
        "securesock": 650.0,
        "twisted": 1400.0,
        "pyopenssl": 400.0,
        "bare": 700.0,
        "bare-close": 560.0,
    },
}


def _floor() -> Any:
    return loadBenchScript("transport_floor")


def test_the_bound_is_the_floor_plus_twisteds_cost_per_connection_and_per_read() -> None:
    bounds = _floor().transportBound(COST)
    full = bounds["full TLS 1.3"]
    assert full["twisted_per_connection"] == pytest.approx(140.0)
    assert full["twisted_per_read"] == pytest.approx(60.0)
    assert full["bound"] == pytest.approx(800.0 + 140.0 + 60.0)
    assert full["securesock_above_bound"] == pytest.approx(200.0)
    assert full["securesock_ratio"] == pytest.approx(1300.0 / 1200.0)
    assert full["bare_ratio"] == pytest.approx(1.25)
    assert full["bare_close_ratio"] == pytest.approx(1.3)
    assert full["bound_ratio"] == pytest.approx(1.3)
    assert full["target"] == 1.25
    resumed = bounds["resumed TLS 1.2"]
    assert resumed["bound"] == pytest.approx(600.0)
    assert resumed["bound_ratio"] == pytest.approx(1400.0 / 600.0)
    assert resumed["bare_ratio"] == pytest.approx(2.0) and resumed["bare_close_ratio"] == pytest.approx(2.5)
    assert resumed["target"] == 2.0


def test_the_table_gives_each_median_with_its_spread_and_each_bound_beside_its_target() -> None:
    spread = {load: {kind: (v - 10, v + 10) for kind, v in row.items()} for load, row in COST.items()}
    lines = _floor().table(COST, spread).splitlines()
    assert "| plain TCP | tcp | 250 (240-260) |" in lines
    assert "| resumed TLS 1.2 | pyopenssl | 400 (390-410) |" in lines
    full = next(line for line in lines if line.startswith("| full TLS 1.3 | 140 µs"))
    assert (
        full
        == "| full TLS 1.3 | 140 µs | 60 µs | 1,000 µs | 200 µs | 1.08x | 1.25x | 1.30x | 1.30x | 1.25x |"
    )


@pytest.fixture(scope="module")
def loadgen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    requireTool("gcc")
    requirePinnedCores()
    binary: Path = _floor().suite.buildLoadgen(tmp_path_factory.mktemp("loadgen"))
    return binary


@pytest.mark.parametrize("kind", ["tcp", "plain"])
def test_pages_and_echo_are_served_without_tls_and_measured(loadgen: Path, tmp_path: Path, kind: str) -> None:
    floor = _floor()
    server = floor.suite.Server(kind, tmp_path / "unused.crt", tmp_path / "unused.key", tmp_path, loadgen)
    try:
        pages = floor.suite.measured(server, floor.pages, loadgen, server.port, 1)
        echo = floor.suite.measured(server, floor.echoOne, loadgen, server.port, 1)
    finally:
        server.stop()
    assert pages["per_second"] > 10 and pages["cpu_us_per_op"] > 0
    assert echo["per_second"] > 10 and echo["cpu_us_per_op"] > 0


def test_pages_counts_only_http_200_answers(loadgen: Path) -> None:
    """A server that answers 404 gets no page counted: loadgen exits 1, and pages() says so."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    stop = time.monotonic() + 20
    served = 0

    def serve() -> None:
        nonlocal served
        while time.monotonic() < stop and served < 100_000:
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            with sock:
                sock.settimeout(5)
                try:
                    sock.recv(4096)
                    sock.sendall(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    pass
            served += 1

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        result = subprocess.run(
            [str(loadgen), "pages", str(port), "1"],
            env={**os.environ, "LOADGEN_PLAIN": "1"},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 1
        assert result.stdout.startswith("connections 0 ") and " failed 100" in result.stdout
        with pytest.raises(RuntimeError, match="loadgen"):
            _floor().pages(loadgen, port, 1)
    finally:
        stop = 0.0
        thread.join(5)
        listener.close()


@pytest.mark.parametrize("kind", ["bare", "bare-close"])
def test_the_bare_tls_layers_serve_pages_and_resume_as_the_others(
    loadgen: Path, tmp_path: Path, kind: str
) -> None:
    """
    The bare layers compare with securesock only if they do the same work:
    a page per connection over real TLS (openssl s_time -www), and returning
    clients resumed under TLS 1.2 (session cache), as securesock's are.
    """
    requireTool("openssl")
    floor = _floor()
    cert, key = floor.suite.certificates(tmp_path)["ecdsa"]
    server = floor.suite.Server(kind, cert, key, tmp_path, loadgen)
    try:
        full = floor.suite.measured(server, floor.suite.sTime, server.port, 1, "1_3", False, True)
        resumed = floor.suite.measured(server, floor.suite.sTime, server.port, 1, "1_2", True, True)
    finally:
        server.stop()
    assert full["per_second"] > 10 and full["cpu_us_per_op"] > 0
    assert resumed["per_second"] > 10 and resumed["resumed_pct"] >= 95
