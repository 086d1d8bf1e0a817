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
    return _KEY.pack(b"K", len(key), len(value), expire_at_ms) + key + value


def trailer(key_count: int) -> bytes:
    return _TRAILER.pack(b"E", key_count)


def read_records(stream: BinaryIO) -> Iterator[Select | tuple[bytes, bytes, int] | End]:
    """Yield ``Select``, ``(key, value, expire_at_ms)`` tuples, then exactly one ``End``.

    Raises ``CacheFormatError`` if the stream is cut anywhere or the trailer's count is
    wrong; the ``End`` is only yielded after the stream's real end was seen.
    """
    reader = _Buffer(stream)
    if reader.take(len(MAGIC)) != MAGIC:
        raise CacheFormatError("not a reconcile cache backup (bad header)")
    seen = 0
    while True:
        kind = reader.take(1)
        if kind == b"K":
            klen, vlen, expire = struct.unpack(">IIQ", reader.take(_KEY.size - 1))
            body = reader.take(klen + vlen)
            seen += 1
            yield body[:klen], body[klen:], expire
        elif kind == b"S":
            yield Select(struct.unpack(">I", reader.take(4))[0])
        elif kind == b"E":
            count = struct.unpack(">Q", reader.take(8))[0]
            if count != seen or not reader.at_end():
                raise CacheFormatError(f"trailer says {count} keys, the file holds {seen}"
                                       if count != seen else "data after the trailer")
            yield End(count)
            return
        else:
            raise CacheFormatError(f"unknown record type {kind!r} after {seen} keys")


class _Buffer:
    """Exact-size reads over a chunked stream; running out is a ``CacheFormatError``."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.buf = b""
        self.pos = 0

    def take(self, size: int) -> bytes:
        end = self.pos + size
        if end > len(self.buf):
            self._fill(size)
            end = size
        data = self.buf[self.pos:end]
        self.pos = end
        return data

    def _fill(self, size: int) -> None:
        parts = [self.buf[self.pos:]]
        have = len(parts[0])
        while have < size:
            more = self.stream.read(max(CHUNK, size - have))
            if not more:
                raise CacheFormatError("the cache backup is truncated (no trailer record)")
            parts.append(more)
            have += len(more)
        self.buf = b"".join(parts)
        self.pos = 0

    def at_end(self) -> bool:
        if self.pos < len(self.buf):
            return False
        return not self.stream.read(1)
