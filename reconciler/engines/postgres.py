"""PostgreSQL: deep probe, snapshot-consistent logical dumps, restore into a fresh database.

pg_dump and psql run INSIDE the server's container (``docker exec``), so the client always
matches the server's version and the host needs no PostgreSQL tools. The row counts come
from the very snapshot the dump is made from (``pg_export_snapshot()`` in a REPEATABLE READ
transaction, then ``pg_dump --snapshot``), so a restore is verified like for like.

Restore never touches the live database until the new one is complete and verified: the
dump is loaded into a staging database, the schema by psql (in the server's container,
like pg_dump), the table data over several connections at once (``pgload``), then the
indexes and constraints by psql again; only after the stream ended cleanly (checksum, end
marker) and the staged copy's row counts match the backup is the old database dropped
(connections terminated) and the staging one renamed. A damaged file, a failed psql or a
failed COPY leaves the current data as it was. The price: room for two copies.

Before any data is read, every staging database is created with the encoding and locale
the backed-up one had (a server lacking that locale fails there), and what an earlier,
killed restore left is put back, or refused when it may hold the only copy of newer rows
(``pgswap``). Ctrl-C during the swaps waits for the database being swapped, so the
interrupt's note names exactly the databases that were replaced.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from typing import BinaryIO

import psycopg

from reconciler import dockerio
from reconciler.apply.signals import finishing
from reconciler.engines import fifo, pgformat, pgglobals, pgload, pgsplit, pgswap
from reconciler.engines import pgcatalog as pg
from reconciler.engines.base import (
    BackupStats,
    DatabaseStats,
    DockerBacked,
    ProbeResult,
    ProbeStatus,
    RestoreStats,
    Target,
    VerifyCheck,
    VerifyReport,
    cause_text,
    failure_detail,
    postgres_databases,
)
from reconciler.engines.compress import ZSTD_DEFAULT
from reconciler.engines.pgswap import staging_name
from reconciler.errors import BackupError, ReconcileError, RestoreError
from reconciler.spec.models import Kind
from reconciler.storage.files import human_bytes

CONNECTIONS_DEGRADED = 0.8
# Each psql session of a restore: no per-statement WAL flush worth waiting for (the staging
# database is thrown away on any failure anyway), and index builds get memory enough to
# sort in one pass.
_RESTORE_PRELUDE = b"SET synchronous_commit = off;\nSET maintenance_work_mem = '256MB';\n"
# pg_dump sets this before the first object and not again while it stays the same; the
# second psql session starts from the server's default instead, so it is set here.
_POST_PRELUDE = b"SET default_tablespace = '';\n"
# SQL after the table data larger than this (large objects, say) waits on disk, not in memory.
_POST_IN_MEMORY = 64 * 1024 * 1024
RESTORE_WORKERS = min(4, max(2, os.cpu_count() or 2))
RESTORE_SPACE_MARGIN = 0.10  # over the backed-up databases' size, for the staging copies a restore loads
_CHUNK = 1024 * 1024


class PostgresEngine(DockerBacked):
    file_extension = "sql"
    zstd = ZSTD_DEFAULT

    # -- probe -------------------------------------------------------------------------------

    def probe(self, target: Target, timeout: float = 5.0) -> ProbeResult:
        """Log in to the target's own database, read its vitals, and look up every database
        the spec names in pg_database at once: a missing one is ``refused`` (the server runs,
        the spec asks for what it lacks), like a password it turns down."""
        db = pg.home_database(target)
        started = time.monotonic()
        try:
            with pg.connect(target, db, timeout, autocommit=True,
                            statement_timeout_ms=int(timeout * 1000)) as conn:
                version, size, used, limit = conn.execute(
                    "SELECT current_setting('server_version'), pg_database_size(current_database()),"
                    " (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'),"
                    " current_setting('max_connections')::int").fetchone()
                missing = pg.missing_databases(conn, pg.spec_databases(target))
        except psycopg.OperationalError as exc:
            status = ProbeStatus.REFUSED if pg.refused(exc) else ProbeStatus.UNREACHABLE
            return ProbeResult(status, {"error": pg.describe(exc, target)}, _ms(started))
        except psycopg.Error as exc:
            return ProbeResult(ProbeStatus.UNHEALTHY, {"error": pg.describe(exc, target)},
                               _ms(started))
        details = {"version": version, "database": db, "database_size": size,
                   "connections": used, "max_connections": limit}
        if missing:
            return ProbeResult(ProbeStatus.REFUSED, {"error": pg.does_not_exist(missing),
                                                     "missing_databases": missing, **details}, _ms(started))
        status = ProbeStatus.DEGRADED if used > CONNECTIONS_DEGRADED * limit else ProbeStatus.HEALTHY
        return ProbeResult(status, details, _ms(started))

    def estimate_size(self, target: Target) -> int:
        """On-disk size of the databases: a plain dump is rarely larger (indexes are DDL).
        Read first of all, so a database the server lacks fails the backup before any dump."""
        databases = postgres_databases(target)
        with _backup_errors(target, "reading the size of the databases"), \
                pg.connect(target, pg.home_database(target), autocommit=True) as conn:
            pg.check_databases(target, pg.missing_databases(conn, databases))
            row = conn.execute("SELECT sum(pg_database_size(datname)) FROM pg_database"
                               " WHERE datname = ANY(%s)", (databases,)).fetchone()
        return int(row[0] or 0)

    # -- backup ------------------------------------------------------------------------------

    def backup(self, target: Target, out: BinaryIO) -> BackupStats:
        databases = postgres_databases(target)
        counter = _Counter(out.write)
        if len(databases) == 1:
            stats = (self._dump(target, databases[0], counter),)
        else:
            boundary = pgformat.new_boundary()
            counter(pgformat.multi_header(boundary))
            stats = []
            for db in databases:
                counter(pgformat.section_header(boundary, db))
                stats.append(self._dump(target, db, counter))
            counter(pgformat.section_end(boundary))
        return BackupStats(Kind.POSTGRES, raw_bytes=counter.count, databases=tuple(stats))

    def _dump(self, target: Target, db: str, write: Callable[[bytes], object]) -> DatabaseStats:
        """Counts and dump of one database from one exported snapshot."""
        with _backup_errors(target, f"opening a snapshot of database {db}"):
            conn = pg.connect(target, db)
        try:
            with _backup_errors(target, f"counting rows in database {db}"):
                conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                conn.read_only = True
                snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
                stats = pg.snapshot_stats(conn, db)
                needs = pgglobals.capture(conn)
            write(needs)
            self._run_pg_dump(target, db, snapshot, write)
            return stats
        finally:
            conn.close()

    def _run_pg_dump(self, target: Target, db: str, snapshot: str,
                     write: Callable[[bytes], object]) -> None:
        tail = pgformat.Tail()

        def sink(chunk: bytes) -> None:
            tail.add(chunk)
            write(chunk)

        args = ["--no-password", "--format=plain", f"--snapshot={snapshot}",
                "-U", target.user, "-d", db]
        env = _pg_env(target, "dump")
        try:
            result = fifo.stream_out(
                self.client, self._image(target),
                lambda path: ["pg_dump", *_tcp(target), *args, "-f", path], sink,
                {"network_container": target.container_id, "environment": env},
                lambda: dockerio.exec_stream(self.client, target.container_id, ["pg_dump", *args],
                                             sink=sink, environment=env))
        except dockerio.StreamAborted as exc:
            raise BackupError(f"dump of database {db} aborted: {cause_text(exc, target)}",
                              ref="backup.stream", hint="check free space and the backup "
                              "destination; pg_dump was stopped, nothing was kept") from None
        if result.exit_code != 0:
            raise BackupError(f"pg_dump of database {db} failed (exit {result.exit_code}): "
                              f"{failure_detail(result.exit_code, _stderr(target, result))}",
                              ref="backup.pg_dump", hint="see pg_dump's message; the partial "
                              "dump must be discarded")
        check_dump_complete(tail.data, db)

    # -- restore -----------------------------------------------------------------------------

    def restore_precheck(self, target: Target, stats: BackupStats) -> None:
        """Refuse, before any staging database is made, a restore the server's disk clearly
        cannot hold: each database is loaded beside the live one, so its disk needs room for a
        second copy: the smaller of its size when backed up (bloat included) and the dump's
        (indexes not), plus a margin. Running out mid-load took the server down (QA: PANIC on
        its next checkpoint, then a crash loop, the staging copy holding the space). A disk it
        cannot measure is not refused."""
        size = sum(db.size_bytes for db in stats.databases)
        needed = min(size, stats.raw_bytes or size)
        free = self._free_bytes(target) if needed else None
        required = int(needed * (1 + RESTORE_SPACE_MARGIN))
        if free is None or free >= required:
            return
        raise RestoreError(f"not enough free space on {target.service_name}'s data disk for the restore: the copy "
                           f"it loads beside the live data needs about {human_bytes(required)} ({human_bytes(needed)} "
                           f"+ 10 % margin), and {human_bytes(free)} is free",
                           ref="restore.disk-space",
                           hint=f"free space on the volume or disk holding {target.service_name}'s data (or make it "
                                "larger), then restore again; the live databases are unchanged")

    def _free_bytes(self, target: Target) -> int | None:
        """Free bytes on the server's data directory, as ``df`` inside its container says."""
        out: list[bytes] = []
        try:
            result = dockerio.exec_stream(self.client, target.container_id,
                                          ["sh", "-c", 'df -Pk "${PGDATA:-/var/lib/postgresql/data}"'],
                                          sink=out.append)
        except (ReconcileError, dockerio.StreamAborted):
            return None
        lines = b"".join(out).decode("utf-8", "replace").split("\n")
        fields = lines[1].split() if result.exit_code == 0 and len(lines) > 1 else []
        return int(fields[3]) * 1024 if len(fields) >= 4 and fields[3].isdigit() else None

    def restore(self, target: Target, stream: BinaryIO, stats: BackupStats) -> RestoreStats:
        started = time.monotonic()
        expected = {d.name: d for d in stats.databases}
        names = list(expected) or postgres_databases(target)
        _refuse_clashes(target, names)
        reader = pgformat.SectionReader(stream)
        progress = _Progress()
        loaded: list[str] = []
        swapped: list[str] = []
        try:
            self._prepare(target, names, expected)
            for name, chunks in reader.parts():
                db = name or names[0]
                if db not in names:
                    raise RestoreError(f"the backup holds database {db}, which its metadata does not list",
                                       ref="restore.mismatch", hint="pair the file with its own metadata")
                self._load(target, db, chunks, progress)
                loaded.append(db)
            report = self._verify_staged(target, stats, loaded)
            self._swap_all(target, loaded, swapped)
        except pgformat.DumpFormatError as exc:
            self._drop_staging(target, names)
            raise RestoreError(f"the backup stream is malformed: {exc}", ref="restore.truncated",
                               hint="restore another backup; the current database is unchanged") from None
        except BaseException as exc:
            self._drop_staging(target, names)
            if isinstance(exc, KeyboardInterrupt):
                exc.add_note(_swap_state(target.service_name, names, swapped))
            if isinstance(exc, RestoreError) and swapped:
                raise RestoreError(f"{exc.message}; {_swap_state(target.service_name, names, swapped)}",
                                   ref=exc.ref, hint=exc.hint) from None
            raise
        return RestoreStats(Kind.POSTGRES, raw_bytes=progress.count,
                            tables_restored=stats.table_count, rows_restored=stats.row_count,
                            seconds=round(time.monotonic() - started, 3), verify=report)

    def _prepare(self, target: Target, names: list[str], expected: dict[str, DatabaseStats]) -> None:
        """Before any data is read: what a killed restore left is put back or refused (every
        database's copy put back first, so a copy under an older, shared name goes to the one
        that lacks it), then every staging database is created, so a locale the server lacks
        fails before the first database is loaded."""
        for step in (pgswap.put_back, pgswap.check_leftovers):
            for db in names:
                with _restore_errors(target, f"checking what earlier restores left of database {db}"), \
                        _admin(target, db) as admin:
                    try:
                        step(admin, db)
                    except pgswap.LeftoverCopy as exc:
                        raise _leftover_error(target, exc) from None
        for db in names:
            self._create_staging(target, db, expected.get(db))

    def _create_staging(self, target: Target, db: str, stats: DatabaseStats | None) -> None:
        """An empty staging database, with the encoding and locale the backed-up one had
        (none recorded: UTF8 and the server's default locale, as older versions did)."""
        encoding, locale = (stats.encoding, stats.locale) if stats else ("UTF8", None)
        with _restore_errors(target, f"creating staging database for {db}"), _admin(target, db) as admin:
            pgswap.drop_staging(admin, db)
            try:
                options = pg.locale_options(locale, admin.info.server_version)
                pgswap.create_staging(admin, db, target.user, encoding, options)
            except (pg.LocaleUnsupported, *pg.LOCALE_ERRORS) as exc:
                if locale is None:
                    raise
                raise pg.locale_error(target, db, locale, exc) from None

    def _load(self, target: Target, db: str, chunks: Iterator[bytes], progress: _Progress) -> None:
        """Load the dump into the staging database: schema, data (in parallel), the rest."""
        staging = staging_name(db)
        splitter = pgsplit.DumpSplitter()
        tail = pgformat.Tail()
        pre: list[bytes] = [_RESTORE_PRELUDE]
        with tempfile.SpooledTemporaryFile(max_size=_POST_IN_MEMORY) as post, \
                _DataLoad(target, staging, splitter) as data:
            try:
                for event in splitter.events(_counted(chunks, progress, tail)):
                    match event:
                        case pgsplit.Script(text) if not data.started:
                            pre.append(text)
                        case pgsplit.Script(text):
                            post.write(text)
                        case pgsplit.CopyStart(statement):
                            if not data.started:
                                self._psql(target, db, staging, pre, "the schema")
                            data.begin(statement)
                        case pgsplit.Rows(rows):
                            data.put(rows)
                        case pgsplit.CopyEnd():
                            pass
            except pgsplit.DumpCutError as exc:
                raise RestoreError(f"the dump of database {db} is incomplete ({exc})",
                                   ref="restore.truncated", hint="restore another backup; the "
                                   "current database is unchanged") from None
            if not pgformat.dump_is_complete(tail.data):
                raise RestoreError(f"the dump of database {db} in this backup is incomplete "
                                   "(no completion marker)", ref="restore.truncated",
                                   hint="restore another backup; the current database is unchanged")
            if not data.started:
                self._psql(target, db, staging, pre, "the dump")
            else:
                data.finish()
                post.seek(0)
                rest = iter(lambda: post.read(_CHUNK), b"")
                self._psql(target, db, staging, chain([_RESTORE_PRELUDE, *splitter.prelude, _POST_PRELUDE],
                                                      rest), "the indexes and constraints")

    def _psql(self, target: Target, db: str, staging: str, script: Iterable[bytes], what: str) -> None:
        """Run SQL from the dump with the server's own psql, inside its container."""
        args = ["-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1", "-U", target.user, "-d", staging]
        try:
            result = dockerio.exec_stream(self.client, target.container_id, ["psql", *args],
                                          sink=_discard, environment=_pg_env(target, "restore"),
                                          source=script)
        except dockerio.StreamAborted as exc:
            raise RestoreError(f"restore of database {db} aborted: {cause_text(exc, target)}",
                               ref="restore.stream", hint="the current database is unchanged") from None
        if result.exit_code != 0:
            raise RestoreError(f"psql restore of {what} of database {db} failed (exit {result.exit_code}): "
                               f"{failure_detail(result.exit_code, _stderr(target, result))}",
                               ref="restore.psql", hint="the current database is unchanged")

    def _verify_staged(self, target: Target, stats: BackupStats, loaded: list[str]) -> VerifyReport:
        staged = {db: staging_name(db) for db in loaded}
        critical = pg.backed_up(target.service.backup.critical_tables, stats)
        report = self._verify(target, stats, staged, critical=critical)
        if not report.ok:
            raise RestoreError(f"the restored data does not match the backup: {report.summary()}",
                               ref="restore.verify", hint="the current database was left as it "
                               "was; check the backup with `reconcile backups verify`")
        return report

    def _swap_all(self, target: Target, loaded: list[str], swapped: list[str]) -> None:
        """One database after another. Ctrl-C waits for the one being swapped: it is recorded
        as replaced the moment its new copy is in place, and its previous copy is dropped
        whole (not cut halfway), before the interrupt takes effect."""
        for db in loaded:
            with finishing(f"replacing database {db}", then_stop=True):
                retired = self._swap_in(target, db)
                swapped.append(db)
                if retired is not None:
                    self._drop_retired(target, db, retired)

    def _swap_in(self, target: Target, db: str) -> str | None:
        """Rename the staging copy into place; the previous copy's name, to drop, if any."""
        with _restore_errors(target, f"replacing database {db}"), _admin(target, db) as admin:
            try:
                return pgswap.swap(admin, db)
            except pgswap.SwapError as exc:
                raise RestoreError(f"{exc}: the restore failed while renaming the new copy into place",
                                   ref="restore.swap", hint="run the restore again (it puts "
                                   f"{exc.retired} back first), or rename it by hand") from None
            except pgswap.LeftoverCopy as exc:
                raise _leftover_error(target, exc) from None

    def _drop_retired(self, target: Target, db: str, retired: str) -> None:
        """The previous copy goes once ``db`` is recorded as replaced. Should the drop fail, the
        restore did happen: the error says so, and what to do with the copy."""
        with _DriverErrors(RestoreError, "restore.cleanup", target,
                           f"database {db} was replaced, but dropping its previous copy {retired} failed",
                           f"drop {retired} by hand once you no longer need it: the next restore of "
                           f"{target.service_name} refuses to start while it is there"), \
                _admin(target, db) as admin:
            pgswap.drop_database(admin, retired)

    def _drop_staging(self, target: Target, names: list[str]) -> None:
        """Best effort: a failed restore should not leave a staging copy filling the disk."""
        for db in names:
            try:
                with _admin(target, db) as admin:
                    pgswap.drop_staging(admin, db)
            except psycopg.Error:
                pass

    def _image(self, target: Target) -> str:
        """The image the server container RUNS (not the spec's, which may be newer)."""
        return str(dockerio.inspect_container(self.client, target.container_id)["Image"])

    # -- verify ------------------------------------------------------------------------------

    def verify(self, target: Target, expected: BackupStats) -> VerifyReport:
        return self._verify(target, expected, {d.name: d.name for d in expected.databases})

    def _verify(self, target: Target, expected: BackupStats, actual_db: dict[str, str],
                critical: list[str] | None = None) -> VerifyReport:
        """Against the backup's record. ``critical``: the critical tables to require (default:
        the spec's; a restore requires only those the backup holds, as it cannot make others:
        a name the backup lacks, a typo or a table the app had not made yet, refused every
        restore of it, also the one that would have saved the data)."""
        checks, present = [], set()
        for stats in expected.databases:
            found, names = self._verify_database(target, stats, actual_db.get(stats.name, stats.name))
            checks += found
            present |= names
        label = expected.databases[0].name if len(expected.databases) == 1 else ""
        wanted = target.service.backup.critical_tables if critical is None else critical
        checks += pg.critical_checks(wanted, present, label)
        return VerifyReport(tuple(checks))

    def _verify_database(self, target: Target, stats: DatabaseStats,
                         actual: str) -> tuple[list[VerifyCheck], set[str]]:
        """One database's checks. A backed-up database the server no longer has is the
        biggest mismatch there is: a failed check, and the others are still checked. (A
        staging copy that vanished is not: that stays an error.)"""
        with _verify_errors(target, f"verifying database {stats.name}"):
            try:
                conn = pg.connect(target, actual, autocommit=True)
            except psycopg.OperationalError as exc:
                if actual != stats.name or f'database "{actual}" does not exist' not in str(exc):
                    raise
                return [VerifyCheck(f"{stats.name}: database", "present", "missing", False)], set()
            with conn:
                return pg.verify_database(conn, stats, stats.name)


# -- helpers ---------------------------------------------------------------------------------

def _stderr(target: Target, result) -> str:
    """The client's stderr, secrets removed before it is shortened (so none is cut in half)."""
    return target.redact(result.stderr.decode("utf-8", "replace"))


def check_dump_complete(tail: bytes, db: str) -> None:
    """Raise unless the dump ends with pg_dump's completion marker."""
    if not pgformat.dump_is_complete(tail):
        raise BackupError(f"the dump of database {db} is incomplete (no completion marker)",
                          ref="backup.truncated",
                          hint="pg_dump stopped early or its output was cut; the dump is discarded")


class _Progress:
    """Raw bytes of the dump read so far."""

    count = 0


class _DataLoad:
    """The table data of one restore: loading starts at the first COPY, aborts on any error."""

    def __init__(self, target: Target, staging: str, splitter: pgsplit.DumpSplitter) -> None:
        self.target, self.staging, self.splitter = target, staging, splitter
        self.loader: pgload.ParallelCopy | None = None
        self.statement = b""

    @property
    def started(self) -> bool:
        return self.loader is not None

    def begin(self, statement: bytes) -> None:
        if self.loader is None:
            self.loader = pgload.ParallelCopy(lambda: pg.connect(self.target, self.staging),
                                              RESTORE_WORKERS, self.splitter.settings)
        self.statement = statement

    def put(self, rows: bytes) -> None:
        assert self.loader is not None
        with self._errors():
            self.loader.put(self.statement, rows)

    def finish(self) -> None:
        assert self.loader is not None
        with self._errors():
            self.loader.finish()

    def _errors(self) -> _DriverErrors:
        return _restore_errors(self.target, "loading table data into the staging database")

    def __enter__(self) -> _DataLoad:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if exc is not None and self.loader is not None:
            self.loader.abort()


def _counted(chunks: Iterable[bytes], progress: _Progress, tail: pgformat.Tail) -> Iterator[bytes]:
    for chunk in chunks:
        progress.count += len(chunk)
        tail.add(chunk)
        yield chunk


def _tcp(target: Target) -> list[str]:
    """How a helper in the server's network namespace reaches it."""
    return ["-h", "127.0.0.1", "-p", str(target.port)]


def _pg_env(target: Target, role: str) -> dict[str, str]:
    """Password by environment (never argv); the session's name tells what it is. The port
    also names the server's socket, which a client inside its container connects through."""
    env = {"PGAPPNAME": f"{pg.APPLICATION}-{role}", "PGPORT": str(target.port)}
    if target.password:
        env["PGPASSWORD"] = target.password
    return env


def _discard(_: bytes) -> None:
    return None


def _admin(target: Target, db: str) -> psycopg.Connection:
    """A maintenance connection that is not to ``db`` (which may be dropped or renamed)."""
    return pg.connect(target, "template1" if db == "postgres" else "postgres", autocommit=True)


def _ms(started: float) -> float:
    return (time.monotonic() - started) * 1000


class _Counter:
    """Counts the raw bytes written to the caller's ``out``."""

    def __init__(self, write: Callable[[bytes], object]) -> None:
        self.write = write
        self.count = 0

    def __call__(self, chunk: bytes) -> None:
        self.write(chunk)
        self.count += len(chunk)


class _DriverErrors:
    """Turn driver errors into the stage's error type, redacted, with a hint."""

    def __init__(self, error: type, ref: str, target: Target, what: str, hint: str) -> None:
        self.error, self.ref, self.target, self.what, self.hint = error, ref, target, what, hint

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is not None and isinstance(exc, psycopg.Error):
            raise self.error(f"{self.what}: {pg.describe(exc, self.target)}", ref=self.ref,
                             hint=self.hint) from None
        return False


class _BackupDriverErrors(_DriverErrors):
    """A database that vanished between the check and its dump is named, not blamed on the
    server or the password."""

    def __exit__(self, kind, exc, tb) -> bool:
        if isinstance(exc, psycopg.OperationalError) and (name := pg.missing_database(exc)):
            raise pg.missing_error(self.target, [name]) from None
        return super().__exit__(kind, exc, tb)


def _backup_errors(target: Target, what: str) -> _DriverErrors:
    return _BackupDriverErrors(BackupError, "backup.postgres", target, what,
                               "is the server up and the password in the spec right? (reconcile health)")


def _swap_state(service: str, names: list[str], swapped: list[str]) -> str:
    """What an interrupted restore left: the live databases are replaced only by the swaps."""
    if not swapped:
        return f"{service}'s live databases are unchanged (the backup was loading into a staging copy)"
    rest = [db for db in names if db not in swapped]
    return (f"{service}: {_databases(swapped)} replaced"
            + (f", {_databases(rest)} not: restore again to bring them to one backup" if rest else ""))


def _databases(names: list[str]) -> str:
    return ("database " if len(names) == 1 else "databases ") + ", ".join(names)


def _refuse_clashes(target: Target, names: list[str]) -> None:
    """Two databases whose copies would share a name: one's data would go into the other."""
    if found := pgswap.clashes(names):
        raise RestoreError(f"databases of {target.service_name} would share a staging or retired copy: "
                           f"{'; '.join(found)}", ref="restore.names",
                           hint="rename one of them (or restore them from separate backups); nothing was changed")


def _leftover_error(target: Target, exc: pgswap.LeftoverCopy) -> RestoreError:
    return RestoreError(f"{exc}", ref="restore.leftover",
                        hint=f"nothing was changed; keep what you need from {exc.retired}, then drop it "
                        f"(DROP DATABASE \"{exc.retired}\") or put it back in place of {exc.db}, and restore "
                        f"{target.service_name} again")


def _restore_errors(target: Target, what: str) -> _DriverErrors:
    return _DriverErrors(RestoreError, "restore.postgres", target, what,
                   "the current database is unchanged (the restore works on a copy); check the "
                   "server and the password in the spec (reconcile health), then restore again")


def _verify_errors(target: Target, what: str) -> _DriverErrors:
    return _DriverErrors(RestoreError, "verify.postgres", target, what,
                   "is the server up and the password in the spec right? (reconcile health)")
