"""Putting a restored (staging) database in the live one's place, with no moment where a
failure leaves neither.

The swap only renames: live → a retired name, staging → live, and only then is the retired
copy dropped. If the second rename fails, the retired copy is renamed back. If the process
is killed between the renames, the next restore's ``recover`` finds the retired copy and
puts it back (no live database). A retired copy next to a live database (killed after the
second rename) is the data the live database had before that restore, possibly rows no
backup holds: ``recover`` refuses to go on rather than drop it, unless it is a drop that was
cut halfway (PostgreSQL marks such a database invalid; nothing usable is left in it).

Ctrl-C or SIGTERM during a swap waits for it (``apply.signals.finishing``): the renames and the drop
of the retired copy finish, and the caller records the database as replaced, before the
interrupt takes effect.

A database can be renamed only while nobody is connected to it: new connections are
refused first (``ALLOW_CONNECTIONS false``), then the open ones are terminated, and the
rename is retried while they go away. Connections are allowed again on whichever copy ends
up live, in the rename's own transaction: no kill leaves the live name closed by a rename.
A kill while the live database is closed, before its rename, is undone by ``recover``.

Names: ``db`` + a suffix while that fits PostgreSQL's 63 bytes; a longer name is cut and
given a short hash of the whole name, so databases sharing a long prefix never share a
staging or retired copy. Older versions only cut the name: ``recover`` looks for that form too.
"""

from __future__ import annotations

import hashlib
import signal
import time
from collections.abc import Iterable

import psycopg
from psycopg import errors, sql

STAGING_SUFFIX = "__reconcile_restore"
RETIRED_SUFFIX = "__reconcile_retired"
RENAME_WAIT = 10.0
NAME_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1
_HASH_CHARS = 8
_INVALID = -2  # datconnlimit of a database whose DROP was cut halfway (PostgreSQL 15.4+)
_STOPS = (signal.SIGINT, signal.SIGTERM)


class SwapError(Exception):
    """The live database is missing and its previous copy could not be put back."""

    def __init__(self, db: str, retired: str) -> None:
        super().__init__(f"database {db} is missing; its previous copy is kept as {retired}")
        self.db, self.retired = db, retired


class LeftoverCopy(Exception):
    """A retired copy sits next to the live database: what ``db`` held before an earlier
    restore that stopped after putting its new copy in place. Not ours to drop."""

    def __init__(self, db: str, retired: str) -> None:
        super().__init__(f"database {retired} holds what database {db} held before an earlier restore "
                         "that stopped halfway; it may hold rows that no backup has")
        self.db, self.retired = db, retired


def staging_name(db: str) -> str:
    return _suffixed(db, STAGING_SUFFIX)


def retired_name(db: str) -> str:
    return _suffixed(db, RETIRED_SUFFIX)


def _suffixed(db: str, suffix: str) -> str:
    """``db`` + ``suffix`` within 63 bytes; a name too long for that is cut (on a character
    boundary) and keeps a hash of the whole name, so no two databases share the result."""
    if len(db.encode()) + len(suffix) <= NAME_BYTES:
        return db + suffix
    tag = "_" + hashlib.sha256(db.encode()).hexdigest()[:_HASH_CHARS]
    return _cut(db, NAME_BYTES - len(suffix) - len(tag)) + tag + suffix


def legacy_name(db: str, suffix: str) -> str:
    """The name versions before the hash gave: cut, so long names sharing a prefix collide."""
    return _cut(db, NAME_BYTES - len(suffix)) + suffix


def _cut(text: str, size: int) -> str:
    return text.encode()[:size].decode("utf-8", "ignore")


def clashes(names: Iterable[str]) -> list[str]:
    """Databases of one restore whose staging or retired copies would share a name (with each
    other's or with one of the databases): one restore's copy would replace another's."""
    names = list(names)
    owner: dict[str, str] = {db: db for db in names}
    found = []
    for db in names:
        for derived in (staging_name(db), retired_name(db)):
            other = owner.setdefault(derived, db)
            if other != db:
                found.append(f"{db} and {other} (both would use {derived})")
    return found


def exists(admin: psycopg.Connection, db: str) -> bool:
    return admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone() is not None


def drop_database(admin: psycopg.Connection, db: str) -> None:
    """Terminate connections and drop; ``WITH (FORCE)`` closes the race on PostgreSQL 13+."""
    _terminate(admin, db)
    force = sql.SQL(" WITH (FORCE)") if admin.info.server_version >= 130000 else sql.SQL("")
    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}{}").format(sql.Identifier(db), force))


def swap(admin: psycopg.Connection, db: str) -> str | None:
    """Staging becomes ``db``. Returns the retired copy (the old ``db``) for the caller to drop
    once it has recorded ``db`` as replaced, or None when there was no ``db`` before."""
    staging, retired = staging_name(db), retired_name(db)
    if exists(admin, retired):  # the restore's check found none: another restore made it
        raise LeftoverCopy(db, retired)
    if not exists(admin, db):
        _rename(admin, staging, db)
        return None
    _rename(admin, db, retired)
    try:
        _rename(admin, staging, db)
    except BaseException:
        try:
            _rename(admin, retired, db)
        except psycopg.Error as exc:
            raise SwapError(db, retired) from exc
        raise
    return retired


def recover(admin: psycopg.Connection, db: str) -> None:
    """Undo what a swap killed halfway left (``put_back``, then ``check_leftovers``)."""
    put_back(admin, db)
    check_leftovers(admin, db)


def put_back(admin: psycopg.Connection, db: str) -> None:
    """``db`` is missing and a retired copy of it exists (a swap stopped between its renames):
    the copy becomes ``db`` again. Run for every database of a restore before
    ``check_leftovers``, so a copy under an older, shared name goes to the one that lacks it."""
    if exists(admin, db):
        return
    for retired in _leftover_names(admin, db):
        if exists(admin, retired) and not invalid(admin, retired):
            _rename(admin, retired, db)
            return


def check_leftovers(admin: psycopg.Connection, db: str) -> None:
    """A retired copy next to ``db`` is refused (``LeftoverCopy``: it may hold the only copy
    of newer rows); one whose drop was cut halfway is dropped (nothing usable is left in it).
    A ``db`` a killed swap left closed is opened again."""
    for retired in _leftover_names(admin, db):
        if not exists(admin, retired):
            continue
        if not invalid(admin, retired):
            raise LeftoverCopy(db, retired)
        drop_database(admin, retired)
    if closed(admin, db):  # killed after closing it, before its rename
        _allow(admin, db, True)


def create_staging(admin: psycopg.Connection, db: str, owner: str, encoding: str,
                   options: sql.Composable) -> None:
    """An empty staging copy for ``db``, from template0 with the backup's encoding and the
    locale ``options`` (what ``CREATE DATABASE`` cannot change afterwards)."""
    admin.execute(sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING {}{}").format(
        sql.Identifier(staging_name(db)), sql.Identifier(owner), sql.Literal(encoding), options))


def drop_staging(admin: psycopg.Connection, db: str) -> None:
    """Drop ``db``'s staging copy under either name form (a staging copy is never the only
    copy of anything: the backup it was loaded from still is)."""
    for name in dict.fromkeys([staging_name(db), legacy_name(db, STAGING_SUFFIX)]):
        drop_database(admin, name)


def _leftover_names(admin: psycopg.Connection, db: str) -> list[str]:
    """Where a retired copy of ``db`` may be: today's name, and the cut one older versions
    gave, unless that is the plain name of the database the cut leaves (its own, then)."""
    names = [retired_name(db)]
    legacy = legacy_name(db, RETIRED_SUFFIX)
    if legacy not in names and not exists(admin, legacy[:-len(RETIRED_SUFFIX)]):
        names.append(legacy)
    return names


def invalid(admin: psycopg.Connection, db: str) -> bool:
    """``db`` is a database whose DROP was interrupted: PostgreSQL refuses connections to it,
    and dropping it is all that can be done with it."""
    row = admin.execute("SELECT datconnlimit FROM pg_database WHERE datname = %s", (db,)).fetchone()
    return row is not None and row[0] == _INVALID


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
