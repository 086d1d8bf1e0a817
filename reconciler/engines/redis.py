"""Redis and Dragonfly: deep probe, key-level backup (SCAN + DUMP + PTTL), RESTORE … ABSTTL.

Only commands Dragonfly also speaks (no SYNC, no ``redis-cli --rdb``). A backup is a
sequence of length-prefixed records (``cachefmt``); each key carries its ABSOLUTE expiry,
so restoring an old backup never resurrects a key past its time. Keys that expire while
the backup runs (DUMP answers nil) are skipped and counted.

Speed: SCAN of the next batch travels in the same write as the DUMP/PTTL of the current
one, so a batch costs one round trip, and replies are parsed by ``resp``'s lean parser.

A restore FLUSHes the server first and is not atomic: the caller must have checked the
file's checksum before calling it (the stores do), so a damaged file is refused before
anything is flushed. The trailer still catches a stream cut short, as an error.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from typing import BinaryIO

from reconciler.engines import cachefmt
from reconciler.engines.base import (
    BackupStats,
    ProbeResult,
    ProbeStatus,
    RestoreStats,
    Target,
    VerifyCheck,
    VerifyReport,
)
from reconciler.engines.resp import ReplyError, RespConnection, RespError
from reconciler.errors import BackupError, RestoreError
from reconciler.spec.models import Kind

SCAN_COUNT = 1000
RESTORE_BATCH = 2000
RESTORE_BATCH_BYTES = 4 * 1024 * 1024
MEMORY_DEGRADED = 0.9
_KEYSPACE = re.compile(r"^db(\d+):keys=(\d+),expires=(\d+)", re.MULTILINE)


class RedisEngine:
    file_extension = "redis-dump"

    def __init__(self, client=None) -> None:
        self._client = client  # unused: the cache is reached over TCP only

    # -- probe ---------------------------------------------------------------------------------

    def probe(self, target: Target, timeout: float = 5.0) -> ProbeResult:
        started = time.monotonic()
        try:
            with _connect(target, timeout) as conn:
                pong = conn.call("PING")
                memory = _info(conn, "memory")
                server = _info(conn, "server")
                keys = conn.call("DBSIZE")
        except (OSError, ConnectionError) as exc:
            return ProbeResult(ProbeStatus.UNREACHABLE, {"error": _describe(exc, target)}, _ms(started))
        except RespError as exc:
            return ProbeResult(ProbeStatus.UNHEALTHY, {"error": _describe(exc, target)}, _ms(started))
        used, limit = int(memory.get("used_memory", 0)), int(memory.get("maxmemory", 0))
        status = ProbeStatus.HEALTHY if pong == b"PONG" else ProbeStatus.UNHEALTHY
        if status is ProbeStatus.HEALTHY and limit and used > MEMORY_DEGRADED * limit:
            status = ProbeStatus.DEGRADED
        details = {"version": server.get("dragonfly_version") or server.get("redis_version", ""),
                   "used_memory": used, "maxmemory": limit, "keys": keys}
        return ProbeResult(status, details, _ms(started))

    def estimate_size(self, target: Target) -> int:
        """used_memory: DUMP payloads are compact, so the backup is rarely larger."""
        with _Errors(BackupError, target, "reading the cache's memory use"), \
                _connect(target, 10.0) as conn:
            return int(_info(conn, "memory").get("used_memory", 0))

    # -- backup --------------------------------------------------------------------------------

    def backup(self, target: Target, out: BinaryIO) -> BackupStats:
        with _Errors(BackupError, target, "backing up the cache"), _connect(target, 30.0) as conn:
            memory = int(_info(conn, "memory").get("used_memory", 0))
            keyspace = _keyspace(conn)
            writer = _Writer(out.write)
            writer(cachefmt.header())
            per_db, expiring, skipped = {}, {}, 0
            for db in sorted(keyspace):
                writer(cachefmt.select(db))
                conn.call("SELECT", db)
                per_db[db], expiring[db], gone = _dump_db(conn, writer)
                skipped += gone
            writer(cachefmt.trailer(sum(per_db.values())))
        return BackupStats(Kind.REDIS, raw_bytes=writer.count, key_count=sum(per_db.values()),
                           keys_per_db=per_db, expiring_per_db=expiring, expired_skipped=skipped,
                           memory_bytes=memory)

    # -- restore -------------------------------------------------------------------------------

    def restore(self, target: Target, stream: BinaryIO, stats: BackupStats) -> RestoreStats:
        started = time.monotonic()
        with _Errors(RestoreError, target, "restoring the cache"), _connect(target, 30.0) as conn:
            conn.call("FLUSHALL")
            restored, expiring, skipped = _restore_records(conn, stream)
            report = _check_counts(conn, restored, expiring)
        if not report.ok:
            raise RestoreError(f"the restored cache does not match the backup: {report.summary()}",
                               ref="restore.verify", hint="run `reconcile verify` and retry the restore")
        return RestoreStats(Kind.REDIS, raw_bytes=_size(stream), keys_restored=sum(restored.values()),
                            keys_skipped_expired=skipped, seconds=round(time.monotonic() - started, 3),
                            verify=report)

    # -- verify --------------------------------------------------------------------------------

    def verify(self, target: Target, expected: BackupStats) -> VerifyReport:
        """Per db: every key without a TTL must be there; keys with one may have expired."""
        with _Errors(RestoreError, target, "verifying the cache"), _connect(target, 10.0) as conn:
            return _check_counts(conn, expected.keys_per_db, expected.expiring_per_db)


def _check_counts(conn: RespConnection, keys: Mapping[int, int],
                  expiring: Mapping[int, int]) -> VerifyReport:
    """DBSIZE per db between (keys without TTL) and (all keys)."""
    actual = _db_sizes(conn, keys)
    checks = []
    for db, count in sorted(keys.items()):
        floor = count - expiring.get(db, 0)
        shown = count if floor == count else f"{floor}..{count}"
        checks.append(VerifyCheck(f"keys in db{db}", shown, actual[db], floor <= actual[db] <= count))
    return VerifyReport(tuple(checks))


# -- backup helpers ----------------------------------------------------------------------------

class _Writer:
    def __init__(self, write: Callable[[bytes], object]) -> None:
        self.write = write
        self.count = 0

    def __call__(self, data: bytes) -> None:
        self.write(data)
        self.count += len(data)


def _dump_db(conn: RespConnection, write: _Writer) -> tuple[int, int, int]:
    """All keys of the selected db: (written, with a TTL, expired meanwhile).

    Two batches are in flight: the SCAN reply of the next page arrives before the DUMP
    replies of the current one, so the next batch is sent before the current one is
    parsed and the server works while Python parses.
    """
    totals = [0, 0, 0]
    conn.send_raw(_scan(b"0"))
    cursor, keys = conn.read_reply()
    sent_at = _now_ms()
    conn.send_raw(_request(cursor, keys))
    while True:
        following = None
        if cursor != b"0":
            following = conn.read_reply()
            following_at = _now_ms()
            conn.send_raw(_request(*following))
        _take(keys, conn.read_replies(2 * len(keys)), sent_at, write, totals)
        if following is None:
            return totals[0], totals[1], totals[2]
        (cursor, keys), sent_at = following, following_at


def _request(cursor: bytes, keys: list[bytes]) -> bytes:
    """SCAN of the next page (if any) first, then DUMP + PTTL of every key of this one."""
    head = _scan(cursor) if cursor != b"0" else b""
    return head + b"".join([_dump_pttl(k) for k in keys])


def _take(keys: list[bytes], replies: list[object], sent_at: int, write: _Writer,
          totals: list[int]) -> None:
    """Frame the dumped keys; a nil DUMP or PTTL -2 means the key expired meanwhile."""
    records = []
    for i, key in enumerate(keys):
        value, ttl = replies[2 * i], replies[2 * i + 1]
        if value is None or ttl == -2 or isinstance(value, ReplyError):
            totals[2] += 1
            continue
        if ttl >= 0:
            totals[1] += 1
            records.append(cachefmt.key_record(key, value, sent_at + ttl))
        else:
            records.append(cachefmt.key_record(key, value, 0))
    totals[0] += len(records)
    if records:
        write(b"".join(records))


def _now_ms() -> int:
    return int(time.time() * 1000)


def _scan(cursor: bytes) -> bytes:
    return b"*4\r\n$4\r\nSCAN\r\n$%d\r\n%s\r\n$5\r\nCOUNT\r\n$4\r\n%d\r\n" % (
        len(cursor), cursor, SCAN_COUNT)


def _dump_pttl(key: bytes) -> bytes:
    size = len(key)
    return b"*2\r\n$4\r\nDUMP\r\n$%d\r\n%s\r\n*2\r\n$4\r\nPTTL\r\n$%d\r\n%s\r\n" % (size, key, size, key)


# -- restore helpers ---------------------------------------------------------------------------

def _restore_records(conn: RespConnection, stream: BinaryIO
                     ) -> tuple[dict[int, int], dict[int, int], int]:
    """Pipelined RESTORE in batches: keys restored and with a TTL per db, keys skipped as expired."""
    restored: dict[int, int] = {}
    expiring: dict[int, int] = {}
    skipped, db = 0, 0
    batch: list[bytes] = []
    size = 0
    pipe = _Pipeline(conn)
    for record in _records(stream):
        if isinstance(record, cachefmt.Select):
            pipe.send(batch)
            pipe.collect()
            batch, size = [], 0
            db = record.db
            conn.call("SELECT", db)
            restored.setdefault(db, 0)
            expiring.setdefault(db, 0)
            continue
        key, value, expire = record
        if expire and expire <= _now_ms():
            skipped += 1
            continue
        batch.append(_restore_command(key, value, expire))
        restored[db] = restored.get(db, 0) + 1
        expiring[db] = expiring.get(db, 0) + (expire > 0)
        size += len(value)
        if len(batch) >= RESTORE_BATCH or size >= RESTORE_BATCH_BYTES:
            pipe.send(batch)
            batch, size = [], 0
    pipe.send(batch)
    pipe.collect()
    return restored, expiring, skipped


def _records(stream: BinaryIO) -> Iterator[cachefmt.Select | tuple[bytes, bytes, int]]:
    try:
        for record in cachefmt.read_records(stream):
            if not isinstance(record, cachefmt.End):
                yield record
    except cachefmt.CacheFormatError as exc:
        raise RestoreError(f"the cache backup is unusable: {exc}", ref="restore.truncated",
                           hint="restore another backup; the cache now holds only part of this one") from None


def _restore_command(key: bytes, value: bytes, expire: int) -> bytes:
    ttl = b"%d" % expire if expire else b"0"
    tail = b"$6\r\nABSTTL\r\n$7\r\nREPLACE\r\n" if expire else b"$7\r\nREPLACE\r\n"
    return b"*%d\r\n$7\r\nRESTORE\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n%s" % (
        6 if expire else 5, len(key), key, len(ttl), ttl, len(value), value, tail)


class _Pipeline:
    """Keeps one batch in flight: batch n+1 is sent before the replies of batch n are read."""

    def __init__(self, conn: RespConnection) -> None:
        self.conn = conn
        self.in_flight = 0

    def send(self, batch: list[bytes]) -> None:
        if batch:
            self.conn.send_raw(b"".join(batch))
        self.collect()
        self.in_flight = len(batch)

    def collect(self) -> None:
        replies, self.in_flight = self.conn.read_replies(self.in_flight), 0
        for reply in replies:
            if isinstance(reply, ReplyError):
                raise RespError(f"RESTORE failed: {reply.message}")


# -- shared --------------------------------------------------------------------------------------

def _connect(target: Target, timeout: float) -> RespConnection:
    conn = RespConnection(target.host, target.port, timeout)
    try:
        if target.password:
            conn.call("AUTH", target.password)
    except BaseException:
        conn.close()
        raise
    return conn


def _info(conn: RespConnection, section: str) -> dict[str, str]:
    text = conn.call("INFO", section)
    assert isinstance(text, bytes)
    pairs = (line.split(":", 1) for line in text.decode("utf-8", "replace").splitlines()
             if ":" in line and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def _keyspace(conn: RespConnection) -> dict[int, int]:
    text = conn.call("INFO", "keyspace")
    assert isinstance(text, bytes)
    return {int(db): int(keys) for db, keys, _ in _KEYSPACE.findall(text.decode("utf-8", "replace"))}


def _db_sizes(conn: RespConnection, dbs: Mapping[int, int]) -> dict[int, int]:
    sizes = {}
    for db in dbs:
        conn.call("SELECT", db)
        sizes[db] = int(conn.call("DBSIZE"))  # type: ignore[arg-type]
    return sizes


def _size(stream: BinaryIO) -> int:
    return int(getattr(stream, "raw_size", 0) or 0)


def _describe(exc: BaseException, target: Target) -> str:
    return target.redact(str(exc) or type(exc).__name__)[:300]


def _ms(started: float) -> float:
    return (time.monotonic() - started) * 1000


class _Errors:
    """Connection and protocol errors become the stage's error, redacted, with a hint."""

    def __init__(self, error: type, target: Target, what: str) -> None:
        self.error, self.target, self.what = error, target, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if isinstance(exc, (OSError, ConnectionError, RespError)):
            ref = "backup.cache" if self.error is BackupError else "restore.cache"
            raise self.error(f"{self.what}: {_describe(exc, self.target)}", ref=ref,
                             hint="is the cache up and its password in the spec right? "
                                  "(reconcile health)") from None
        return False
