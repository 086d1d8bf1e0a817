"""PostgreSQL queries the engine needs: connections, user tables, exact row counts, FK checks.

Kept apart from ``postgres.py`` (which moves the data) because these are what backup and
verify must agree on: the same table list and the same ``count(*)`` on both sides, or a
correct restore would be reported as a mismatch.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import psycopg
from psycopg import sql

from reconciler.engines.base import DatabaseStats, Target, VerifyCheck, one_line
from reconciler.errors import BackupError

APPLICATION = "reconcile"

# Ordinary and partition leaf tables (their rows are what pg_dump's COPY writes), no temp
# tables, no system schemas, and no tables that belong to an extension (pg_dump skips
# their data too).
_TABLES = """
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND c.relpersistence <> 't'
  AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""

_FOREIGN_KEYS = """
SELECT con.conname, cn.nspname, cl.relname, cl.relkind, fn.nspname, fl.relname, fl.relkind,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(num, ord)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num ORDER BY k.ord),
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(num, ord)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num ORDER BY k.ord),
       con.convalidated
FROM pg_constraint con
JOIN pg_class cl ON cl.oid = con.conrelid JOIN pg_namespace cn ON cn.oid = cl.relnamespace
JOIN pg_class fl ON fl.oid = con.confrelid JOIN pg_namespace fn ON fn.oid = fl.relnamespace
WHERE con.contype = 'f' AND con.conparentid = 0
  AND cn.nspname <> 'information_schema' AND cn.nspname NOT LIKE 'pg\\_%'
ORDER BY 2, 3, 1
"""


def connect(target: Target, dbname: str, timeout: float = 10.0, *,
            autocommit: bool = False, statement_timeout_ms: int = 0) -> psycopg.Connection:
    """A connection from this host to the container; raises ``psycopg.Error``."""
    options = f"-c statement_timeout={statement_timeout_ms}" if statement_timeout_ms else None
    return psycopg.connect(host=target.host, port=target.port, user=target.user,
                           password=target.password or None, dbname=dbname,
                           connect_timeout=max(1, round(timeout)), application_name=APPLICATION,
                           autocommit=autocommit, options=options)


# libpq's words when the server answers but will not let this connection in (no SQLSTATE is
# kept for errors while connecting): a wrong or missing password, an unknown role, pg_hba, or
# a database the spec names that the server does not have.
_REFUSED = re.compile(r"authentication failed|fe_sendauth|no pg_hba\.conf entry|"
                      r"(role|database) \".*\" does not exist|is not currently accepting connections")


_MISSING_DATABASE = re.compile(r'database "(.*?)" does not exist')

# The names the spec gives that the server lacks, in the spec's order: one look at pg_database.
_MISSING = """
SELECT u.name FROM unnest(%s::text[]) WITH ORDINALITY AS u(name, position)
WHERE NOT EXISTS (SELECT 1 FROM pg_database d WHERE d.datname = u.name)
ORDER BY u.position
"""


def missing_databases(conn: psycopg.Connection, names: Iterable[str]) -> list[str]:
    """The databases of ``names`` the server does not have (one query, however many)."""
    return [row[0] for row in conn.execute(_MISSING, (list(names),)).fetchall()]


def missing_database(exc: BaseException) -> str | None:
    """The database a connection was turned down for because the server lacks it, if that was why."""
    found = _MISSING_DATABASE.search(str(exc))
    return found.group(1) if found else None


def does_not_exist(names: Iterable[str]) -> str:
    """The server's own words, once per database (what ``refused`` and heal's rules recognise)."""
    return "; ".join(f'database "{name}" does not exist' for name in names)


def home_database(target: Target) -> str:
    """The database the image creates (``POSTGRES_DB``, else the user): there to log in to."""
    return target.database or target.user or "postgres"


def spec_databases(target: Target) -> list[str]:
    """Every database the spec names: the image's own and ``backup.databases``, once each."""
    return list(dict.fromkeys([home_database(target), *target.service.backup.databases]))


def check_databases(target: Target, missing: list[str]) -> None:
    """A backup of databases the server lacks fails, naming them and what to do."""
    if missing:
        raise missing_error(target, missing)


def missing_error(target: Target, missing: list[str]) -> BackupError:
    one = len(missing) == 1
    them = "it" if one else "them"
    unlisted = [name for name in missing if name not in target.service.backup.databases]
    fix = (f"remove {them} from backup.databases of {target.service_name}" if not unlisted else
           f"set POSTGRES_DB of {target.service_name} to a database the server has")
    return BackupError(f"{'database' if one else 'databases'} {', '.join(missing)} of {target.service_name} "
                       f"{'does' if one else 'do'} not exist on the server", ref="backup.database-missing",
                       hint=f"create {them}, or {fix}")


def refused(exc: BaseException) -> bool:
    """The server runs and turned down what the spec asks for (credentials, a database): no
    restart or recreate changes that, and a recreate would put a backup in place of its data."""
    return bool(_REFUSED.search(str(exc)))


def describe(exc: BaseException, target: Target) -> str:
    """A driver error as one short, redacted line."""
    text = str(exc) or type(exc).__name__
    return one_line(target.redact(text)) or type(exc).__name__


def table_name(schema: str, table: str) -> str:
    return f"{schema}.{table}"


def list_tables(conn: psycopg.Connection) -> list[tuple[str, str]]:
    return [(s, t) for s, t in conn.execute(_TABLES).fetchall()]


def count_rows(conn: psycopg.Connection, tables: Iterable[tuple[str, str]]) -> dict[str, int]:
    """Exact ``count(*)`` per table (``ONLY``: inheritance children are counted on their own)."""
    counts = {}
    for schema, table in tables:
        query = sql.SQL("SELECT count(*) FROM ONLY {}.{}").format(
            sql.Identifier(schema), sql.Identifier(table))
        counts[table_name(schema, table)] = int(conn.execute(query).fetchone()[0])
    return counts


def database_facts(conn: psycopg.Connection) -> tuple[int, str]:
    """Size in bytes and encoding of the connected database."""
    row = conn.execute("SELECT pg_database_size(current_database()), pg_encoding_to_char(encoding) "
                       "FROM pg_database WHERE datname = current_database()").fetchone()
    return int(row[0]), str(row[1])


def snapshot_stats(conn: psycopg.Connection, dbname: str) -> DatabaseStats:
    """Size, encoding and exact row counts, read inside the caller's snapshot transaction."""
    size, encoding = database_facts(conn)
    return DatabaseStats(dbname, size, count_rows(conn, list_tables(conn)), encoding)


def verify_database(conn: psycopg.Connection, expected: DatabaseStats,
                    label: str) -> tuple[list[VerifyCheck], set[str]]:
    """Table count, exact rows per table, no orphan FK rows; and the tables present."""
    present = list_tables(conn)
    names = {table_name(s, t): (s, t) for s, t in present}
    checks = [VerifyCheck(f"{label}: table count", len(expected.tables), len(present),
                          len(expected.tables) == len(present))]
    for name, rows in sorted(expected.tables.items()):
        actual: object = "missing"
        if name in names:
            actual = count_rows(conn, [names[name]])[name]
        checks.append(VerifyCheck(f"{label}: rows in {name}", rows, actual, actual == rows))
    return checks + foreign_key_checks(conn, label), {n for s, t in present
                                                       for n in (table_name(s, t), t)}


def critical_checks(critical: Iterable[str], present: set[str], label: str) -> list[VerifyCheck]:
    """Each critical table (``users`` or ``schema.users``) must exist in some database."""
    prefix = f"{label}: " if label else ""
    return [VerifyCheck(f"{prefix}critical table {wanted}", "present",
                        "present" if wanted in present else "missing", wanted in present)
            for wanted in critical]


def foreign_key_checks(conn: psycopg.Connection, label: str) -> list[VerifyCheck]:
    """One check per FK constraint: validated, and no child row without its parent."""
    checks = []
    for name, cs, ct, ckind, ps, pt, pkind, ccols, pcols, validated in conn.execute(
            _FOREIGN_KEYS).fetchall():
        orphans = int(conn.execute(_orphan_query(cs, ct, ckind, ps, pt, pkind, ccols, pcols))
                      .fetchone()[0])
        ok = orphans == 0 and bool(validated)
        actual = f"{orphans} orphan rows" + ("" if validated else ", not validated")
        checks.append(VerifyCheck(f"{label}: foreign key {name} on {cs}.{ct}", "0 orphan rows",
                                  actual, ok))
    return checks


def _orphan_query(cs: str, ct: str, ckind: str, ps: str, pt: str, pkind: str,
                  ccols: list[str], pcols: list[str]) -> sql.Composed:
    """Rows whose FK columns are all set (MATCH SIMPLE) but match no parent row."""
    only = {True: sql.SQL("ONLY "), False: sql.SQL("")}
    not_null = sql.SQL(" AND ").join(sql.SQL("c.{} IS NOT NULL").format(sql.Identifier(c))
                                     for c in ccols)
    joined = sql.SQL(" AND ").join(sql.SQL("p.{} = c.{}").format(sql.Identifier(p), sql.Identifier(c))
                                   for c, p in zip(ccols, pcols, strict=True))
    return sql.SQL("SELECT count(*) FROM {}{}.{} c WHERE {} AND NOT EXISTS "
                   "(SELECT 1 FROM {}{}.{} p WHERE {})").format(
        only[ckind == "r"], sql.Identifier(cs), sql.Identifier(ct), not_null,
        only[pkind == "r"], sql.Identifier(ps), sql.Identifier(pt), joined)
