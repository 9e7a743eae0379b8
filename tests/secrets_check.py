"""
A pytest plugin (loaded by tests/conftest.py): nothing logged and no error
raised during the whole test session may contain key material or a test
passphrase.

From the moment it is loaded it keeps the text of every Twisted log event
(securesock logs through Twisted), every Python logging record, every
warning, the message (and value) of every securesock error created, and
the output of every child process whose output a test reads through
C{communicate} (C{subprocess.run(capture_output=True)}: the C{securesock}
command, openssl, curl...).  When the session ends it adds the log files
child processes wrote under pytest's temporary directory (C{*.log},
C{*.out}: twistd's log, openssl s_server's), reads the private keys the
tests wrote there (PEM and PKCS#12, opened with the test passphrase), and
fails the session if any collected text holds a window of a key's bytes
(base64 PEM body, DER hex, private numbers) or of a passphrase.
Collecting is a string per event; scanning happens once, at the end.

One exception: a whole PEM C{PRIVATE KEY} block on a child's standard
output is a key exported on purpose (C{securesock store export --key}), not
a leak; it is cut out of that output before scanning.  Anywhere else, and
any partial key, counts.
"""

from __future__ import annotations

import logging
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from twisted.logger import formatEvent, globalLogPublisher

from securesock import _cli, _errors
from securesock.dialects import FramingError

from .leaks import _PEM_KEY, LeakScanner

# The test passphrases (tests/conftest.py); more can be added by tests.
PASSPHRASES: list[bytes] = [b"correct horse battery staple"]


class Collected:
    """The texts gathered during the session, with where each came from."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []  # (origin, text)

    def twistedEvent(self, event: dict[str, Any]) -> None:
        try:
            text = formatEvent(event)
            failure = event.get("log_failure")
            if failure is not None:
                text += "\n" + failure.getTraceback()
        except Exception as e:  # a broken event must not break the session
            text = f"(unformattable event: {e!r})"
        self.texts.append(("Twisted log", text))

    def error(self, kind: str, message: str) -> None:
        self.texts.append((kind, message))

    def output(self, args: Any, stdout: Any, stderr: Any) -> None:
        """What a child process printed (C{communicate}'s result)."""
        name = Path(str(args[0] if isinstance(args, (list, tuple)) and args else args)).name
        for stream, data in (("stdout", stdout), ("stderr", stderr)):
            if not data:
                continue
            text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
            if stream == "stdout":
                text = _PEM_KEY_TEXT.sub("(a whole PEM private key: an export)", text)
            self.texts.append((f"{name} {stream}", text))


class _Handler(logging.Handler):
    def __init__(self, collected: Collected) -> None:
        super().__init__(logging.DEBUG)
        self._collected = collected

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
        except Exception as e:
            text = f"(unformattable record: {e!r})"
        self._collected.texts.append((f"Python log {record.name}", text))


COLLECTED = Collected()


_PEM_KEY_TEXT = re.compile(_PEM_KEY.pattern.decode(), re.DOTALL)
# Where child processes' logs land (tests/test_tap.py, tests/peers.Background).
LOG_SUFFIXES = (".log", ".out")
_MAX_LOG = 8 << 20


def _recordErrors() -> None:
    """Keep the message of every securesock error created (each class patched once)."""
    classes = (
        _errors.DescriptionError,
        _errors.TLSHandshakeError,
        _errors.StartTLSError,
        _cli.CommandError,
        FramingError,
    )
    for cls in classes:
        original = cls.__init__
        if getattr(original, "_secretsCheck", False):
            continue

        def init(self: BaseException, *args: Any, _original: Any = original, **kwargs: Any) -> None:
            _original(self, *args, **kwargs)
            value = getattr(self, "value", None)
            shown = " ".join(str(a) for a in self.args) + (f" (value {value})" if value else "")
            COLLECTED.error(type(self).__name__, shown)

        init._secretsCheck = True  # type: ignore[attr-defined]
        cls.__init__ = init  # type: ignore[method-assign]


def _recordOutput() -> None:
    """Keep what child processes print when a test reads it (subprocess.run uses communicate)."""
    original = subprocess.Popen.communicate
    if getattr(original, "_secretsCheck", False):
        return

    def communicate(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> Any:
        stdout, stderr = original(self, *args, **kwargs)
        COLLECTED.output(self.args, stdout, stderr)
        return stdout, stderr

    communicate._secretsCheck = True  # type: ignore[attr-defined]
    subprocess.Popen.communicate = communicate  # type: ignore[method-assign]


def pytest_configure(config: pytest.Config) -> None:
    globalLogPublisher.addObserver(COLLECTED.twistedEvent)
    root = logging.getLogger()
    root.addHandler(_Handler(COLLECTED))
    if root.level > logging.DEBUG or root.level == logging.NOTSET:
        root.setLevel(logging.DEBUG)
    _recordErrors()
    _recordOutput()


def pytest_warning_recorded(warning_message: Any, when: str, nodeid: str, location: Any) -> None:
    COLLECTED.texts.append(("warning", str(warning_message.message)))


def logFiles(basetemp: Path, limit: int = 20000) -> list[tuple[str, str]]:
    """The log files child processes wrote under the session's temporary directory."""
    found = []
    for count, path in enumerate(basetemp.rglob("*")):
        if count >= limit:
            break
        if path.suffix in LOG_SUFFIXES and path.is_file() and not path.is_symlink():
            try:
                if path.stat().st_size <= _MAX_LOG:
                    text = path.read_bytes().decode("utf-8", "replace")
                    found.append((f"log file {path.relative_to(basetemp)}", text))
            except OSError:
                continue
    return found


def scan(basetemp: Path | None) -> tuple[LeakScanner, list[str], int]:
    """The scanner built from the session's keys and passphrases, what leaked, and how many texts were read."""
    scanner = LeakScanner()
    for passphrase in PASSPHRASES:
        scanner.addPassphrase(passphrase)
    if basetemp is not None and basetemp.is_dir():
        scanner.addDirectory(basetemp, PASSPHRASES)
    files = logFiles(basetemp) if basetemp is not None and basetemp.is_dir() else []
    leaks = []
    for origin, text in COLLECTED.texts + files:
        for what in scanner.find(text):
            leaks.append(f"{origin}: {what} appears in a text starting {text[:60]!r}")
    return scanner, leaks, len(COLLECTED.texts) + len(files)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    factory = getattr(session.config, "_tmp_path_factory", None)
    basetemp = None
    if factory is not None:
        try:
            basetemp = factory.getbasetemp()
        except Exception:
            basetemp = None
    scanner, leaks, texts = scan(basetemp)
    session.config.stash[_RESULT] = (texts, scanner.keys, leaks)
    if leaks:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    result = config.stash.get(_RESULT, None)
    if result is None:
        return
    texts, keys, leaks = result
    if leaks:
        terminalreporter.section("secrets check: FAILED", red=True)
        for leak in leaks[:50]:
            terminalreporter.line(leak)
        terminalreporter.line(
            f"{len(leaks)} leak(s) of key material or passphrases in logs or error messages"
        )
    else:
        terminalreporter.write_line(
            f"secrets check: {texts} log lines, warnings, error messages, child outputs and log files, "
            f"{keys} test keys: no key material or passphrase"
        )


_RESULT = pytest.StashKey[tuple[int, int, list[str]]]()
