"""securesock._sessioninfo: what a peer sent, made safe to log."""

from __future__ import annotations

import ssl

import pytest
import pytest_twisted
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThread
from zope.interface import implementer

from securesock import TLSDetails, TLSHandshakeError
from securesock._sessioninfo import printableName

from . import peers, rawclients
from .conftest import PKI
from .peers import listen


@pytest.mark.parametrize(
    "name, shown",
    [
        (b"www.example.com", "www.example.com"),
        (b"evil\nforged line", "evil\\x0aforged\\x20line"),
        (b"tab\there\r", "tab\\x09here\\x0d"),
        (b"back\\slash", "back\\x5cslash"),  # so that \\x0a cannot be written by the client itself
        ("b\u00fccher.example".encode(), "b\\xc3\\xbccher.example"),
        (b"\x1b[31mred", "\\x1b[31mred"),
    ],
)
def test_a_name_from_a_peer_is_printable_ascii_without_spaces(name: bytes, shown: str) -> None:
    assert printableName(name) == shown


@pytest_twisted.ensureDeferred
async def test_details_are_refused_before_the_handshake_and_given_after_it(pki: PKI) -> None:
    """
    A server protocol's connectionMade runs before the handshake (as in
    Twisted): TLSDetails says so there instead of reporting OpenSSL's
    placeholders (the highest version enabled, no client certificate).
    """
    seen: list[object] = []

    @implementer(IHandshakeListener)
    class Reporter(Protocol):
        def connectionMade(self) -> None:
            try:
                seen.append(TLSDetails.fromConnection(self.transport.getHandle()))  # type: ignore[union-attr]
            except TLSHandshakeError as e:
                seen.append(str(e))

        def handshakeCompleted(self) -> None:
            details = TLSDetails.fromConnection(self.transport.getHandle())  # type: ignore[union-attr]
            assert TLSDetails.fromConnection(self.transport) == details  # the transport itself will do
            seen.append(details)
            self.transport.write(f"{details.version}\n".encode())  # type: ignore[union-attr]
            self.transport.loseConnection()  # type: ignore[union-attr]

    port = await listen(
        f"tls:0:interface=127.0.0.1:certificate={pki.server_pem}:protocols=TLS1_2+TLS1_3"
        f":verifyClient=optional:caCerts={pki.ca_pem}",
        Factory.forProtocol(Reporter),
    )
    try:

        def client() -> bytes:
            context = ssl.create_default_context(cafile=pki.ca_pem)
            context.maximum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(pki.client_pem)
            with rawclients.connect("127.0.0.1", port.getHost().port) as raw:
                with context.wrap_socket(raw, server_hostname="localhost") as tls:
                    return peers.readToEnd(tls, 10)

        assert await deferToThread(client) == b"TLSv1.2\n"
    finally:
        await port.stopListening()
    early, details = seen
    assert isinstance(early, str) and "the handshake has not completed" in early
    assert "handshakeCompleted()" in early and "IHandshakeListener" in early
    assert isinstance(details, TLSDetails)
    assert details.version == "TLSv1.2"
    assert details.peerCertificate is not None
    assert "test client" in details.peerCertificate.subject.rfc4514_string()


def test_details_of_something_that_is_no_tls_connection_name_what_to_pass() -> None:
    with pytest.raises(
        TypeError,
        match=r"a TLS transport or its pyOpenSSL connection \(transport.getHandle\(\)\), not object",
    ):
        TLSDetails.fromConnection(object())
