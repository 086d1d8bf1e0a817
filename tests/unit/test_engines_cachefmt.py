"""The cache backup format: binary-safe records, and a trailer that catches any cut."""

from __future__ import annotations

import io

import pytest

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
