"""Loading a cache backup into the server: FLUSHALL, then RESTORE … ABSTTL REPLACE in batches.

The records come from ``cachefmt``; a batch of RESTOREs is sent while the ``+OK``s of the
one before are read back (as bytes, ``resp.read_ok``), so the server always has the next
batch. Keys whose absolute expiry has passed are left out, as the server would have
dropped them. Not atomic: the caller has checked the file's checksum before (a cut or
damaged stream still ends in an error, from the trailer).
"""

from __future__ import annotations

import time
from typing import BinaryIO

from reconciler.engines import cachefmt
from reconciler.engines.resp import RespConnection, RespError
from reconciler.errors import RestoreError

RESTORE_BATCH = 2000
RESTORE_BATCH_BYTES = 4 * 1024 * 1024


def flush(conn: RespConnection, maxmemory: int) -> None:
    """Empty every db. The keyspace is empty when FLUSHALL returns either way; ASYNC leaves
    freeing the old keys to the server's background thread, which on a million keys takes
    the server's main thread half a second it can spend on the RESTOREs instead.

    Not under ``maxmemory``: memory still held by keys being freed counts against it, and
    the RESTOREs that follow could be refused as out of memory. A server that does not know
    ASYNC gets a plain FLUSHALL.
    """
    if maxmemory == 0:
        try:
            conn.call("FLUSHALL", "ASYNC")
            return
        except RespError:
            pass
    conn.call("FLUSHALL")


def restore_records(conn: RespConnection, stream: BinaryIO
                     ) -> tuple[dict[int, int], dict[int, int], int]:
    """Pipelined RESTORE in batches: keys restored and with a TTL per db, keys skipped as expired."""
    restored: dict[int, int] = {}
    expiring: dict[int, int] = {}
    skipped, db = 0, 0
    pipe = _Pipeline(conn)
    try:
        for item in cachefmt.read_batches(stream, RESTORE_BATCH, RESTORE_BATCH_BYTES):
            if isinstance(item, cachefmt.Select):
                pipe.collect()
                db = item.db
                conn.call("SELECT", db)
                restored.setdefault(db, 0)
                expiring.setdefault(db, 0)
            elif isinstance(item, list):
                commands, with_ttl, gone = restore_commands(item, _now_ms())
                pipe.send(commands)
                restored[db] = restored.get(db, 0) + len(commands)
                expiring[db] = expiring.get(db, 0) + with_ttl
                skipped += gone
    except cachefmt.CacheFormatError as exc:
        raise RestoreError(f"the cache backup is unusable: {exc}", ref="restore.truncated",
                           hint="restore another backup; the cache now holds only part of this one") from None
    pipe.collect()
    return restored, expiring, skipped


def restore_commands(records: list[cachefmt.Record], now: int) -> tuple[list[bytes], int, int]:
    """RESTORE … REPLACE (ABSTTL when it expires) per record: (commands, with a TTL, expired).

    A key whose absolute expiry has passed is left out, as the server would have dropped it.
    """
    commands = []
    with_ttl = gone = 0
    for key, value, expire in records:
        if not expire:
            commands.append(b"*5\r\n$7\r\nRESTORE\r\n$%d\r\n%s\r\n$1\r\n0\r\n$%d\r\n%s\r\n"
                            b"$7\r\nREPLACE\r\n" % (len(key), key, len(value), value))
        elif expire > now:
            ttl = b"%d" % expire
            commands.append(b"*6\r\n$7\r\nRESTORE\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
                            b"$6\r\nABSTTL\r\n$7\r\nREPLACE\r\n"
                            % (len(key), key, len(ttl), ttl, len(value), value))
            with_ttl += 1
        else:
            gone += 1
    return commands, with_ttl, gone


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
        errors = self.conn.read_ok(self.in_flight) if self.in_flight else []
        self.in_flight = 0
        if errors:
            raise RespError(f"RESTORE failed: {errors[0].message}")


def _now_ms() -> int:
    return int(time.time() * 1000)
