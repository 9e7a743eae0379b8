"""
XMPP (RFC 6120) STARTTLS: stream headers, features, C{<starttls/>},
C{<proceed/>}.

XML is read one tag at a time (comments, DTDs and processing instructions
other than the XML declaration are forbidden in XMPP streams, RFC 6120
11.1, so a tag reader is enough before TLS).  Server: answers the client's
stream header with its own and features requiring STARTTLS; anything but
C{<starttls/>} gets a C{policy-violation} stream error.  Client: opens the
stream, requires C{<starttls/>} in the features, asks, waits for
C{<proceed/>}.  After TLS the application opens a new stream, as RFC 6120
5.4.3.3 requires.
"""

from __future__ import annotations

import re
import secrets
from typing import NamedTuple
from xml.sax.saxutils import quoteattr

from . import FramingError, Step, noGreeting, quoted

__all__ = ["Server", "Client", "TagFramer", "tags"]

TLS_NS = "urn:ietf:params:xml:ns:xmpp-tls"
_STREAMS = "http://etherx.jabber.org/streams"
_LIMIT = 16384


_SPECIAL = re.compile(rb"[\"'>]")


class TagFramer:
    """
    Tag framing: text before a tag belongs to it; a tag ends at a '>' outside
    quotes.  One per connection: it resumes where its last call stopped, so
    a tag sent a few bytes at a time costs time linear in its length rather
    than a rescan of the whole tag per chunk (which let one client keep the
    reactor busy for seconds).  C-level searches jump between quotes and '>'.
    """

    def __init__(self) -> None:
        self._restart()

    def _restart(self) -> None:
        self._seen = b""  # the buffer of the last call, all of it scanned
        self._start = -1  # where the tag begins, once its '<' was seen
        self._position = 0
        self._quote = b""

    def __call__(self, buffer: bytes) -> int:
        if not buffer.startswith(self._seen):  # not the last buffer plus more: start afresh
            self._restart()
        self._seen = buffer
        if self._start < 0:
            self._start = buffer.find(b"<", self._position)
            if self._start < 0:
                self._position = len(buffer)
                if len(buffer) > _LIMIT:
                    raise FramingError(f"{len(buffer)} bytes of text and no tag")
                return 0
            self._position = self._start + 1
        end = min(len(buffer), _LIMIT)
        position, quote = self._position, self._quote
        while position < end:
            if quote:
                closing = buffer.find(quote, position, end)
                if closing < 0:
                    position = end
                    break
                position, quote = closing + 1, b""
                continue
            found = _SPECIAL.search(buffer, position, end)
            if found is None:
                position = end
                break
            if buffer[found.start()] == 0x3E:  # '>'
                self._restart()  # the caller takes the tag; what follows is a new buffer
                return found.start() + 1
            position, quote = found.start() + 1, buffer[found.start() : found.end()]
        self._position, self._quote = position, quote
        if len(buffer) >= _LIMIT:
            raise FramingError(f"a tag longer than {_LIMIT} bytes ({quoted(buffer[self._start :], 40)})")
        return 0


def tags(buffer: bytes) -> int:
    """Tag framing of one whole buffer (a fresh L{TagFramer})."""
    return TagFramer()(buffer)


class Tag(NamedTuple):
    name: str  # as written, with its prefix
    closing: bool  # </name>
    empty: bool  # <name/>
    attributes: dict[str, str]

    @property
    def local(self) -> str:
        return self.name.rpartition(":")[2]


_TAG = re.compile(r"<\s*(/?)\s*([^\s/>]+)(.*?)(/?)\s*>\Z", re.DOTALL)
_ATTRIBUTE = re.compile(r"""([^\s=]+)\s*=\s*(?:'([^']*)'|"([^"]*)")""")


def parseTag(message: bytes) -> Tag | None:
    """A tag, or None for the XML declaration; FramingError for anything else."""
    text = message[message.index(b"<") :].decode("utf-8", "replace")
    if text.startswith("<?xml"):
        return None
    if text.startswith(("<!", "<?")):
        raise FramingError(
            f"{quoted(message.strip())}: comments, DTDs and processing instructions are not allowed in XMPP"
        )
    match = _TAG.match(text)
    if match is None:
        raise FramingError(f"{quoted(message.strip())} is not an XML tag")
    attributes = {
        m.group(1): m.group(2) if m.group(2) is not None else m.group(3)
        for m in _ATTRIBUTE.finditer(match.group(3))
    }
    return Tag(match.group(2), bool(match.group(1)), bool(match.group(4)), attributes)


def _isStream(tag: Tag) -> bool:
    return tag.local == "stream" and not tag.closing and not tag.empty


_POLICY = (
    b"<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
    b"<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>STARTTLS is required</text>"
    b"</stream:error></stream:stream>"
)


class Server:
    name = "xmpp"
    upgradeCommand = "<starttls/>"

    def __init__(self, serverName: str) -> None:
        self.framing = TagFramer()
        self._name = serverName
        self._state = self._header

    def start(self) -> Step:
        return Step()

    def received(self, message: bytes) -> Step:
        try:
            tag = parseTag(message)
        except FramingError as e:
            return Step(_POLICY, close=f"xmpp: {e}")
        return Step() if tag is None else self._state(tag)

    def _header(self, tag: Tag) -> Step:
        namespace = tag.attributes.get("xmlns", "jabber:client")
        # Answer as the domain the client asked for (RFC 6120 4.7.2).
        domain = tag.attributes.get("to", self._name)
        header = (
            f"<?xml version='1.0'?><stream:stream xmlns={quoteattr(namespace)} "
            f"xmlns:stream='{_STREAMS}' id='{secrets.token_hex(8)}' from={quoteattr(domain)} "
            "version='1.0'>"
        ).encode()
        if not _isStream(tag):
            return Step(header + _POLICY, close=f"the client sent <{tag.name}> instead of a stream header")
        self._state = self._features
        return Step(
            header
            + f"<stream:features><starttls xmlns='{TLS_NS}'><required/></starttls></stream:features>".encode()
        )

    def _features(self, tag: Tag) -> Step:
        if tag.local == "starttls" and tag.attributes.get("xmlns") == TLS_NS and not tag.closing:
            if tag.empty:
                return Step(f"<proceed xmlns='{TLS_NS}'/>".encode(), upgrade=True)
            self._state = self._starttlsEnd
            return Step()
        if tag.local == "stream" and tag.closing:
            return Step(b"</stream:stream>", close="the client closed the stream before STARTTLS")
        return Step(_POLICY, close=f"the client sent <{tag.name}> before STARTTLS")

    def _starttlsEnd(self, tag: Tag) -> Step:
        if tag.local == "starttls" and tag.closing:
            return Step(f"<proceed xmlns='{TLS_NS}'/>".encode(), upgrade=True)
        return Step(_POLICY, close=f"the client sent <{tag.name}> inside <starttls>")

    withoutGreeting = staticmethod(noGreeting)


class Client:
    name = "xmpp"
    upgradeCommand = "<starttls/>"

    def __init__(self, serverName: str, localName: str) -> None:
        self.framing = TagFramer()
        self._domain = serverName
        self._state = self._header
        self._offered = False

    def start(self) -> Step:
        return Step(
            (
                f"<?xml version='1.0'?><stream:stream to={quoteattr(self._domain)} xmlns='jabber:client' "
                f"xmlns:stream='{_STREAMS}' version='1.0'>"
            ).encode()
        )

    def received(self, message: bytes) -> Step:
        try:
            tag = parseTag(message)
        except FramingError as e:
            return Step(close=f"the server does not speak XMPP: {e}")
        if tag is None:
            return Step()
        if tag.local == "error" and tag.name.startswith("stream"):
            return Step(close=f"the server sent a stream error: {quoted(message.strip())}")
        return self._state(tag)

    def _header(self, tag: Tag) -> Step:
        if not _isStream(tag):
            return Step(close=f"the server sent <{tag.name}> instead of a stream header")
        self._state = self._opened
        return Step()

    def _opened(self, tag: Tag) -> Step:
        if tag.local != "features" or tag.closing:
            return Step(close=f"the server sent <{tag.name}> instead of its stream features")
        if tag.empty:
            return self._decide()
        self._state = self._features
        return Step()

    def _features(self, tag: Tag) -> Step:
        if tag.local == "starttls" and tag.attributes.get("xmlns") == TLS_NS:
            self._offered = True
        if tag.local == "features" and tag.closing:
            return self._decide()
        return Step()

    def _decide(self) -> Step:
        if not self._offered:
            return Step(
                close="the server does not offer STARTTLS in its stream features; securesock never falls back to plaintext"
            )
        self._state = self._proceed
        return Step(f"<starttls xmlns='{TLS_NS}'/>".encode())

    def _proceed(self, tag: Tag) -> Step:
        if tag.local == "proceed" and not tag.closing:
            if tag.empty:
                return Step(upgrade=True)
            self._state = self._proceedEnd
            return Step()
        return Step(close=f"the server refused STARTTLS: <{tag.name}>")

    def _proceedEnd(self, tag: Tag) -> Step:
        if tag.local == "proceed" and tag.closing:
            return Step(upgrade=True)
        return Step(close=f"the server sent <{tag.name}> inside <proceed>")
