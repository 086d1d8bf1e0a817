"""Compression and SHA-256 on the fly, in both directions.

A backup is written once: the engine's raw stream goes into a ``CompressingWriter``, which
compresses it and hashes the COMPRESSED bytes (what is stored and what ``sha256sum`` of the
file prints) while writing them to the destination. Reading back, ``DecompressingReader``
re-hashes the file as it decompresses and raises at the end if the digest differs, so a
corrupt or truncated file can never be restored as if it were whole.

zstd level 3, multi-threaded, is the default: on a 2-core machine it is several times
faster than gzip -6 for a slightly better ratio; gzip stays selectable for the seed's
``.sql.gz`` files, which any ``gunzip`` can read. An engine may ask for lighter zstd work
(``ZstdTuning``) when its stream gains nothing from more: the file format is the same.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from typing import BinaryIO

import zstandard

from reconciler.errors import RestoreError
from reconciler.spec.models import Compression

CHUNK = 1024 * 1024
GZIP_LEVEL = 6
EXTENSION = {Compression.ZSTD: "zst", Compression.GZIP: "gz"}
_GZIP_WBITS = 31  # zlib's "gzip container" mode: header and CRC trailer gunzip expects


@dataclass(frozen=True)
class ZstdTuning:
    """How hard zstd works on one engine's stream; any level reads back the same way."""

    level: int = 3
    threads: int = -1  # -1: a worker per core; 0: in the writing thread, no workers


ZSTD_DEFAULT = ZstdTuning()
# Streams that are mostly compressed or random already (the cache's DUMP payloads, which
# Redis LZF-compresses): level 1 stores them as small as level 3 does at half the CPU, and
# with no worker threads the backup does not take a core from the server it reads.
ZSTD_LIGHT = ZstdTuning(level=1, threads=0)


@dataclass(frozen=True)
class Written:
    """What a finished writer produced: bytes in, bytes stored, and the stored bytes' digest."""

    raw_size: int
    size: int
    sha256: str


class _HashingSink:
    """Hashes and counts every compressed byte on its way to ``dest``."""

    def __init__(self, dest: BinaryIO) -> None:
        self.dest = dest
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.dest.write(data)
        self.size += len(data)
        return len(data)


class CompressingWriter:
    """A binary file-like ``write`` target; call ``finish()`` once to flush and get the digest.

    ``dest`` is not closed: the caller owns it (e.g. the store's atomic writer, which renames
    only after the whole backup succeeded).
    """

    def __init__(self, dest: BinaryIO, compression: Compression = Compression.ZSTD,
                 zstd: ZstdTuning = ZSTD_DEFAULT) -> None:
        self.compression = compression
        self.raw_size = 0
        self._sink = _HashingSink(dest)
        self._result: Written | None = None
        if compression is Compression.ZSTD:
            cctx = zstandard.ZstdCompressor(level=zstd.level, threads=zstd.threads)
            self._zstd = cctx.stream_writer(self._sink, write_size=CHUNK, closefd=False)
        else:
            self._zlib = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, _GZIP_WBITS)

    def write(self, data: bytes) -> int:
        if self._result is not None:
            raise ValueError("write after finish")
        self.raw_size += len(data)
        if self.compression is Compression.ZSTD:
            self._zstd.write(data)
        else:
            compressed = self._zlib.compress(data)
            if compressed:
                self._sink.write(compressed)
        return len(data)

    def finish(self) -> Written:
        """End the compressed stream (frame end, gzip trailer) and return what was written."""
        if self._result is None:
            if self.compression is Compression.ZSTD:
                self._zstd.flush(zstandard.FLUSH_FRAME)
            else:
                self._sink.write(self._zlib.flush(zlib.Z_FINISH))
            self._result = Written(self.raw_size, self._sink.size, self._sink.digest.hexdigest())
        return self._result

    def writable(self) -> bool:
        return True


class _HashingSource:
    """Hashes every compressed byte as the decompressor pulls it from the file."""

    def __init__(self, src: BinaryIO) -> None:
        self.src = src
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.src.read(size)
        self.digest.update(data)
        return data


class DecompressingReader:
    """``read(n)`` the raw stream of a compressed backup file, checking its SHA-256 at EOF.

    The checksum error is raised by the read that reaches the end instead of returning
    ``b""``, so a consumer that commits only after EOF (every engine does) never treats a
    damaged or truncated file as complete. The SHA-256 is mandatory: it is also what catches
    truncation of a zstd file, whose streaming decoder cannot tell a cut from an end.
    Memory stays bounded whatever the compression ratio (a zero-filled file in a volume).
    """

    def __init__(self, src: BinaryIO, compression: Compression, expected_sha256: str) -> None:
        self._expected = expected_sha256.removeprefix("sha256:").lower()
        if len(self._expected) != 64:
            raise ValueError("a SHA-256 (64 hex digits) is required to read a backup")
        self._source = _HashingSource(src)
        self._compression = compression
        self._zstd = zstandard.ZstdDecompressor().stream_reader(
            self._source, read_size=CHUNK, read_across_frames=True) \
            if compression is Compression.ZSTD else None
        self._zlib = zlib.decompressobj(_GZIP_WBITS)
        self._tail = b""
        self._done = False
        self.raw_size = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._done:
            return b""
        want = CHUNK if size is None or size < 0 else max(size, 1)
        try:
            out = self._zstd.read(want) if self._zstd is not None else self._gunzip(want)
        except (zstandard.ZstdError, zlib.error) as exc:
            raise RestoreError(f"the backup file is not valid {self._compression.value} data "
                               f"({type(exc).__name__})", ref="restore.corrupt",
                               hint="restore another backup, or fetch this one again from S3") from None
        if not out:
            self._finish()
        self.raw_size += len(out)
        return out

    def _gunzip(self, want: int) -> bytes:
        """Bounded gzip decoding that also follows concatenated members."""
        while True:
            if self._zlib.eof:
                rest = self._zlib.unused_data
                if not rest:
                    rest = self._source.read(CHUNK)
                    if not rest:
                        return b""
                self._zlib = zlib.decompressobj(_GZIP_WBITS)
                self._tail = rest
            data = self._tail or self._source.read(CHUNK)
            if not data:
                if not self._zlib.eof:
                    self._fail_truncated()
                return b""
            out = self._zlib.decompress(data, want)
            self._tail = self._zlib.unconsumed_tail
            if out:
                return out

    def _fail_truncated(self) -> None:
        raise RestoreError("the backup file ends in the middle of its compressed stream",
                           ref="restore.truncated",
                           hint="the file is truncated; restore from the other copy or another backup")

    def _finish(self) -> None:
        self._done = True
        if self._source.digest.hexdigest() != self._expected:
            raise RestoreError("the backup file's SHA-256 does not match its metadata",
                               ref="restore.checksum",
                               hint="the file is damaged; restore from the other copy (--source s3/local)")


def compressed_name(base_extension: str, compression: Compression) -> str:
    """``sql`` + zstd → ``sql.zst``: the file extension the stores use."""
    return f"{base_extension}.{EXTENSION[compression]}"
