"""Putting a restored (staging) database in the live one's place, with no moment where a
failure leaves neither.

The swap only renames: live → a retired name, staging → live, and only then is the retired
copy dropped. If the second rename fails, the retired copy is renamed back. If the process
is killed between the renames, the next restore's ``recover`` finds the retired copy and
puts it back (no live database) or drops it (the new one is in place).

A database can be renamed only while nobody is connected to it: new connections are
refused first (``ALLOW_CONNECTIONS false``), then the open ones are terminated, and the
rename is retried while they go away. Connections are allowed again on whichever copy ends
up live, in the rename's own transaction: no kill leaves the live name closed by a rename.
A kill while the live database is closed, before its rename, is undone by ``recover``.
"""

from __future__ import annotations

import time

import psycopg
from psycopg import errors, sql

STAGING_SUFFIX = "__reconcile_restore"
RETIRED_SUFFIX = "__reconcile_retired"
RENAME_WAIT = 10.0


class SwapError(Exception):
    """The live database is missing and its previous copy could not be put back."""

    def __init__(self, db: str, retired: str) -> None:
        super().__init__(f"database {db} is missing; its previous copy is kept as {retired}")
        self.db, self.retired = db, retired


def staging_name(db: str) -> str:
    return _suffixed(db, STAGING_SUFFIX)


def retired_name(db: str) -> str:
    return _suffixed(db, RETIRED_SUFFIX)


def _suffixed(db: str, suffix: str) -> str:
    """``db`` + ``suffix`` within PostgreSQL's 63-byte names (cut on a character boundary)."""
    return db.encode()[:63 - len(suffix)].decode("utf-8", "ignore") + suffix


def exists(admin: psycopg.Connection, db: str) -> bool:
    return admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone() is not None


def drop_database(admin: psycopg.Connection, db: str) -> None:
    """Terminate connections and drop; ``WITH (FORCE)`` closes the race on PostgreSQL 13+."""
    _terminate(admin, db)
    force = sql.SQL(" WITH (FORCE)") if admin.info.server_version >= 130000 else sql.SQL("")
    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}{}").format(sql.Identifier(db), force))


def swap(admin: psycopg.Connection, db: str) -> None:
    """Staging becomes ``db``; the old ``db`` is dropped only once the new one is in place."""
    staging, retired = staging_name(db), retired_name(db)
    drop_database(admin, retired)  # a leftover from an earlier, finished swap
    if not exists(admin, db):
        _rename(admin, staging, db)
        return
    _rename(admin, db, retired)
    try:
        _rename(admin, staging, db)
    except BaseException:
        try:
            _rename(admin, retired, db)
        except psycopg.Error as exc:
            raise SwapError(db, retired) from exc
        raise
    drop_database(admin, retired)


def recover(admin: psycopg.Connection, db: str) -> None:
    """Undo what a swap killed halfway left: the retired copy is put back when ``db`` is
    missing (stopped between the renames), dropped when the new ``db`` is in place."""
    retired = retired_name(db)
    if exists(admin, retired):
        if exists(admin, db):
            drop_database(admin, retired)
        else:
            _rename(admin, retired, db)
    if closed(admin, db):  # killed after closing it, before its rename
        _allow(admin, db, True)


def closed(admin: psycopg.Connection, db: str) -> bool:
    """``db`` exists and refuses connections (what a swap does for a moment)."""
    row = admin.execute("SELECT datallowconn FROM pg_database WHERE datname = %s", (db,)).fetchone()
    return row is not None and not row[0]


def _rename(admin: psycopg.Connection, old: str, new: str) -> None:
    """Rename ``old`` to ``new`` once nobody is connected; connections are allowed again on
    ``new`` whether or not the rename happened (on failure ``old`` is opened again)."""
    _allow(admin, old, False)
    deadline = time.monotonic() + RENAME_WAIT
    try:
        while True:
            _terminate(admin, old)
            try:
                with admin.transaction():  # renamed and open again, or neither
                    admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                        sql.Identifier(old), sql.Identifier(new)))
                    _allow(admin, new, True)
                break
            except errors.ObjectInUse:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    except BaseException:
        try:
            _allow(admin, old, True)
        except psycopg.Error:
            pass  # the server went away: the rename's own error says more
        raise


def _allow(admin: psycopg.Connection, db: str, allowed: bool) -> None:
    admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
        sql.Identifier(db), sql.SQL("true" if allowed else "false")))


def _terminate(admin: psycopg.Connection, db: str) -> None:
    admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                  "WHERE datname = %s AND pid <> pg_backend_pid()", (db,))
