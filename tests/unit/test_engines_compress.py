"""Compression + SHA-256 on the fly: round trips, digests of the stored bytes, damage caught."""

from __future__ import annotations

import gzip
import hashlib
import io
import os

import pytest
import zstandard

from reconciler.engines.compress import (
    ZSTD_DEFAULT,
    ZSTD_LIGHT,
    CompressingWriter,
    DecompressingReader,
    compressed_name,
)
from reconciler.errors import RestoreError
from reconciler.spec.models import Compression

DATA = b"".join(b"%d,row %d,%s\n" % (i, i, os.urandom(8).hex().encode()) for i in range(50_000))


def write(data: bytes, compression: Compression, chunk: int = 65_536) -> tuple[bytes, object]:
    dest = io.BytesIO()
    writer = CompressingWriter(dest, compression)
    for start in range(0, len(data), chunk):
        writer.write(data[start:start + chunk])
    written = writer.finish()
    return dest.getvalue(), written


def read_all(stored: bytes, compression: Compression, sha: str, size: int = 100_000) -> bytes:
    reader = DecompressingReader(io.BytesIO(stored), compression, sha)
    parts = []
    while chunk := reader.read(size):
        parts.append(chunk)
    return b"".join(parts)


@pytest.mark.parametrize("compression", list(Compression))
def test_round_trip_and_digest_of_stored_bytes(compression):
    stored, written = write(DATA, compression)
    assert written.raw_size == len(DATA)
    assert written.size == len(stored)
    assert written.sha256 == hashlib.sha256(stored).hexdigest()
    assert read_all(stored, compression, "sha256:" + written.sha256) == DATA


@pytest.mark.parametrize("tuning", [ZSTD_DEFAULT, ZSTD_LIGHT])
def test_every_zstd_tuning_writes_the_same_format(tuning):
    """An engine's lighter zstd work (the cache's) is read back by the one reader and by zstd."""
    dest = io.BytesIO()
    writer = CompressingWriter(dest, Compression.ZSTD, tuning)
    writer.write(DATA)
    written = writer.finish()
    stored = dest.getvalue()
    assert written.size < len(DATA) // 2
    assert read_all(stored, Compression.ZSTD, written.sha256) == DATA
    assert zstandard.ZstdDecompressor().stream_reader(io.BytesIO(stored)).read() == DATA


def test_files_open_with_the_standard_tools():
    stored, _ = write(DATA, Compression.GZIP)
    assert gzip.decompress(stored) == DATA
    stored, _ = write(DATA, Compression.ZSTD)
    assert zstandard.ZstdDecompressor().stream_reader(io.BytesIO(stored)).read() == DATA


def test_empty_stream_is_a_valid_file():
    for compression in Compression:
        stored, written = write(b"", compression)
        assert read_all(stored, compression, written.sha256) == b""


@pytest.mark.parametrize("compression", list(Compression))
def test_flipped_byte_is_refused(compression):
    stored, written = write(DATA, compression)
    damaged = bytearray(stored)
    damaged[len(damaged) // 2] ^= 0x55
    with pytest.raises(RestoreError) as caught:
        read_all(bytes(damaged), compression, written.sha256)
    assert caught.value.ref in {"restore.checksum", "restore.corrupt"}


@pytest.mark.parametrize("compression", list(Compression))
def test_truncated_file_is_refused_at_the_end(compression):
    stored, written = write(DATA, compression)
    with pytest.raises(RestoreError) as caught:
        read_all(stored[: len(stored) * 2 // 3], compression, written.sha256)
    assert caught.value.ref in {"restore.checksum", "restore.truncated", "restore.corrupt"}


def test_a_digest_is_required():
    with pytest.raises(ValueError):
        DecompressingReader(io.BytesIO(b""), Compression.ZSTD, "")


def test_highly_compressible_data_is_read_in_bounded_pieces():
    stored, written = write(b"\0" * 64 * 1024 * 1024, Compression.ZSTD, chunk=1 << 20)
    reader = DecompressingReader(io.BytesIO(stored), Compression.ZSTD, written.sha256)
    first = reader.read(1 << 20)
    assert len(first) <= 1 << 20


def test_write_after_finish_is_an_error():
    writer = CompressingWriter(io.BytesIO())
    writer.finish()
    with pytest.raises(ValueError):
        writer.write(b"x")


def test_extension_names():
    assert compressed_name("sql", Compression.ZSTD) == "sql.zst"
    assert compressed_name("sql", Compression.GZIP) == "sql.gz"
