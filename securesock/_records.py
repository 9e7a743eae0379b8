"""
Counting whole TLS records in a byte stream, without decrypting anything.

Every TLS record starts with a five-byte header whose last two bytes are the
length of what follows, in every version and before and after encryption.
Knowing how many whole records the peer has sent lets the TLS layer call
C{SSL_read} once per record instead of once more to hear "nothing left"
(an exception, in pyOpenSSL) after each chunk of data.
"""

from __future__ import annotations

__all__ = ["RecordCounter", "UNKNOWN"]

HEADER = 5


UNKNOWN = -1


class RecordCounter:
    """
    Counts the records completed by each chunk of a stream fed in order.
    C{unread} is for the reader: whole records fed and not yet read (the
    reader takes them off), or L{UNKNOWN} until the reader sets a count.
    """

    __slots__ = ("_need", "_head", "unread")

    def __init__(self) -> None:
        self._need = 0  # bytes missing from the record under way (0: at a header)
        self._head = b""  # the start of a header cut by a chunk's end
        self.unread = UNKNOWN

    @property
    def atBoundary(self) -> bool:
        """Whether what was fed ends where a record ends (no record under way)."""
        return not self._need and not self._head

    def feed(self, data: bytes | memoryview) -> int:
        """How many records end within C{data}; they are added to C{unread} when it is known."""
        complete = self._count(data)
        if self.unread >= 0:
            self.unread += complete
        return complete

    def _count(self, data: bytes | memoryview) -> int:
        size = len(data)
        complete = 0
        offset = 0
        if self._need:
            if self._need > size:
                self._need -= size
                return 0
            offset = self._need
            self._need = 0
            complete = 1
        if self._head:
            data = self._head + data[offset:]
            size = len(data)
            offset = 0
            self._head = b""
        while True:
            if offset + HEADER > size:
                self._head = bytes(data[offset:])  # not a view: the caller's buffer is reused
                return complete
            end = offset + HEADER + ((data[offset + 3] << 8) | data[offset + 4])
            if end > size:
                self._need = end - size
                return complete
            complete += 1
            offset = end
