"""The cache backup format: length-prefixed binary records, closed by a trailer.

Keys and values are arbitrary bytes (DUMP payloads are binary), so nothing is text and
nothing is escaped. A file that lacks the trailer, or whose trailer count disagrees with
the records read, is truncated or damaged and is rejected::

    header   b"RECONCILE-CACHE" + version byte (1)
    select   b"S" + u32 db                          (keys that follow live in db)
    key      b"K" + u32 key_len + u32 value_len + u64 expire_at_ms (0: none) + key + value
    trailer  b"E" + u64 key_count                    (last record; nothing may follow)

Integers are big-endian. ``expire_at_ms`` is ABSOLUTE (Unix ms), so the time a backup
spends on disk counts against a key's TTL, as it would have in the server.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

MAGIC = b"RECONCILE-CACHE\x01"
_SELECT = struct.Struct(">cI")
_KEY = struct.Struct(">cIIQ")
_TRAILER = struct.Struct(">cQ")
CHUNK = 1024 * 1024


class CacheFormatError(ValueError):
    """The stream is not a whole cache backup (wrong header, cut short, bad record)."""


@dataclass(frozen=True)
class Select:
    db: int


@dataclass(frozen=True)
class End:
    key_count: int


def header() -> bytes:
    return MAGIC


def select(db: int) -> bytes:
    return _SELECT.pack(b"S", db)


def key_record(key: bytes, value: bytes, expire_at_ms: int) -> bytes:
    return key_header(key, value, expire_at_ms) + key + value


def key_header(key: bytes, value: bytes, expire_at_ms: int) -> bytes:
    """A key record without its key and value, which follow it (to join many at once)."""
    return _KEY.pack(b"K", len(key), len(value), expire_at_ms)


def trailer(key_count: int) -> bytes:
    return _TRAILER.pack(b"E", key_count)


Record = tuple[bytes, bytes, int]


def read_records(stream: BinaryIO) -> Iterator[Select | Record | End]:
    """Yield ``Select``, ``(key, value, expire_at_ms)`` tuples, then exactly one ``End``.

    Raises ``CacheFormatError`` if the stream is cut anywhere or the trailer's count is
    wrong; the ``End`` is only yielded after the stream's real end was seen.
    """
    for item in read_batches(stream):
        if isinstance(item, list):
            yield from item
        else:
            yield item


def read_batches(stream: BinaryIO, max_records: int = 2000, max_bytes: int = 4 * 1024 * 1024
                 ) -> Iterator[Select | list[Record] | End]:
    """``read_records`` in bulk: lists of up to ``max_records`` key records (or about
    ``max_bytes`` of values) between the ``Select``s, then the ``End``. Same checks.

    One tight loop over each buffered chunk instead of a generator step per record: on a
    million keys this is most of what a restore costs this process.
    """
    unpack_from, key_size = _KEY.unpack_from, _KEY.size
    buf = _read_exactly(stream, b"", len(MAGIC))
    if buf[:len(MAGIC)] != MAGIC:
        raise CacheFormatError("not a reconcile cache backup (bad header)")
    pos, seen = len(MAGIC), 0
    batch: list[Record] = []
    size = 0
    while True:
        end = len(buf)
        # Whole key records already buffered.
        while pos + key_size <= end and buf[pos] == 75:  # b"K"
            _, klen, vlen, expire = unpack_from(buf, pos)
            start = pos + key_size
            stop = start + klen + vlen
            if stop > end:
                break
            batch.append((buf[start:start + klen], buf[start + klen:stop], expire))
            pos = stop
            size += vlen
            if len(batch) >= max_records or size >= max_bytes:
                seen += len(batch)
                yield batch
                batch, size = [], 0
        if pos < end and buf[pos] != 75:
            if batch:
                seen += len(batch)
                yield batch
                batch, size = [], 0
            kind = buf[pos:pos + 1]
            if kind == b"S":
                buf, pos = _ensure(stream, buf, pos, _SELECT.size)
                yield Select(_SELECT.unpack_from(buf, pos)[1])
                pos += _SELECT.size
                continue
            if kind == b"E":
                buf, pos = _ensure(stream, buf, pos, _TRAILER.size)
                count = _TRAILER.unpack_from(buf, pos)[1]
                if count != seen:
                    raise CacheFormatError(f"trailer says {count} keys, the file holds {seen}")
                if pos + _TRAILER.size < len(buf) or stream.read(1):
                    raise CacheFormatError("data after the trailer")
                yield End(count)
                return
            raise CacheFormatError(f"unknown record type {kind!r} after {seen + len(batch)} keys")
        # Out of whole records: keep the partial one and read at least the rest of it.
        want = len(buf) - pos + 1
        if len(buf) - pos >= key_size:
            _, klen, vlen, _ = unpack_from(buf, pos)
            want = key_size + klen + vlen
        buf, pos = _read_exactly(stream, buf[pos:], want), 0


def _ensure(stream: BinaryIO, buf: bytes, pos: int, size: int) -> tuple[bytes, int]:
    """``buf`` from ``pos`` with at least ``size`` bytes buffered (or ``CacheFormatError``)."""
    if len(buf) - pos >= size:
        return buf, pos
    return _read_exactly(stream, buf[pos:], size), 0


def _read_exactly(stream: BinaryIO, have: bytes, size: int) -> bytes:
    parts, got = [have], len(have)
    while got < size:
        more = stream.read(max(CHUNK, size - got))
        if not more:
            raise CacheFormatError("the cache backup is truncated (no trailer record)")
        parts.append(more)
        got += len(more)
    return b"".join(parts)
