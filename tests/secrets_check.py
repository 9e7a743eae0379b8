"""
A pytest plugin (loaded by tests/conftest.py): nothing logged and no error
raised during the whole test session may contain key material or a test
passphrase.

From the moment it is loaded it keeps the text of every Twisted log event
(securesock logs through Twisted), every Python logging record, and the
message of every securesock error created.  When the session ends it reads
the private keys the tests wrote under pytest's temporary directory (PEM
and PKCS#12, opened with the test passphrase), and fails the session if any
collected text holds a window of a key's bytes (base64 PEM body, DER hex,
private numbers) or of a passphrase.  Collecting is a string per event;
scanning happens once, at the end.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from twisted.logger import formatEvent, globalLogPublisher

from securesock import _errors

from .leaks import LeakScanner

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


def _recordErrors() -> None:
    """Keep the message of every securesock error created (each class patched once)."""
    for cls in (_errors.DescriptionError, _errors.TLSHandshakeError, _errors.StartTLSError):
        original = cls.__init__
        if getattr(original, "_secretsCheck", False):
            continue

        def init(self: BaseException, *args: Any, _original: Any = original, **kwargs: Any) -> None:
            _original(self, *args, **kwargs)
            COLLECTED.error(type(self).__name__, " ".join(str(a) for a in self.args))

        init._secretsCheck = True  # type: ignore[attr-defined]
        cls.__init__ = init  # type: ignore[method-assign]


def pytest_configure(config: pytest.Config) -> None:
    globalLogPublisher.addObserver(COLLECTED.twistedEvent)
    root = logging.getLogger()
    root.addHandler(_Handler(COLLECTED))
    if root.level > logging.DEBUG or root.level == logging.NOTSET:
        root.setLevel(logging.DEBUG)
    _recordErrors()


def scan(basetemp: Path | None) -> tuple[LeakScanner, list[str]]:
    """The scanner built from the session's keys and passphrases, and what leaked."""
    scanner = LeakScanner()
    for passphrase in PASSPHRASES:
        scanner.addPassphrase(passphrase)
    if basetemp is not None and basetemp.is_dir():
        scanner.addDirectory(basetemp, PASSPHRASES)
    leaks = []
    for origin, text in COLLECTED.texts:
        for what in scanner.find(text):
            leaks.append(f"{origin}: {what} appears in a text starting {text[:60]!r}")
    return scanner, leaks


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    factory = getattr(session.config, "_tmp_path_factory", None)
    basetemp = None
    if factory is not None:
        try:
            basetemp = factory.getbasetemp()
        except Exception:
            basetemp = None
    scanner, leaks = scan(basetemp)
    session.config.stash[_RESULT] = (len(COLLECTED.texts), scanner.keys, leaks)
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
            f"secrets check: {texts} log lines and error messages, {keys} test keys: no key material or passphrase"
        )


_RESULT = pytest.StashKey[tuple[int, int, list[str]]]()
