"""Redis and Dragonfly: deep probe, key-level backup (SCAN + DUMP + PTTL), RESTORE … ABSTTL.

Only commands Dragonfly also speaks (no SYNC, no ``redis-cli --rdb``). A backup is a
sequence of length-prefixed records (``cachefmt``); each key carries its ABSOLUTE expiry,
so restoring an old backup never resurrects a key past its time. Keys that expire while
the backup runs (DUMP answers nil) are skipped and counted.

Speed: the server is the limit, so it must never wait for us. SCAN runs on a second
connection in a thread, pages read ahead; DUMP + PTTL of several pages are in flight on
the first while Python frames the replies of the oldest, parsed by hiredis (``resp``). A
restore (``cacheload``) sends RESTOREs a batch ahead and checks the ``+OK``s as bytes.

A restore FLUSHes the server first and is not atomic: the caller must have checked the
file's checksum before calling it (the stores do), so a damaged file is refused before
anything is flushed. The trailer still catches a stream cut short, as an error.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import BinaryIO

from reconciler.engines import cachefmt, cacheload
from reconciler.engines.base import (
    BackupStats,
    ProbeResult,
    ProbeStatus,
    RestoreStats,
    Target,
    VerifyCheck,
    VerifyReport,
)
from reconciler.engines.compress import ZSTD_LIGHT
from reconciler.engines.resp import ReplyError, RespConnection, RespError
from reconciler.errors import BackupError, RestoreError
from reconciler.spec.models import Kind

# Small pages, little read-ahead: a key DUMPed soon after SCAN found it is still in the
# server's CPU cache (its bucket, entry and name); with 1000-key pages and 8 read ahead the
# server spent about 10% more CPU on the same backup.
SCAN_COUNT = 500
SCAN_AHEAD = 2  # pages found, not yet dumped
DUMP_DEPTH = 3  # pages whose DUMP + PTTL are in flight while the oldest is framed
MEMORY_DEGRADED = 0.9
MEMORY_FULL = "at maxmemory and evicting nothing: writes are refused"
# The server answers but does not take the password: none given, a wrong one, or one it has
# no use for (redis 6+, dragonfly and older redis word these differently).
_REFUSED = re.compile(r"NOAUTH|WRONGPASS|invalid password|without any password configured", re.IGNORECASE)
_KEYSPACE = re.compile(r"^db(\d+):keys=(\d+),expires=(\d+)", re.MULTILINE)


class RedisEngine:
    file_extension = "redis-dump"
    zstd = ZSTD_LIGHT  # DUMP payloads: level 3 stores them no smaller (compress.ZSTD_LIGHT)

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
            status = ProbeStatus.REFUSED if _REFUSED.search(str(exc)) else ProbeStatus.UNHEALTHY
            return ProbeResult(status, {"error": _describe(exc, target)}, _ms(started))
        used, limit = int(memory.get("used_memory", 0)), int(memory.get("maxmemory", 0))
        policy = memory.get("maxmemory_policy", "")
        status = ProbeStatus.HEALTHY if pong == b"PONG" else ProbeStatus.UNHEALTHY
        details = {"version": server.get("dragonfly_version") or server.get("redis_version", ""),
                   "used_memory": used, "maxmemory": limit, "keys": keys}
        if policy:
            details["maxmemory_policy"] = policy
        if status is ProbeStatus.HEALTHY and limit and used >= limit and policy == "noeviction":
            # it answers PING, but every write fails (OOM command not allowed): an outage for its users
            status = ProbeStatus.UNHEALTHY
            details["error"] = f"{MEMORY_FULL} (maxmemory {limit} bytes, policy noeviction)"
        elif status is ProbeStatus.HEALTHY and limit and used > MEMORY_DEGRADED * limit:
            status = ProbeStatus.DEGRADED
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
                with _Scanner(target, db) as pages:
                    per_db[db], expiring[db], gone = _dump_db(conn, pages, writer)
                skipped += gone
            writer(cachefmt.trailer(sum(per_db.values())))
        return BackupStats(Kind.REDIS, raw_bytes=writer.count, key_count=sum(per_db.values()),
                           keys_per_db=per_db, expiring_per_db=expiring, expired_skipped=skipped,
                           memory_bytes=memory)

    # -- restore -------------------------------------------------------------------------------

    def restore(self, target: Target, stream: BinaryIO, stats: BackupStats) -> RestoreStats:
        started = time.monotonic()
        with _Errors(RestoreError, target, "restoring the cache"), _connect(target, 30.0) as conn:
            cacheload.flush(conn, int(_info(conn, "memory").get("maxmemory", 0)))
            try:
                restored, expiring, skipped = cacheload.restore_records(conn, stream)
            except KeyboardInterrupt as stop:  # still an interrupt: it must stop every caller
                stop.add_note(f"{target.service_name}: {_PARTLY}; run the restore again: it empties the "
                              "cache and loads every key of the backup")
                raise
            except BaseException as exc:  # noqa: BLE001 - re-raised, saying what state the cache is in
                raise _partly_restored(exc, target) from None
            report = _check_counts(conn, restored, expiring)
        if not report.ok:
            raise RestoreError(f"the restored cache does not match the backup: {report.summary()}",
                               ref="restore.verify", hint="run `reconcile verify` and retry the restore")
        return RestoreStats(Kind.REDIS, raw_bytes=_size(stream), keys_restored=sum(restored.values()),
                            keys_skipped_expired=skipped, seconds=round(time.monotonic() - started, 3),
                            verify=report)

    # -- verify --------------------------------------------------------------------------------

    def verify(self, target: Target, expected: BackupStats) -> VerifyReport:
        """Per db: every key without a TTL must be there; keys with one may have expired.
        Every db, also those the backup does not have: a key added there is a difference."""
        with _Errors(RestoreError, target, "verifying the cache"), _connect(target, 10.0) as conn:
            return _check_counts(conn, expected.keys_per_db, expected.expiring_per_db)


def _check_counts(conn: RespConnection, keys: Mapping[int, int],
                  expiring: Mapping[int, int]) -> VerifyReport:
    return compare_keyspace(_keyspace(conn), keys, expiring)


@dataclass(frozen=True)
class DbKeys:
    """One db as ``INFO keyspace`` counts it (redis and dragonfly alike): all its keys and
    those with a TTL, keys past their expiry that the server has not reclaimed yet included."""

    keys: int
    expires: int

    @property
    def persistent(self) -> int:
        return self.keys - self.expires


def compare_keyspace(live: Mapping[int, DbKeys], keys: Mapping[int, int],
                     expiring: Mapping[int, int]) -> VerifyReport:
    """The live keyspace against recorded counts (a backup's, or those of the restore just done).

    Keys without a TTL cannot expire: exactly as many as recorded, or one was deleted or
    added, and a volatile key that expired cannot hide it. Keys with a TTL may have expired
    since, never grown; one not yet reclaimed still counts, which keeps both bounds true.
    A db the record does not have must hold no key. A record without TTL counts for a db
    (metadata older than them) can only be held to the total, exactly.
    """
    checks = []
    for db in sorted(keys.keys() | live.keys()):
        found = live.get(db, DbKeys(0, 0))
        if db not in keys:
            checks.append(VerifyCheck(f"keys in db{db} (not in the backup)", 0, found.keys, found.keys == 0))
        elif db not in expiring:
            checks.append(VerifyCheck(f"keys in db{db} (backup without TTL counts)", keys[db], found.keys,
                                      found.keys == keys[db]))
        else:
            persistent = keys[db] - expiring[db]
            checks.append(VerifyCheck(f"keys without a TTL in db{db}", persistent, found.persistent,
                                      found.persistent == persistent))
            checks.append(VerifyCheck(f"keys with a TTL in db{db}", _at_most(expiring[db]), found.expires,
                                      found.expires <= expiring[db]))
    return VerifyReport(tuple(checks) or (VerifyCheck("keys in any db", 0, 0, True),))


def _at_most(count: int) -> object:
    return count if count == 0 else f"at most {count}"


# -- backup helpers ----------------------------------------------------------------------------

class _Writer:
    def __init__(self, write: Callable[[bytes], object]) -> None:
        self.write = write
        self.count = 0

    def __call__(self, data: bytes) -> None:
        self.write(data)
        self.count += len(data)


def _dump_db(conn: RespConnection, pages: Iterable[list[bytes]], write: _Writer) -> tuple[int, int, int]:
    """All keys of the selected db: (written, with a TTL, expired meanwhile).

    ``DUMP_DEPTH`` pages are in flight: each page's DUMP + PTTL are sent as soon as SCAN
    found it, and the oldest page's replies are framed while the server works on the rest.
    A TTL counts from when its page was sent (at most a few ms early, never late).
    """
    totals = [0, 0, 0]
    in_flight: deque[tuple[list[bytes], int]] = deque()
    for keys in pages:
        if not keys:
            continue
        in_flight.append((keys, _now_ms()))
        conn.send_raw(b"".join([_dump_pttl(k) for k in keys]))
        if len(in_flight) > DUMP_DEPTH:
            _take_oldest(conn, in_flight, write, totals)
    while in_flight:
        _take_oldest(conn, in_flight, write, totals)
    return totals[0], totals[1], totals[2]


def _take_oldest(conn: RespConnection, in_flight: deque[tuple[list[bytes], int]], write: _Writer,
                 totals: list[int]) -> None:
    keys, sent_at = in_flight.popleft()
    _take(keys, conn.read_replies(2 * len(keys)), sent_at, write, totals)


class _Scanner:
    """SCAN pages of one db from a connection of its own, read ahead in a thread."""

    def __init__(self, target: Target, db: int) -> None:
        self._conn = _connect(target, 30.0)
        self._pages: queue.Queue = queue.Queue(maxsize=SCAN_AHEAD)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        try:
            self._conn.call("SELECT", db)
        except BaseException:
            self._conn.close()
            raise
        self._thread = threading.Thread(target=self._run, name="cache-scan", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            cursor = b"0"
            while not self._stop.is_set():
                cursor, keys = self._conn.call("SCAN", cursor, "COUNT", SCAN_COUNT)
                self._put(keys)
                if cursor == b"0":
                    break
        except BaseException as exc:  # noqa: BLE001 - re-raised in the reading thread by __iter__
            self._error = exc
        finally:
            self._put(None)

    def _put(self, item: list[bytes] | None) -> None:
        while not self._stop.is_set():
            try:
                self._pages.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator[list[bytes]]:
        while (keys := self._pages.get()) is not None:
            yield keys
        if self._error is not None:
            raise self._error

    def __enter__(self) -> _Scanner:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._conn.close()


def _take(keys: list[bytes], replies: list[object], sent_at: int, write: _Writer,
          totals: list[int]) -> None:
    """Frame the dumped keys; a nil DUMP or PTTL -2 means the key expired meanwhile.

    A million keys pass through this loop: each record is three parts of one join
    (``cachefmt.key_header``, key, value), not concatenated bytes per key.
    """
    parts: list[bytes] = []
    append, header = parts.append, cachefmt.key_header
    expiring = gone = 0
    for key, value, ttl in zip(keys, replies[0::2], replies[1::2], strict=True):
        if isinstance(value, ReplyError) or isinstance(ttl, ReplyError):
            raise _refused_dump(value if isinstance(value, ReplyError) else ttl)
        if value is None or ttl == -2:
            gone += 1
            continue
        if ttl >= 0:
            expiring += 1
            append(header(key, value, sent_at + ttl))
        else:
            append(header(key, value, 0))
        append(key)
        append(value)
    totals[0] += len(parts) // 3
    totals[1] += expiring
    totals[2] += gone
    if parts:
        write(b"".join(parts))


def _refused_dump(reply: ReplyError) -> BackupError:
    """DUMP or PTTL answered an error (renamed away, denied by an ACL, a type the server cannot
    dump): the key is there, not expired. Counted as expired, every key was skipped and an
    empty backup reported success. The server's words stop before the key it quotes."""
    said = reply.message.split(", with args", 1)[0]
    return BackupError(f"the cache refused to dump a key: {said}", ref="backup.cache-dump",
                       hint="a backup reads every key with DUMP and PTTL: allow both on the server "
                            "(rename-command, ACL) for the backup's user; no backup was kept")


def _now_ms() -> int:
    return int(time.time() * 1000)


def _dump_pttl(key: bytes) -> bytes:
    size = len(key)
    return b"*2\r\n$4\r\nDUMP\r\n$%d\r\n%s\r\n*2\r\n$4\r\nPTTL\r\n$%d\r\n%s\r\n" % (size, key, size, key)


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


def _keyspace(conn: RespConnection) -> dict[int, DbKeys]:
    """Every db that holds keys (the server leaves the others out)."""
    text = conn.call("INFO", "keyspace")
    assert isinstance(text, bytes)
    return {int(db): DbKeys(int(keys), int(expires))
            for db, keys, expires in _KEYSPACE.findall(text.decode("utf-8", "replace"))}


def _size(stream: BinaryIO) -> int:
    return int(getattr(stream, "raw_size", 0) or 0)


def _describe(exc: BaseException, target: Target) -> str:
    return target.redact(str(exc) or type(exc).__name__)[:300]


def _ms(started: float) -> float:
    return (time.monotonic() - started) * 1000


_PARTLY = "the cache was emptied for the restore and is only partly refilled"


def _partly_restored(exc: BaseException, target: Target) -> RestoreError:
    """After the flush the cache holds only what was loaded so far: the error says so."""
    if isinstance(exc, RestoreError):  # the backup itself is at fault: its hint says what to do
        return RestoreError(f"{_PARTLY}: {exc.message}", ref=exc.ref, hint=exc.hint)
    if "OOM command not allowed" in str(exc):  # maxmemory with noeviction: again would fail alike
        return RestoreError(f"{_PARTLY}: {_describe(exc, target)}", ref="restore.cache-maxmemory",
                            hint="raise the cache's maxmemory (e.g. --maxmemory in its command in the spec; "
                                 "`reconcile apply`) above what the backup holds, then run the restore again")
    return RestoreError(f"{_PARTLY}: {_describe(exc, target)}", ref="restore.cache-partial",
                        hint="run the restore again: it empties the cache and loads every key of the backup")


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
