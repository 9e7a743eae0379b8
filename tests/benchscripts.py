"""The scripts of bench/ (not a package), loaded as modules for the tests that check them."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

from .conftest import requireTool

BENCH = Path(__file__).resolve().parent.parent / "bench"


def loadBenchScript(name: str) -> ModuleType:
    """bench/NAME.py as a module (its own imports of bench/ siblings included)."""
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def requirePinnedCores() -> None:
    """Skip (or fail, where peers are required) unless bench/run.py can pin servers and loads apart."""
    requireTool("taskset")
    if (os.cpu_count() or 1) < 2:
        pytest.skip("bench/run.py pins the server and the load to two cores")


def tableRow(lines: list[str], start: str) -> str:
    """The Markdown table row of bench/report.py's output whose first cell starts with C{start}."""
    return next(line for line in lines if line.startswith(f"| {start}"))
