"""Collecting what securesock logs during one test (Twisted's global log publisher)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.logger import LogLevel, formatEvent, globalLogPublisher


class LogLines:
    """The formatted events logged while the fixture is active, with their level."""

    def __init__(self) -> None:
        self.events: list[tuple[LogLevel, str, str]] = []  # (level, namespace, text)

    def __call__(self, event: dict[str, Any]) -> None:
        self.events.append(
            (event.get("log_level", LogLevel.info), event.get("log_namespace", ""), formatEvent(event))
        )

    def matching(self, needle: str, *, level: LogLevel | None = None) -> list[str]:
        return [text for lvl, _, text in self.events if needle in text and (level is None or lvl is level)]

    def about(self, port: int) -> list[str]:
        """Lines (above debug) naming a client by its port: 127.0.0.1:PORT."""
        pattern = re.compile(rf"127\.0\.0\.1\]?:{port}(?!\d)")
        return [text for lvl, _, text in self.events if lvl is not LogLevel.debug and pattern.search(text)]


@pytest.fixture
def logLines() -> Iterator[LogLines]:
    lines = LogLines()
    globalLogPublisher.addObserver(lines)
    try:
        yield lines
    finally:
        globalLogPublisher.removeObserver(lines)
