"""
Twisted plugins registering securesock's C{securesock:} prefix for servers and
clients, so any Twisted program takes securesock strings:

    twistd web --listen "securesock:8443:certificate=site.pem"

Only C{securesock} is registered: Twisted owns C{ssl} (built in) and C{tls}
(its own plugin).  securesock itself is imported when a string is parsed, not
when plugins are scanned.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import (
    IStreamClientEndpointStringParserWithReactor,
    IStreamServerEndpointStringParser,
)
from twisted.plugin import IPlugin
from zope.interface import implementer


@implementer(IPlugin, IStreamServerEndpointStringParser)
class SecuresockServerParser:
    prefix = "securesock"

    def parseStreamServer(self, reactor: Any, *args: str, **kwargs: str) -> Any:
        from securesock import serverFromArguments

        return serverFromArguments(reactor, self.prefix, args, kwargs)


@implementer(IPlugin, IStreamClientEndpointStringParserWithReactor)
class SecuresockClientParser:
    prefix = "securesock"

    def parseStreamClient(self, reactor: Any, *args: str, **kwargs: str) -> Any:
        from securesock import clientFromArguments

        return clientFromArguments(reactor, self.prefix, args, kwargs)


securesockServerParser = SecuresockServerParser()
securesockClientParser = SecuresockClientParser()
