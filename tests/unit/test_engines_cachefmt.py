"""The cache backup format: binary-safe records, and a trailer that catches any cut."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.engines import cachefmt
from reconciler.engines.redis import _take

RECORDS = [(b"plain", b"value", 0), (b"\xff\x00bin\r\n", bytes(range(256)), 1_900_000_000_000),
           (b"", b"", 0)]


def encoded(records=RECORDS, count=None) -> bytes:
    raw = cachefmt.header() + cachefmt.select(0)
    raw += b"".join(cachefmt.key_record(*r) for r in records[:2])
    raw += cachefmt.select(5) + cachefmt.key_record(*records[2])
    return raw + cachefmt.trailer(len(records) if count is None else count)


def test_round_trip_is_binary_safe():
    got = list(cachefmt.read_records(io.BytesIO(encoded())))
    assert got == [cachefmt.Select(0), *RECORDS[:2], cachefmt.Select(5), RECORDS[2], cachefmt.End(3)]


def test_every_cut_is_detected():
    raw = encoded()
    for cut in range(len(raw)):
        with pytest.raises(cachefmt.CacheFormatError):
            list(cachefmt.read_records(io.BytesIO(raw[:cut])))


def test_wrong_trailer_count_and_trailing_data_are_detected():
    with pytest.raises(cachefmt.CacheFormatError, match="trailer says 2"):
        list(cachefmt.read_records(io.BytesIO(encoded(count=2))))
    with pytest.raises(cachefmt.CacheFormatError, match="after the trailer"):
        list(cachefmt.read_records(io.BytesIO(encoded() + b"K")))


def test_wrong_header_is_detected():
    with pytest.raises(cachefmt.CacheFormatError, match="header"):
        list(cachefmt.read_records(io.BytesIO(b"REDIS0011" + b"\0" * 20)))


def test_keys_that_expired_during_the_backup_are_skipped():
    written: list[bytes] = []
    totals = [0, 0, 0]
    keys = [b"kept", b"dump-nil", b"pttl-gone", b"ttl"]
    replies = [b"v1", -1, None, -2, b"v3", -2, b"v4", 5_000]
    _take(keys, replies, 1_000, written.append, totals)
    assert totals == [2, 1, 2]
    records = list(cachefmt.read_records(io.BytesIO(cachefmt.header() + b"".join(written)
                                                    + cachefmt.trailer(2))))
    assert records[:2] == [(b"kept", b"v1", 0), (b"ttl", b"v4", 6_000)]


class Trickle(io.RawIOBase):
    """A stream that hands out at most ``piece`` bytes per read, like a pipe."""

    def __init__(self, data: bytes, piece: int) -> None:
        self.data, self.piece, self.pos = data, piece, 0

    def read(self, size: int = -1) -> bytes:
        size = self.piece if size < 0 else min(size, self.piece)
        out = self.data[self.pos:self.pos + size]
        self.pos += len(out)
        return out


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=40), st.binary(max_size=300),
                          st.sampled_from([0, 1, 1_900_000_000_000])), max_size=60),
       st.integers(min_value=1, max_value=500), st.integers(min_value=1, max_value=7))
def test_batches_hold_the_same_records_whatever_the_reads(records, piece, per_batch):
    raw = (cachefmt.header() + cachefmt.select(2) + b"".join(cachefmt.key_record(*r) for r in records)
           + cachefmt.trailer(len(records)))
    items = list(cachefmt.read_batches(Trickle(raw, piece), max_records=per_batch))
    batches = [i for i in items if isinstance(i, list)]
    assert items[0] == cachefmt.Select(2) and items[-1] == cachefmt.End(len(records))
    assert [r for b in batches for r in b] == records
    assert all(0 < len(b) <= per_batch for b in batches)


def test_a_value_larger_than_a_read_chunk_comes_back_whole():
    big = bytes(range(256)) * (3 * cachefmt.CHUNK // 256 + 7)
    raw = cachefmt.header() + cachefmt.key_record(b"big", big, 0) + cachefmt.trailer(1)
    assert list(cachefmt.read_records(Trickle(raw, 100_000))) == [(b"big", big, 0), cachefmt.End(1)]


def test_batches_are_cut_by_size_too():
    records = [(b"k%d" % i, b"v" * 1000, 0) for i in range(10)]
    raw = cachefmt.header() + b"".join(cachefmt.key_record(*r) for r in records) + cachefmt.trailer(10)
    batches = [i for i in cachefmt.read_batches(io.BytesIO(raw), max_bytes=2500) if isinstance(i, list)]
    assert [len(b) for b in batches] == [3, 3, 3, 1]
