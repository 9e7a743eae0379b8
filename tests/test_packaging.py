"""
Packaging: the wheel holds the package and its Twisted plugin files (and
never twisted/__init__.py, which would shadow Twisted), and the plugins are
found after a normal and after an editable install into fresh virtualenvs.

Built from a copy of the project (no build/ or egg-info in the work tree),
without build isolation: the test environment's setuptools does the build,
so this runs offline.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import securesock

PROJECT = Path(securesock.__file__).resolve().parents[1]

CHECK = """
import sys
from twisted.plugin import getPlugins
from twisted.internet.interfaces import (
    IStreamClientEndpointStringParserWithReactor, IStreamServerEndpointStringParser)
prefixes = [p.prefix for i in (IStreamServerEndpointStringParser,
                               IStreamClientEndpointStringParserWithReactor)
            for p in getPlugins(i)]
import twisted, twisted.plugins.securesock_endpoints as plugin, securesock
print(prefixes.count("securesock"))
print(plugin.__file__)
print(securesock.__file__)
print(twisted.__file__)
"""


def call(args: list[str], cwd: Path, timeout: float = 120) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, timeout=timeout, check=False)
    assert result.returncode == 0, (
        f"{' '.join(args)} failed ({result.returncode}):\n"
        f"{result.stdout.decode(errors='replace')}\n{result.stderr.decode(errors='replace')}"
    )
    return result.stdout.decode()


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of what a source checkout holds for building."""
    root = tmp_path_factory.mktemp("packaging") / "src"
    root.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "dropin.cache")
    for name in ("securesock", "twisted"):
        shutil.copytree(PROJECT / name, root / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE", "setup.cfg", "MANIFEST.in"):
        if (PROJECT / name).exists():
            shutil.copy(PROJECT / name, root / name)
    return root


def sourceModules(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in (root / "securesock").rglob("*.py")}


def test_wheel_contents(source: Path, tmp_path: Path) -> None:
    call(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            str(source),
            "-w",
            str(tmp_path),
        ],
        tmp_path,
    )
    (wheel,) = tmp_path.glob("securesock-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "securesock/__init__.py" in names
    assert "securesock/py.typed" in names
    assert "twisted/plugins/securesock_endpoints.py" in names
    # every module of the package, subpackages included
    assert sourceModules(source) <= names, sorted(sourceModules(source) - names)
    # every plugin file of the project
    plugins = {f"twisted/plugins/{p.name}" for p in (source / "twisted" / "plugins").glob("*.py")}
    assert plugins <= names
    # nothing that would shadow Twisted, nor caches, nor the tests
    assert "twisted/__init__.py" not in names
    assert "twisted/plugins/__init__.py" not in names
    assert not [n for n in names if n.endswith((".pyc", "dropin.cache")) or n.startswith("tests/")]


def makeVenv(where: Path) -> Path:
    """A virtualenv that sees the installed dependencies (Twisted, pip) but not securesock."""
    call([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(where)], where.parent)
    return where / "bin" / "python"


def test_install_into_virtualenv(source: Path, tmp_path: Path) -> None:
    python = makeVenv(tmp_path / "venv")
    call(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(source)],
        tmp_path,
    )
    count, plugin, package, twisted = call([str(python), "-c", CHECK], tmp_path).split()
    assert count == "2"  # the server and the client parser
    venv = str(tmp_path / "venv") + os.sep
    assert plugin.startswith(venv), plugin
    assert package.startswith(venv), package
    # Twisted's own package is still Twisted's, not a directory of ours
    assert not twisted.startswith(venv) and Path(twisted).parent.joinpath("internet").is_dir()


def test_editable_install(source: Path, tmp_path: Path) -> None:
    python = makeVenv(tmp_path / "venv")
    call(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", str(source)],
        tmp_path,
    )
    count, plugin, package, twisted = call([str(python), "-c", CHECK], tmp_path).split()
    assert count == "2"
    # found in the project's own twisted/plugins, so edits there take effect
    assert Path(plugin) == source / "twisted" / "plugins" / "securesock_endpoints.py"
    assert Path(package) == source / "securesock" / "__init__.py"
    assert Path(twisted).parent.joinpath("internet").is_dir()
