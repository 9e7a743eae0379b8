"""
bench/report.py's resumption targets: each resumption against a full
handshake that did the same work around it (TLS 1.2's alone, TLS 1.3's
serving a page), ratios taken run by run; and the table of a figure
measured on securesock alone.
"""

from __future__ import annotations

from typing import Any

from .benchscripts import loadBenchScript, tableRow

report = loadBenchScript("report")


def _runs(*values: float) -> list[dict[str, float]]:
    return [{"cpu_us_per_op": value} for value in values]


RESULTS: dict[str, Any] = {
    "full ecdsa TLS1.2": {"securesock": _runs(900, 900, 900), "twisted": _runs(1000, 1200, 1100)},
    # ssl: resumes nothing: its figure here is a full handshake, not the one compared
    "resumed ecdsa TLS1.2": {"securesock": _runs(400, 500, 600), "twisted": _runs(9000, 9000, 9000)},
    "full rsa TLS1.3": {"securesock": _runs(2000, 2000, 2000), "twisted": _runs(2000, 2000, 2000)},
    "full rsa TLS1.3 + page": {"securesock": _runs(2100, 2200, 2400)},
    "resumed rsa TLS1.3": {"securesock": _runs(1000, 1600, 1000), "twisted": _runs(2100, 2100, 2100)},
    "full ecdsa TLS1.3 + page": {"securesock": _runs(1200, 1200, 1200)},
    "resumed ecdsa TLS1.3": {"securesock": _runs(1000, 1000, 1000), "twisted": _runs(1300, 1300, 1300)},
}


def test_a_resumed_tls_1_2_handshake_is_compared_with_ssl_s_full_one_run_by_run() -> None:
    # run by run: 1000 / 400 = 2.50, 1200 / 500 = 2.40, 1100 / 600 = 1.83; the median
    row = tableRow(report.targets(RESULTS), "resumed TLS 1.2 (ours) vs full TLS 1.2 (ssl:), handshakes alone")
    assert "2.40× (target ≥ 2.0×) | yes" in row


def test_a_tls_1_3_resumption_is_compared_with_a_full_handshake_serving_the_same_page() -> None:
    lines = report.targets(RESULTS)
    # run by run: 2100 / 1000 = 2.10, 2200 / 1600 = 1.375, 2400 / 1000 = 2.40; the median
    # (against the full handshake without a page, it would be 2.00)
    assert "2.10× (target ≥ 1.5×) | yes" in tableRow(
        lines, "resumed vs full TLS 1.3, RSA-2048, each serving a page"
    )
    assert "| 1.20× | — |" in tableRow(lines, "resumed vs full TLS 1.3, ECDSA, each serving a page")
    without = {k: v for k, v in RESULTS.items() if not k.endswith("+ page")}
    assert "| not measured | — |" in tableRow(report.targets(without), "resumed vs full TLS 1.3, RSA-2048")


def test_a_figure_of_securesock_alone_is_no_target_against_ssl_and_has_its_own_table() -> None:
    targets = report.targets(RESULTS)
    assert not [line for line in targets if "+ page: handshake CPU vs ssl:" in line]
    assert tableRow(targets, "full rsa TLS1.3: handshake CPU vs ssl:")
    lines = report.table({"full rsa TLS1.3 + page": RESULTS["full rsa TLS1.3 + page"]})
    assert lines[2:4] == ["| metric | securesock |", "|---|---|"]
    assert (
        tableRow(lines, "server CPU µs / handshake") == "| server CPU µs / handshake | 2,200 (2,100–2,400) |"
    )
