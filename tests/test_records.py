"""securesock._records: whole TLS records counted in a stream cut anywhere."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from securesock._records import RecordCounter


def record(length: int, kind: int = 23) -> bytes:
    return bytes([kind, 3, 3, length >> 8, length & 0xFF]) + b"x" * length


def test_whole_records_in_one_chunk() -> None:
    counter = RecordCounter()
    assert counter.feed(record(100) + record(0) + record(16384 + 256)) == 3
    assert counter.feed(b"") == 0


def test_a_record_completed_by_later_chunks_counts_once_it_ends() -> None:
    counter = RecordCounter()
    stream = record(300) + record(5)
    assert counter.feed(stream[:2]) == 0  # inside the header
    assert counter.feed(stream[2:200]) == 0  # inside the body
    assert counter.feed(stream[200:305]) == 1  # its last byte
    assert counter.feed(stream[305:307]) == 0
    assert counter.feed(stream[307:]) == 1


@given(
    lengths=st.lists(st.integers(0, 18_000), min_size=1, max_size=12),
    cuts=st.lists(st.integers(0, 120_000), max_size=20),
)
def test_counts_match_record_ends_for_any_cuts(lengths: list[int], cuts: list[int]) -> None:
    stream = b"".join(record(n) for n in lengths)
    ends = []
    position = 0
    for n in lengths:
        position += 5 + n
        ends.append(position)
    points = sorted({min(c, len(stream)) for c in cuts} | {len(stream)})
    counter = RecordCounter()
    start = 0
    total = 0
    for point in points:
        got = counter.feed(stream[start:point])
        assert got == sum(1 for end in ends if start < end <= point) or (start == point and got == 0)
        assert counter.atBoundary == (point == 0 or point in ends)
        total += got
        start = point
    assert total == len(lengths)


def test_unread_records_are_counted_once_the_reader_knows_where_it_stands() -> None:
    from securesock._records import UNKNOWN

    counter = RecordCounter()
    assert counter.feed(record(10)) == 1 and counter.unread == UNKNOWN  # the handshake's: not counted
    counter.unread = 0  # the reader read until OpenSSL wanted more
    counter.feed(record(10) + record(20)[:7])
    assert counter.unread == 1
    counter.feed(record(20)[7:])
    assert counter.unread == 2


def test_views_of_a_reused_buffer_count_as_their_bytes() -> None:
    """
    The TLS layer is fed views of one read buffer that the next read
    overwrites (securesock._reads): a header cut by a chunk's end is kept
    as bytes, not as a view of that buffer.
    """
    stream = record(40) + record(70)
    buffer = bytearray(64)
    counter = RecordCounter()
    counts = []
    for start in (0, 43, 47):  # the second chunk ends inside the second record's header
        end = {0: 43, 43: 47, 47: len(stream)}[start]
        buffer[: end - start] = stream[start:end]
        counts.append(counter.feed(memoryview(buffer)[: end - start]))
        buffer[:] = b"\xff" * len(buffer)  # the next read reuses the buffer
    assert counts == [0, 1, 1]
    assert counter.atBoundary
