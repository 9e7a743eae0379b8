"""
The ``twistd securesock`` command (a TLS terminator and originator).
securesock itself is imported only when the command runs.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin
from twisted.python.usage import Options
from zope.interface import implementer


@implementer(IPlugin, IServiceMaker)
class _SecuresockServiceMaker:
    tapname = "securesock"
    description = "TLS terminator/originator with securesock descriptions, or a TLS diagnostic responder."

    @property
    def options(self) -> type[Options]:
        from securesock._tap import Options as SecuresockOptions

        return SecuresockOptions

    def makeService(self, options: Any) -> Any:
        from securesock._tap import makeService

        return makeService(options)


securesockServiceMaker = _SecuresockServiceMaker()
