"""
Twisted plugins registering the C{starttls:} prefix for servers and clients,
so any Twisted program can listen or connect in plaintext and upgrade after
a protocol's STARTTLS exchange:

    twistd mail --smtp "starttls:587:certificate=mail.pem:dialect=smtp"

securesock itself is imported when a string is parsed, not when plugins are
scanned.
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
class StartTLSServerParser:
    prefix = "starttls"

    def parseStreamServer(self, reactor: Any, *args: str, **kwargs: str) -> Any:
        from securesock import serverFromArguments

        return serverFromArguments(reactor, self.prefix, args, kwargs)


@implementer(IPlugin, IStreamClientEndpointStringParserWithReactor)
class StartTLSClientParser:
    prefix = "starttls"

    def parseStreamClient(self, reactor: Any, *args: str, **kwargs: str) -> Any:
        from securesock import clientFromArguments

        return clientFromArguments(reactor, self.prefix, args, kwargs)


starttlsServerParser = StartTLSServerParser()
starttlsClientParser = StartTLSClientParser()
