"""
bench/run.py's workers figure: a real `twistd securesock --workers 2` under
`openssl s_time`, measured from /proc; and the projection bench/report.py
draws from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .benchscripts import loadBenchScript, requirePinnedCores, tableRow
from .conftest import requireTool


def _run() -> Any:
    return loadBenchScript("run")


def test_two_workers_are_found_and_share_the_handshakes(tmp_path: Path) -> None:
    requireTool("openssl")
    requirePinnedCores()
    run = _run()
    cert, key = run.certificates(tmp_path)["ecdsa"]
    server = run.Server("workers2", cert, key, tmp_path, None)
    try:
        assert run.listeners(server.port) == 2
        tree = run.processTree(server.pid)
        workers = [pid for pid, kids in tree.items() if not kids]
        assert len(tree) == 4 and len(workers) == 2  # twistd, its supervisor, two workers
        figures = run.workersMeasured(server, 2)
    finally:
        server.stop()
    assert figures["one_core_per_second"] > 0
    assert figures["cpu_us_per_op"] > 0
    # Both workers took handshakes (the kernel spreads connections by their addresses):
    # neither did all of them.
    assert 0.5 <= figures["busiest_share"] < 1.0
    assert figures["others_us_per_op"] >= 0


def _workers(one: list[float], two: list[tuple[float, float]]) -> dict[str, Any]:
    return {
        "workers: full ecdsa TLS1.3": {
            "1 worker": [{"cpu_us_per_op": c} for c in one],
            "2 workers": [{"cpu_us_per_op": c, "busiest_share": s} for c, s in two],
        }
    }


def test_projection_is_the_busiest_workers_limit() -> None:
    """
    One core each: the busiest worker saturates first, so two workers reach
    (CPU per handshake of one) / (share of the busiest x its CPU per handshake).
    """
    report = loadBenchScript("report")
    even = report.targets(_workers([500.0] * 3, [(500.0, 0.5)] * 3))
    assert "2.00× (target ≥ 1.8×) | yes" in tableRow(even, "two workers vs one")
    uneven = report.targets(_workers([500.0, 480.0, 520.0], [(520.0, 0.6), (520.0, 0.6), (520.0, 0.6)]))
    # run by run: 500 / (0.6 x 520) = 1.60, 480 / 312 = 1.54, 520 / 312 = 1.67; the median
    assert "1.60× (target ≥ 1.8×) | **no**" in tableRow(uneven, "two workers vs one")
    missing = report.targets({})
    assert "not measured" in tableRow(missing, "two workers vs one")
