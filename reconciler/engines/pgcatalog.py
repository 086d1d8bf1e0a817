"""PostgreSQL queries the engine needs: connections, user tables, exact row counts, FK checks,
each database's locale.

Kept apart from ``postgres.py`` (which moves the data) because these are what backup and
verify must agree on: the same table list and the same ``count(*)`` on both sides, or a
correct restore would be reported as a mismatch.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import psycopg
from psycopg import sql

from reconciler.engines.base import (
    DatabaseLocale,
    DatabaseStats,
    LocaleProvider,
    Target,
    VerifyCheck,
    one_line,
)
from reconciler.errors import BackupError, RestoreError

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


# A name part written as is in a table's key; any other is quoted as in SQL (version-independent:
# keywords are not quoted, they are no ambiguity in a key).
_PLAIN = re.compile(r"[a-z_][a-z0-9_$]*\Z")


def table_name(schema: str, table: str) -> str:
    """The table's key in the stats: ``schema.table``, a part quoted when it needs quoting in
    SQL (``s."a.b"`` and ``"s.a".b`` stay apart); plain names keep the form they always had."""
    return f"{_key_part(schema)}.{_key_part(table)}"


def legacy_table_name(schema: str, table: str) -> str:
    """The key older backups recorded (never quoted), for reading their metadata."""
    return f"{schema}.{table}"


def _key_part(name: str) -> str:
    return name if _PLAIN.match(name) else '"' + name.replace('"', '""') + '"'


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


def database_facts(conn: psycopg.Connection) -> tuple[int, str, DatabaseLocale]:
    """Size in bytes, encoding and locale of the connected database."""
    row = conn.execute(f"SELECT pg_database_size(d.datname), pg_encoding_to_char(d.encoding), "
                       f"{_locale_columns(conn.info.server_version)} "
                       "FROM pg_database d WHERE d.datname = current_database()").fetchone()
    return int(row[0]), str(row[1]), _locale(row[2:])


def database_locale(conn: psycopg.Connection) -> DatabaseLocale:
    """The connected database's locale (without the cost of measuring its size)."""
    row = conn.execute(f"SELECT {_locale_columns(conn.info.server_version)} "
                       "FROM pg_database d WHERE d.datname = current_database()").fetchone()
    return _locale(row)


_PROVIDERS = {"c": LocaleProvider.LIBC, "i": LocaleProvider.ICU, "b": LocaleProvider.BUILTIN}


def _locale_columns(version: int) -> str:
    """pg_database's locale columns as each version has them: the provider and the ICU locale
    since 15 (``daticulocale``, ``datlocale`` since 17, also for builtin), ICU rules since 16."""
    provider = "d.datlocprovider" if version >= 150000 else "'c'"
    locale = "d.datlocale" if version >= 170000 else "d.daticulocale" if version >= 150000 else "NULL"
    rules = "d.daticurules" if version >= 160000 else "NULL"
    return f"d.datcollate, d.datctype, {provider}::text, {locale}, {rules}"


def _locale(row) -> DatabaseLocale:
    collate, ctype, provider, locale, rules = row
    return DatabaseLocale(collate, ctype, _PROVIDERS.get(provider, LocaleProvider.LIBC), locale, rules)


class LocaleUnsupported(ValueError):
    """The server cannot create a database with this locale at all (a provider or ICU rules
    its version does not have)."""


def locale_options(locale: DatabaseLocale | None, version: int) -> sql.Composable:
    """``CREATE DATABASE`` options that give a database ``locale`` on a server of ``version``
    (empty for a backup that did not record it: the server's default, as before)."""
    if locale is None:
        return sql.SQL("")
    _check_supported(locale, version)
    options = [sql.SQL(" LC_COLLATE {} LC_CTYPE {}").format(sql.Literal(locale.collate),
                                                            sql.Literal(locale.ctype))]
    if version >= 150000:
        options.append(sql.SQL(" LOCALE_PROVIDER {}").format(sql.SQL(locale.provider.value)))
    if locale.provider is LocaleProvider.ICU:
        options.append(sql.SQL(" ICU_LOCALE {}").format(sql.Literal(locale.locale or "")))
    if locale.provider is LocaleProvider.BUILTIN:
        options.append(sql.SQL(" BUILTIN_LOCALE {}").format(sql.Literal(locale.locale or "")))
    if locale.icu_rules:
        options.append(sql.SQL(" ICU_RULES {}").format(sql.Literal(locale.icu_rules)))
    return sql.Composed(options)


def _check_supported(locale: DatabaseLocale, version: int) -> None:
    needs = []
    if locale.provider is LocaleProvider.ICU:
        needs.append((150000, "the icu locale provider needs"))
    if locale.provider is LocaleProvider.BUILTIN:
        needs.append((170000, "the builtin locale provider needs"))
    if locale.icu_rules:
        needs.append((160000, "ICU rules need"))
    for since, what in needs:
        if version < since:
            raise LocaleUnsupported(f"{what} PostgreSQL {since // 10000} or later")


# What CREATE DATABASE answers to a locale it cannot make: an unknown locale name (42809), a
# locale that does not fit the encoding (22023), ICU missing from the build (0A000).
LOCALE_ERRORS = (psycopg.errors.WrongObjectType, psycopg.errors.InvalidParameterValue,
                 psycopg.errors.FeatureNotSupported)


def locale_error(target: Target, db: str, locale: DatabaseLocale, exc: Exception) -> RestoreError:
    """The server cannot give ``db`` its locale: said before anything is loaded or swapped."""
    detail = describe(exc, target) if isinstance(exc, psycopg.Error) else str(exc)
    return RestoreError(f"the server of {target.service_name} cannot create database {db} with the locale it "
                        f"was backed up with ({describe_locale(locale)}): {detail}", ref="restore.locale",
                        hint="install that locale in the server's image (a libc one: locale-gen), or restore "
                        "onto a server that has it; nothing was changed")


def describe_locale(locale: DatabaseLocale) -> str:
    """The locale in a few words, for messages."""
    own = f" {locale.locale}" if locale.locale else ""
    rules = " with ICU rules" if locale.icu_rules else ""
    return f"{locale.provider.value}{own}{rules}, collate {locale.collate}, ctype {locale.ctype}"


def snapshot_stats(conn: psycopg.Connection, dbname: str) -> DatabaseStats:
    """Size, encoding, locale and exact row counts, read inside the caller's snapshot transaction."""
    size, encoding, locale = database_facts(conn)
    return DatabaseStats(dbname, size, count_rows(conn, list_tables(conn)), encoding, locale,
                         unvalidated_orphans(conn), count_large_objects(conn))


def count_large_objects(conn: psycopg.Connection) -> int:
    """Large objects live outside every table (``pg_largeobject``): no row count sees them."""
    return int(conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()[0])


def verify_database(conn: psycopg.Connection, expected: DatabaseStats,
                    label: str) -> tuple[list[VerifyCheck], set[str]]:
    """Locale, table count, exact rows per table, no orphan FK rows; and the tables present
    (by key, by the key older backups used, and by bare name, for the critical tables)."""
    present = list_tables(conn)
    # an older backup's unquoted keys are found too (where two tables shared one, it held the later)
    names = {legacy_table_name(s, t): (s, t) for s, t in present} | {table_name(s, t): (s, t) for s, t in present}
    checks = locale_checks(conn, expected, label)
    checks.append(VerifyCheck(f"{label}: table count", len(expected.tables), len(present),
                              len(expected.tables) == len(present)))
    for name, rows in sorted(expected.tables.items()):
        actual: object = "missing"
        if name in names:
            actual = count_rows(conn, [names[name]])[table_name(*names[name])]
        checks.append(VerifyCheck(f"{label}: rows in {name}", rows, actual, actual == rows))
    checks += unexpected_table_checks(present, expected, label)
    if expected.large_objects is not None:
        found = count_large_objects(conn)
        checks.append(VerifyCheck(f"{label}: large objects", expected.large_objects, found,
                                  found == expected.large_objects))
    return checks + foreign_key_checks(conn, label, expected.orphan_rows), {n for s, t in present
                                                       for n in (table_name(s, t), legacy_table_name(s, t), t)}


def unexpected_table_checks(present: list[tuple[str, str]], expected: DatabaseStats,
                            label: str) -> list[VerifyCheck]:
    """Each table the backup does not hold, by name: "table count: expected 2, found 4" alone
    left the reader to find which two by hand."""
    known = set(expected.tables)
    return [VerifyCheck(f"{label}: table {table_name(s, t)} (not in the backup)", "absent", "present", False)
            for s, t in present if table_name(s, t) not in known and legacy_table_name(s, t) not in known]


def locale_checks(conn: psycopg.Connection, expected: DatabaseStats, label: str) -> list[VerifyCheck]:
    """The database sorts as the backed-up one did: provider, collation and ctype (not the ICU
    locale's spelling, which newer servers rewrite to its standard form). None for backups
    that did not record it."""
    if expected.locale is None:
        return []
    want, got = expected.locale, database_locale(conn)
    return [VerifyCheck(f"{label}: locale", f"{want.provider.value}, {want.collate}, {want.ctype}",
                        f"{got.provider.value}, {got.collate}, {got.ctype}",
                        (want.provider, want.collate, want.ctype) == (got.provider, got.collate, got.ctype))]


def backed_up(critical: Iterable[str], stats) -> list[str]:
    """The critical tables (``users`` or ``schema.users``) a backup holds (``BackupStats``)."""
    keys = {key for database in stats.databases for key in database.tables}
    names = keys | {key.split(".", 1)[-1].strip('"') for key in keys} | {key.replace('"', "") for key in keys}
    return [wanted for wanted in critical if wanted in names]


def critical_checks(critical: Iterable[str], present: set[str], label: str) -> list[VerifyCheck]:
    """Each critical table (``users`` or ``schema.users``) must exist in some database."""
    prefix = f"{label}: " if label else ""
    return [VerifyCheck(f"{prefix}critical table {wanted}", "present",
                        "present" if wanted in present else "missing", wanted in present)
            for wanted in critical]


def foreign_key_checks(conn: psycopg.Connection, label: str,
                       backed_up: Mapping[str, int] | None = None) -> list[VerifyCheck]:
    """One check per FK constraint: no child row without its parent, but for those the backup
    held (``DatabaseStats.orphan_rows``). A ``NOT VALID`` one (an online migration's step,
    restored as it was) is decided the same way; that it is not validated is said, as information."""
    checks = []
    for row in conn.execute(_FOREIGN_KEYS).fetchall():
        name, cs, ct, validated = row[0], row[1], row[2], row[-1]
        orphans, held = _orphan_count(conn, row), (backed_up or {}).get(foreign_key_name(row), 0)
        actual = _orphan_rows(orphans) + ("" if validated else " (constraint not validated)")
        expected = _orphan_rows(held) + (", as backed up" if held else "")
        checks.append(VerifyCheck(f"{label}: foreign key {name} on {table_name(cs, ct)}", expected,
                                  actual, orphans == held))
    return checks


def unvalidated_orphans(conn: psycopg.Connection) -> dict[str, int]:
    """Orphan rows under each ``NOT VALID`` FK that has some (cheap: such constraints are
    rare). They are data: the dump holds them and a restore brings them back, so a verify of
    that restore must not call them a fault (it refused every restore of such a database)."""
    found = {}
    for row in conn.execute(_FOREIGN_KEYS).fetchall():
        if not row[-1] and (orphans := _orphan_count(conn, row)):
            found[foreign_key_name(row)] = orphans
    return found


def foreign_key_name(row) -> str:
    """A constraint's key in ``orphan_rows``: its name (quoted as a table's parts are) on its table."""
    return f"{_key_part(row[0])} on {table_name(row[1], row[2])}"


def _orphan_count(conn: psycopg.Connection, row) -> int:
    _, cs, ct, ckind, ps, pt, pkind, ccols, pcols, _ = row
    return int(conn.execute(_orphan_query(cs, ct, ckind, ps, pt, pkind, ccols, pcols)).fetchone()[0])


def _orphan_rows(count: int) -> str:
    return f"{count} orphan row{'' if count == 1 else 's'}"


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
