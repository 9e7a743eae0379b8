"""
LDAP (RFC 4511) StartTLS extended operation (OID 1.3.6.1.4.1.1466.20037).

Messages are BER: one LDAPMessage SEQUENCE per message.  Server: answers
the StartTLS request with success and every other operation with
C{confidentialityRequired} (13) until then.  Client: sends the request
(message ID 1), upgrades on resultCode 0, reports any other result (and a
Notice of Disconnection) in words.
"""

from __future__ import annotations

from . import FramingError, Step, noGreeting, quoted

__all__ = ["Server", "Client", "STARTTLS_OID", "parseMessage", "startTLSRequest", "tlv"]

STARTTLS_OID = b"1.3.6.1.4.1.1466.20037"
_LIMIT = 65536
_SEQUENCE, _INTEGER, _ENUMERATED, _OCTETS = 0x30, 0x02, 0x0A, 0x04
_EXTENDED_REQUEST, _EXTENDED_RESPONSE = 0x77, 0x78
_UNBIND, _ABANDON = 0x42, 0x50
# Request tag -> response tag: Bind, Search, Modify, Add, Delete, ModifyDN, Compare, Extended.
_RESPONSES = {0x60: 0x61, 0x63: 0x65, 0x66: 0x67, 0x68: 0x69, 0x4A: 0x6B, 0x6C: 0x6D, 0x6E: 0x6F, 0x77: 0x78}
_RESULTS = {
    0: "success",
    1: "operationsError",
    2: "protocolError",
    12: "unavailableCriticalExtension",
    13: "confidentialityRequired",
    52: "unavailable",
    53: "unwillingToPerform",
}


def _length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


def tlv(tag: int, value: bytes) -> bytes:
    """One BER element."""
    return bytes([tag]) + _length(len(value)) + value


def _integer(number: int) -> bytes:
    return number.to_bytes(number.bit_length() // 8 + 1, "big", signed=True)


def _header(buffer: bytes, offset: int) -> tuple[int, int, int] | None:
    """(tag, value offset, value length) of the element at C{offset}, None if incomplete."""
    if len(buffer) < offset + 2:
        return None
    tag, first = buffer[offset], buffer[offset + 1]
    if tag & 0x1F == 0x1F:
        raise FramingError("multi-byte BER tags are not used by LDAP")
    if first < 0x80:
        return tag, offset + 2, first
    count = first & 0x7F
    if count == 0 or count > 4:
        raise FramingError("indefinite or oversized BER length")
    if len(buffer) < offset + 2 + count:
        return None
    return tag, offset + 2 + count, int.from_bytes(buffer[offset + 2 : offset + 2 + count], "big")


def ber(buffer: bytes) -> int:
    """BER framing: one LDAPMessage SEQUENCE."""
    if buffer and buffer[0] != _SEQUENCE:
        raise FramingError(f"{quoted(buffer[:8])} is not an LDAP message")
    header = _header(buffer, 0)
    if header is None:
        return 0
    _, start, size = header
    if start + size > _LIMIT:
        raise FramingError(f"a message of {start + size} bytes before StartTLS")
    return start + size if len(buffer) >= start + size else 0


def elements(data: bytes) -> list[tuple[int, bytes]]:
    """The elements of a constructed value."""
    found, offset = [], 0
    while offset < len(data):
        header = _header(data, offset)
        if header is None or header[1] + header[2] > len(data):
            raise FramingError("a truncated BER element")
        tag, start, size = header
        found.append((tag, data[start : start + size]))
        offset = start + size
    return found


def parseMessage(data: bytes) -> tuple[int, int, bytes]:
    """(message ID, operation tag, operation value) of an LDAPMessage."""
    parts = elements(elements(data)[0][1])
    if len(parts) < 2 or parts[0][0] != _INTEGER:
        raise FramingError("an LDAPMessage without a message ID and an operation")
    return int.from_bytes(parts[0][1], "big", signed=True), parts[1][0], parts[1][1]


def result(messageID: int, tag: int, code: int, text: bytes, extra: bytes = b"") -> bytes:
    """An LDAPResult-shaped response."""
    body = tlv(_ENUMERATED, bytes([code])) + tlv(_OCTETS, b"") + tlv(_OCTETS, text) + extra
    return tlv(_SEQUENCE, tlv(_INTEGER, _integer(messageID)) + tlv(tag, body))


def startTLSRequest(messageID: int = 1) -> bytes:
    return tlv(
        _SEQUENCE, tlv(_INTEGER, _integer(messageID)) + tlv(_EXTENDED_REQUEST, tlv(0x80, STARTTLS_OID))
    )


class Server:
    name = "ldap"
    upgradeCommand = "StartTLS"
    framing = staticmethod(ber)

    def __init__(self, serverName: str) -> None:
        pass

    def start(self) -> Step:
        return Step()

    def received(self, message: bytes) -> Step:
        try:
            messageID, operation, value = parseMessage(message)
            name = dict(elements(value)).get(0x80) if operation == _EXTENDED_REQUEST else None
        except FramingError as e:
            return Step(close=f"ldap: {e}")
        if operation == _EXTENDED_REQUEST and name == STARTTLS_OID:
            return Step(result(messageID, _EXTENDED_RESPONSE, 0, b"", tlv(0x8A, STARTTLS_OID)), upgrade=True)
        if operation == _UNBIND:
            return Step(close="the client unbound before StartTLS")
        if operation == _ABANDON:
            return Step()
        response = _RESPONSES.get(operation)
        if response is None:
            return Step(close=f"ldap: unknown operation 0x{operation:02x} before StartTLS")
        return Step(result(messageID, response, 13, b"Confidentiality required: issue StartTLS first"))

    withoutGreeting = staticmethod(noGreeting)


class Client:
    name = "ldap"
    upgradeCommand = "StartTLS"
    framing = staticmethod(ber)

    def __init__(self, serverName: str, localName: str) -> None:
        pass

    def start(self) -> Step:
        return Step(startTLSRequest(1))

    def received(self, message: bytes) -> Step:
        try:
            messageID, operation, value = parseMessage(message)
            parts = elements(value)
        except FramingError as e:
            return Step(close=f"the server does not speak LDAP: {e}")
        if (
            operation != _EXTENDED_RESPONSE
            or messageID not in (0, 1)
            or not parts
            or parts[0][0] != _ENUMERATED
        ):
            return Step(close=f"the server sent operation 0x{operation:02x} instead of a StartTLS response")
        code = int.from_bytes(parts[0][1], "big")
        text = parts[2][1] if len(parts) > 2 else b""
        if messageID == 0:
            return Step(close=f"the server disconnected (Notice of Disconnection): {quoted(text)}")
        if code != 0:
            return Step(
                close=f"the server refused StartTLS: resultCode {code} ({_RESULTS.get(code, 'other')}) {quoted(text)}"
            )
        return Step(upgrade=True)
