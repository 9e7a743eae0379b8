"""
securesock/_handshake.py re-implements three private methods of Twisted's
TLSMemoryBIOProtocol (makeConnection, _write, _flushSendBIO) and replaces
BufferingTLSTransport's write aggregator; it also writes to a TCP
connection's socket itself when the connection's buffer is empty, reading
attributes of Twisted's FileDescriptor (securesock/_sendnow.py, also used
by the relay).  A Twisted that changes any of
them must fail here, loudly, rather than be silently overridden.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import textwrap
from importlib.metadata import version
from typing import Any

from twisted.internet import _newtls, abstract, tcp, unix
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import optionsForClientTLS
from twisted.internet.testing import StringTransport
from twisted.protocols import tls
from twisted.python.failure import Failure
from zope.interface import directlyProvidedBy, providedBy

from securesock._handshake import TLSFactory

# What _handshake.py was checked against: digests of the code (comments and
# docstrings left out), one set per Twisted release whose code differs.
REVIEWED = {  # Twisted 26.10.0
    "TLSMemoryBIOProtocol.makeConnection": {
        "7c2ef89c425dbca2f06745d8a25a111d2c693134aa26ad24fdb5ae1c7f941d76"
    },
    "TLSMemoryBIOProtocol._write": {"751280798bbc1970f9f4ab15ea48eba84af26a6185cb0086bb4378e98e3ba1a8"},
    "TLSMemoryBIOProtocol._flushSendBIO": {
        "3f9d20cd46a75f7837b98ab56cfc6640f69c9c8f2e2b7e2647cfca279f8da8fe"
    },
    "BufferingTLSTransport": {"59e8ecd4376ccac8b24540f922c675630c911371751c072b5df40890100e329f"},
    "_AggregateSmallWrites": {"84da4b9579da59d61197bfae04eb24d7f400c8095812a0bf41598f167d5935b5"},
    "FileDescriptor.write": {"6be1610913d28b12448eba7f0f75b845121cff446fa3cc9b1cc56ba7fbd84be6"},
    "FileDescriptor.doWrite": {"59d5e53f857a62d12e100c312f5f86ee219572d9dae77b3777a1848409ec1a88"},
    "FileDescriptor.loseWriteConnection": {
        "9499052d662b2249b026b485398248b1d3fc6eb727637d6898d1f078bfced6a6"
    },
    "FileDescriptor.registerProducer": {"dc9d71aafd21119ab73794dea0f114bd3ef4f30b2b1919aa3dcc74ddf257bc80"},
    "tcp.Connection.abortConnection": {"bd29d600ba5cc1aad30d98b679fdfb7be306582bf553148076c555d1110103ea"},
    "tcp.Connection.writeSomeData": {"ccd168f06f979ebde461af1bdad97351be2e5428f71bcbe2115191c8b6806f2e"},
    "_newtls.startTLS": {"78b03a01fa4d141c9e8d0ddb939ae52d6f4b2c337d4146e5d6aacc6bb3a43dc7"},
    "unix._SendmsgMixin.sendFileDescriptor": {
        "ddc1c6e87113d58fff10df90508c9be77f81e3aeafb7f2d1eeb25014317eb99e"
    },
}

# Where securesock copies or leans on each.
USED_BY = {
    "TLSMemoryBIOProtocol.makeConnection": "_TLSProtocol._connectTLS (a copy, with one directlyProvides)",
    "TLSMemoryBIOProtocol._write": "_TLSProtocol._write (a copy, with 64 KiB per SSL_write)",
    "TLSMemoryBIOProtocol._flushSendBIO": "_TLSProtocol._flushSendBIO (a copy that empties the BIO)",
    "BufferingTLSTransport": "_TLSProtocol.__init__ (its _aggregator and write, replaced by _Writes)",
    "_AggregateSmallWrites": "_Writes (a copy that also holds writes during dataReceived)",
    "FileDescriptor.write": "_sendnow.sendsAtOnce (_tempDataBuffer: bytes queued, not yet sent)",
    "FileDescriptor.doWrite": "_sendnow.sendsAtOnce (dataBuffer and offset: what is being sent)",
    "FileDescriptor.loseWriteConnection": "_sendnow.sendsAtOnce (_writeDisconnecting / _writeDisconnected)",
    "FileDescriptor.registerProducer": "_sendnow.sendsAtOnce (producer, streamingProducer)",
    "tcp.Connection.abortConnection": "_sendnow.sendsAtOnce (_aborting)",
    "tcp.Connection.writeSomeData": "_sendnow.sendNow (socket.send, as writeSomeData does)",
    "_newtls.startTLS": "_sendnow.sendsAtOnce (TLS: a connection whose bytes go through TLS)",
    "unix._SendmsgMixin.sendFileDescriptor": "_sendnow.sendsAtOnce (_sendmsgQueue: descriptors to send)",
}


def _withoutDocstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    node.body = body[1:] or [ast.Pass()]
    return tree


def digest(code: Any) -> str:
    tree = ast.parse(textwrap.dedent(inspect.getsource(code)))
    return hashlib.sha256(ast.unparse(_withoutDocstrings(tree)).encode()).hexdigest()


def test_overridden_twisted_code_is_the_code_reviewed() -> None:
    found = {
        "TLSMemoryBIOProtocol.makeConnection": digest(tls.TLSMemoryBIOProtocol.makeConnection),
        "TLSMemoryBIOProtocol._write": digest(tls.TLSMemoryBIOProtocol._write),
        "TLSMemoryBIOProtocol._flushSendBIO": digest(tls.TLSMemoryBIOProtocol._flushSendBIO),
        "BufferingTLSTransport": digest(tls.BufferingTLSTransport),
        "_AggregateSmallWrites": digest(tls._AggregateSmallWrites),
        "FileDescriptor.write": digest(abstract.FileDescriptor.write),
        "FileDescriptor.doWrite": digest(abstract.FileDescriptor.doWrite),
        "FileDescriptor.loseWriteConnection": digest(abstract.FileDescriptor.loseWriteConnection),
        "FileDescriptor.registerProducer": digest(abstract.FileDescriptor.registerProducer),
        "tcp.Connection.abortConnection": digest(tcp.Connection.abortConnection),
        "tcp.Connection.writeSomeData": digest(tcp.Connection.writeSomeData),
        "_newtls.startTLS": digest(_newtls.startTLS),
        "unix._SendmsgMixin.sendFileDescriptor": digest(unix._SendmsgMixin.sendFileDescriptor),
    }
    changed = {
        name: f"{value} (used by {USED_BY[name]})"
        for name, value in found.items()
        if value not in REVIEWED[name]
    }
    assert changed == {}, (
        f"Twisted {version('twisted')} changed code securesock/_handshake.py or _sendnow.py copies, "
        "replaces or reads: compare it with Twisted's, then add the new digests to REVIEWED"
    )


def _connected(factory: Any) -> tuple[Any, StringTransport]:
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


def test_connect_tls_leaves_what_twisted_make_connection_leaves() -> None:
    """
    The same attributes and directly provided interfaces as Twisted's own
    makeConnection, and the ClientHello sent: new state that a later Twisted
    sets up there shows here as a missing attribute.
    """
    creator = optionsForClientTLS("example.com")
    theirs, theirWire = _connected(tls.TLSMemoryBIOFactory(creator, True, Factory.forProtocol(Protocol)))
    ours, ourWire = _connected(TLSFactory(creator, True, Factory.forProtocol(Protocol)))
    try:
        assert set(vars(theirs)) <= set(vars(ours))
        assert list(directlyProvidedBy(ours)) == list(directlyProvidedBy(theirs)) != []
        assert list(ours.factory.protocols) == [ours]
        assert ours.wrappedProtocol.transport is ours
        assert ourWire.value()[:1] == theirWire.value()[:1] == b"\x16"  # a handshake record
    finally:
        for protocol in (theirs, ours):
            protocol.connectionLost(Failure(ConnectionDone()))


def test_interfaces_of_a_transport_with_declarations_of_its_own() -> None:
    """The per-class memory of _connectTLS does not hide what one transport declares itself."""
    from zope.interface import Interface, directlyProvides

    from securesock._handshake import _lastInterface

    class IExtra(Interface):
        pass

    plain, special = StringTransport(), StringTransport()
    directlyProvides(special, IExtra, *directlyProvidedBy(special))
    for transport in (plain, special, plain):
        declared = list(providedBy(transport))
        assert _lastInterface(transport) is declared[-1]


def test_writes_gather_small_ones_and_send_whole_records_at_once() -> None:
    from twisted.internet.task import Clock

    from securesock._handshake import _Writes

    sent: list[bytes] = []
    clock = Clock()
    writes = _Writes(sent.append, clock)
    writes.write(b"a")
    writes.write(b"b")
    assert sent == []  # gathered for the next reactor turn
    clock.advance(0)
    assert sent == [b"ab"]
    writes.write(b"c")
    writes.write(b"x" * 2**14)  # a whole record: at once, after what was gathered before it
    assert sent == [b"ab", b"c" + b"x" * 2**14]
    clock.advance(0)  # the timed call scheduled for b"c" finds nothing left
    assert len(sent) == 2
    writes.holding = True  # inside dataReceived: small writes wait for its end
    writes.write(b"d")
    clock.advance(0)
    assert len(sent) == 2
    writes.holding = False
    writes.flush()
    assert sent[-1] == b"d"
