"""
The four OpenSSL calls of the TLS data path (into and out of the memory
BIOs, C{SSL_read}, C{SSL_write}), made through the bindings pyOpenSSL uses
itself rather than through its C{Connection} methods.

On every call, even a successful one, those methods check and convert
their argument, then ask OpenSSL for the call's error state and three
callback helpers for stored exceptions.  Measured on one echoed 100-byte
message (into the BIO, read, write, out of the BIO), OpenSSL's own work
included: 4.5 µs through the methods, 3.1 µs here (bench/bio_calls.py),
out of the 21 to 24 µs of CPU a request costs a securesock server.
Here a successful call returns at once, and a failed one goes to
pyOpenSSL's own error handling with OpenSSL's result, so it raises what
the method would have raised.  The records that arrived together are read
into one buffer and become one bytes object (L{decryptRecords}): one
allocation, copy and delivery to the application per batch, not per
record.

Skipping the helpers' check on success keeps pyOpenSSL's behaviour
because of when it is done: the helpers store an exception raised by one
of pyOpenSSL's callbacks (certificate verification, ALPN, OCSP), and those
run only during a handshake.  The TLS layer (L{securesock._handshake})
calls L{decryptRecords} only once the handshake is done (before, it calls
pyOpenSSL's C{recv}) and L{encrypt} only then (Twisted holds application
writes until it is done); no second handshake can follow on a connection
of securesock's: every context it builds refuses renegotiation
(C{OP_NO_RENEGOTIATION}, tests/test_bio.py), and TLS 1.3 has none
(securesock never asks for post-handshake client authentication).  The
BIO calls run no callbacks at all.

The attributes read (C{_ssl}, C{_into_ssl}, C{_from_ssl},
C{_raise_ssl_error}, C{_handle_bio_errors}, the bindings C{_lib} and
C{_ffi}) are pyOpenSSL's; if a release lacks one, L{FAST} is false and
every function calls the public method instead (tests/test_bio.py checks
both ways against the methods).
"""

from __future__ import annotations

from typing import Any

from OpenSSL import SSL

__all__ = ["FAST", "RECORD", "feed", "drain", "decryptRecords", "encrypt"]

RECORD = 2**14
"""The most application data one TLS record carries (TLS 1.2 and 1.3, no compression)."""


def _bindings() -> tuple[Any, Any] | None:
    """pyOpenSSL's cffi bindings, if this release has everything used here."""
    lib = getattr(SSL, "_lib", None)
    ffi = getattr(SSL, "_ffi", None)
    if lib is None or ffi is None:
        return None
    names = ("SSL_read", "SSL_write", "BIO_read", "BIO_write", "SSL_get_error", "SSL_ERROR_WANT_READ")
    if not all(hasattr(lib, name) for name in names):
        return None
    if not all(hasattr(SSL.Connection, name) for name in ("_raise_ssl_error", "_handle_bio_errors")):
        return None
    probe = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)
    if not all(hasattr(probe, name) for name in ("_ssl", "_into_ssl", "_from_ssl")):
        return None
    return lib, ffi


_BINDINGS = _bindings()
FAST = _BINDINGS is not None


def publicFeed(connection: SSL.Connection, data: bytes | memoryview) -> None:
    connection.bio_write(data)


def publicDrain(connection: SSL.Connection, size: int) -> bytes:
    return connection.bio_read(size)


def publicDecrypt(connection: SSL.Connection, size: int) -> bytes:
    return connection.recv(size)


def publicDecryptRecords(connection: SSL.Connection, records: int) -> tuple[bytes, SSL.Error | None]:
    parts: list[bytes] = []
    for _ in range(records):
        try:
            parts.append(connection.recv(RECORD))
        except SSL.Error as error:
            return b"".join(parts), error
    return b"".join(parts), None


def publicEncrypt(connection: SSL.Connection, data: bytes | memoryview) -> int:
    return connection.send(data)


if _BINDINGS is not None:
    _lib, _ffi = _BINDINGS
    _allocate = _ffi.new_allocator(should_clear_after_alloc=False)
    _BIO_write = _lib.BIO_write
    _BIO_read = _lib.BIO_read
    _SSL_read = _lib.SSL_read
    _SSL_write = _lib.SSL_write
    _SSL_get_error = _lib.SSL_get_error
    _WANT_READ = _lib.SSL_ERROR_WANT_READ
    _fromBuffer = _ffi.from_buffer
    _buffer = _ffi.buffer

    def feed(connection: SSL.Connection, data: bytes | memoryview) -> None:
        """Received TLS bytes into the connection's receive BIO (C{bio_write})."""
        bio = connection._into_ssl  # type: ignore[attr-defined]
        with _fromBuffer(data) as pointer:
            result = _BIO_write(bio, pointer, len(pointer))
        if result <= 0:
            connection._handle_bio_errors(bio, result)  # type: ignore[attr-defined]

    def drain(connection: SSL.Connection, size: int) -> bytes:
        """Up to C{size} TLS bytes out of the send BIO (C{bio_read}); C{WantReadError} when empty."""
        bio = connection._from_ssl  # type: ignore[attr-defined]
        buf = _allocate("char[]", size)
        result = _BIO_read(bio, buf, size)
        if result <= 0:
            connection._handle_bio_errors(bio, result)  # type: ignore[attr-defined]
        return _buffer(buf, result)[:]  # type: ignore[no-any-return]

    def decryptRecords(connection: SSL.Connection, records: int) -> tuple[bytes, SSL.Error | None]:
        """
        C{recv} of up to C{records} records, once the handshake is done,
        into one buffer: their application bytes as one bytes object, and
        the error that stopped the reading early, if any (what C{recv}
        would raise; returned, not raised).  One buffer, one copy into
        bytes and one delivery for several records, rather than one of each
        per record.  The usual end, no whole record left, is a
        C{WantReadError} made without raising it: no traceback, whose
        frames would hold the caller's locals in a reference cycle until
        the garbage collector's next pass.
        """
        ssl = connection._ssl  # type: ignore[attr-defined]
        size = records * RECORD
        buf = _allocate("char[]", size)
        got = 0
        for _ in range(records):
            result = _SSL_read(ssl, buf + got, size - got) if got else _SSL_read(ssl, buf, size)
            if result > 0:
                got += result
                continue
            if _SSL_get_error(ssl, result) == _WANT_READ:
                error: SSL.Error = SSL.WantReadError()
            else:
                try:
                    connection._raise_ssl_error(ssl, result)  # type: ignore[attr-defined]
                except SSL.Error as raised:
                    error = raised.with_traceback(None)  # (its frames: as above)
                else:  # (OpenSSL reported no error: nothing more to read)
                    break
            return (_buffer(buf, got)[:] if got else b""), error
        return _buffer(buf, got)[:], None

    def encrypt(connection: SSL.Connection, data: bytes | memoryview) -> int:
        """C{send}, once the handshake is done: how many of C{data}'s bytes went into records."""
        ssl = connection._ssl  # type: ignore[attr-defined]
        with _fromBuffer(data) as pointer:
            result = _SSL_write(ssl, pointer, len(pointer))
        if result <= 0:
            connection._raise_ssl_error(ssl, result)  # type: ignore[attr-defined]
        return result  # type: ignore[no-any-return]

else:  # a pyOpenSSL without these internals
    feed = publicFeed
    drain = publicDrain
    decryptRecords = publicDecryptRecords
    encrypt = publicEncrypt
