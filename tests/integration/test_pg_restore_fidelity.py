"""What a PostgreSQL restore must bring back as it was, and what verify must judge right, on a
real server: databases with long names sharing a prefix each get their own data, a NOT VALID
foreign key is no mismatch, tables whose names would print alike are counted apart, each
database keeps its locale, and a database dropped since the backup is a failed check."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from reconciler import dockerio
from reconciler.engines import DatabaseStats, make_target, pgswap
from reconciler.engines.base import BackupStats, DatabaseLocale, LocaleProvider
from reconciler.errors import RestoreError
from reconciler.spec.load import load_spec
from reconciler.spec.models import Kind
from tests.integration.test_engines_postgres import (  # noqa: F401 - running is a fixture
    PASSWORD,
    backup,
    connect,
    restore,
    run_cli,
    running,
)

pytestmark = pytest.mark.engine

ALPHA = "tenant_database_with_a_very_long_common_prefix_alpha"  # 52 bytes: the first 44 are shared
BRAVO = "tenant_database_with_a_very_long_common_prefix_bravo"


def with_databases(target, databases: list[str]):
    """The module's server, backing up ``databases`` (no critical tables)."""
    service = target.service.model_copy(update={"backup": target.service.backup.model_copy(
        update={"databases": databases, "critical_tables": []})})
    made = make_target("db", service, target.container_id, target.host)
    object.__setattr__(made, "password", PASSWORD)
    return made


def fresh(target, name: str, options: str = "") -> None:
    """An empty database ``name`` (and none of our copies of it)."""
    with connect(target, "postgres") as conn:
        for db in (name, pgswap.staging_name(name), pgswap.retired_name(name)):
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}" {options}')


def databases(target) -> set[str]:
    with connect(target, "postgres") as conn:
        return {row[0] for row in conn.execute("SELECT datname FROM pg_database")}


def test_databases_sharing_a_long_prefix_are_restored_each_from_its_own_dump(running):  # noqa: F811
    target, engine = running
    for name in (ALPHA, BRAVO):
        fresh(target, name)
        with connect(target, name) as conn:
            conn.execute("CREATE TABLE t (id int PRIMARY KEY, who text)")
            conn.execute("INSERT INTO t SELECT i, %s FROM generate_series(1, 10) i", (name[-5:],))
    both = with_databases(target, [ALPHA, BRAVO])
    stats, written, stored = backup(engine, both)
    for name in (ALPHA, BRAVO):
        with connect(target, name) as conn:
            conn.execute("DELETE FROM t WHERE id > 5")
    result = restore(engine, both, stored, written, stats)
    assert result.verify.ok
    for name in (ALPHA, BRAVO):
        with connect(target, name) as conn:
            assert conn.execute("SELECT who, count(*) FROM t GROUP BY who").fetchall() == [(name[-5:], 10)]
    assert not {n for n in databases(target) if "__reconcile_" in n}


def test_a_database_named_like_another_ones_copy_is_refused_before_any_change(running):  # noqa: F811
    target, engine = running
    other = pgswap.staging_name("shop")
    fresh(target, "shop")
    fresh(target, other)
    with connect(target) as conn:
        conn.execute("CREATE TABLE t AS SELECT 1 AS id")
    both = with_databases(target, ["shop", other])
    stats, written, stored = backup(engine, both)
    with connect(target) as conn:
        conn.execute("INSERT INTO t VALUES (2)")
    with pytest.raises(RestoreError) as caught:
        restore(engine, both, stored, written, stats)
    assert caught.value.ref == "restore.names" and other in caught.value.message
    with connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 2
    with connect(target, "postgres") as conn:
        conn.execute(f'DROP DATABASE "{other}" WITH (FORCE)')


def test_a_not_valid_foreign_key_without_orphans_verifies_and_restores(running):  # noqa: F811
    target, engine = running
    fresh(target, "shop")
    one = with_databases(target, ["shop"])
    with connect(target) as conn:
        conn.execute("CREATE TABLE p (id int PRIMARY KEY); CREATE TABLE c (id int PRIMARY KEY, p_id int)")
        conn.execute("INSERT INTO p VALUES (1), (2); INSERT INTO c VALUES (1, 1), (2, 2)")
        conn.execute("ALTER TABLE c ADD CONSTRAINT c_p_fk FOREIGN KEY (p_id) REFERENCES p(id) NOT VALID")
    stats, written, stored = backup(engine, one)
    report = engine.verify(one, stats)
    assert report.ok, report.summary()
    [check] = [c for c in report.checks if "c_p_fk" in c.name]
    assert check.actual == "0 orphan rows (constraint not validated)"
    with connect(target) as conn:
        conn.execute("DELETE FROM c WHERE id = 2")
    assert restore(engine, one, stored, written, stats).verify.ok
    with connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM c").fetchone()[0] == 2
        assert conn.execute("SELECT convalidated FROM pg_constraint WHERE conname = 'c_p_fk'").fetchone()[0] is False
        conn.execute("SET session_replication_role = replica")  # FK triggers off: an orphan
        conn.execute("INSERT INTO c VALUES (3, 99)")
    failed = {c.name: c for c in engine.verify(one, stats).failures}
    assert failed["shop: foreign key c_p_fk on public.c"].actual == "1 orphan row (constraint not validated)"


def test_tables_whose_names_would_print_alike_are_counted_apart(running):  # noqa: F811
    target, engine = running
    fresh(target, "shop")
    one = with_databases(target, ["shop"])
    with connect(target) as conn:
        conn.execute('CREATE SCHEMA s; CREATE SCHEMA "s.a"; CREATE SCHEMA "Odd Schema"')
        conn.execute('CREATE TABLE s."a.b" (id int PRIMARY KEY); CREATE TABLE "s.a".b (id int PRIMARY KEY)')
        conn.execute('CREATE TABLE "Odd Schema"."My Table" (id int PRIMARY KEY)')
        conn.execute('INSERT INTO s."a.b" VALUES (1), (2), (3); INSERT INTO "s.a".b VALUES (1)')
        conn.execute('INSERT INTO "Odd Schema"."My Table" SELECT generate_series(1, 5)')
    stats, written, stored = backup(engine, one)
    assert stats.tables == {'s."a.b"': 3, '"s.a".b': 1, '"Odd Schema"."My Table"': 5}
    assert engine.verify(one, stats).ok
    with connect(target) as conn:
        conn.execute('DELETE FROM "s.a".b')
    assert [c.name for c in engine.verify(one, stats).failures] == ['shop: rows in "s.a".b']
    assert restore(engine, one, stored, written, stats).verify.ok
    with connect(target) as conn:
        assert conn.execute('SELECT count(*) FROM "s.a".b').fetchone()[0] == 1
    # a backup made before the keys were quoted still verifies: its keys are found as they were
    [db] = stats.databases
    old = BackupStats(Kind.POSTGRES, databases=(DatabaseStats("shop", db.size_bytes, {
        "Odd Schema.My Table": 5, "s.a.b": 1}, db.encoding),))
    report = engine.verify(one, old)
    assert report.checks[1].name == "shop: rows in Odd Schema.My Table" and report.checks[1].ok


LOCALE = """
SELECT datlocprovider::text, datcollate, datctype, daticulocale FROM pg_database WHERE datname = %s
"""
WORDS = ["b", "A", "a", "B"]


def locale_and_order(target, name: str) -> tuple:
    with connect(target, "postgres") as conn:
        facts = conn.execute(LOCALE, (name,)).fetchone()
    with connect(target, name) as conn:
        order = [row[0] for row in conn.execute("SELECT w FROM words ORDER BY w")]
    return facts, order


def make_words(target, name: str, options: str) -> None:
    fresh(target, name, options)
    with connect(target, name) as conn:
        conn.execute("CREATE TABLE words (w text PRIMARY KEY)")
        conn.execute("INSERT INTO words SELECT unnest(%s::text[])", (WORDS,))


def test_each_database_keeps_its_locale_and_provider(running):  # noqa: F811
    target, engine = running
    make_words(target, "icu_de", "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'de-DE'")
    make_words(target, "libc_c", "TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'")
    both = with_databases(target, ["icu_de", "libc_c"])
    before = {name: locale_and_order(target, name) for name in ("icu_de", "libc_c")}
    assert before["icu_de"] == (("i", "C.UTF-8", "C.UTF-8", "de-DE"), ["a", "A", "b", "B"])
    assert before["libc_c"] == (("c", "C", "C", None), ["A", "B", "a", "b"])
    stats, written, stored = backup(engine, both)
    assert stats.databases[0].locale == DatabaseLocale("C.UTF-8", "C.UTF-8", LocaleProvider.ICU, "de-DE")
    assert json.loads(json.dumps(stats.as_dict()))["databases"][1]["locale"] == {
        "collate": "C", "ctype": "C", "provider": "libc", "locale": None, "icu_rules": None}
    assert BackupStats.from_dict(json.loads(json.dumps(stats.as_dict()))) == stats
    result = restore(engine, both, stored, written, stats)
    assert result.verify.ok and any(c.name == "icu_de: locale" for c in result.verify.checks)
    assert {name: locale_and_order(target, name) for name in ("icu_de", "libc_c")} == before


def test_a_locale_the_server_lacks_fails_before_any_swap(running):  # noqa: F811
    target, engine = running
    make_words(target, "libc_c", "TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'")
    fresh(target, "shop")
    with connect(target) as conn:
        conn.execute("CREATE TABLE t AS SELECT 1 AS id")
    both = with_databases(target, ["shop", "libc_c"])
    stats, written, stored = backup(engine, both)
    shop, words = stats.databases
    lacking = dataclasses.replace(words, locale=DatabaseLocale("xx_XX.UTF-8", "C", LocaleProvider.LIBC))
    with connect(target) as conn:
        conn.execute("INSERT INTO t VALUES (2)")
    with pytest.raises(RestoreError) as caught:
        restore(engine, both, stored, written, dataclasses.replace(stats, databases=(shop, lacking)))
    assert caught.value.ref == "restore.locale"
    assert "libc_c" in caught.value.message and "xx_XX.UTF-8" in caught.value.message
    with connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 2
    assert not {n for n in databases(target) if "__reconcile_" in n}


def test_a_backup_that_did_not_record_the_locale_restores_as_before(running):  # noqa: F811
    target, engine = running
    make_words(target, "libc_c", "TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'")
    one = with_databases(target, ["libc_c"])
    stats, written, stored = backup(engine, one)
    data = stats.as_dict()
    for db in data["databases"]:
        del db["locale"]  # metadata written by an older version
    old = BackupStats.from_dict(json.loads(json.dumps(data)))
    assert old.databases[0].locale is None
    assert restore(engine, one, stored, written, old).verify.ok
    assert locale_and_order(target, "libc_c")[0][:3] == ("c", "C.UTF-8", "C.UTF-8")  # the server's default


def test_verify_reports_a_dropped_database_as_a_failed_check_and_checks_the_rest(running, client,  # noqa: F811
                                                                                 tmp_path):
    """Exit 2 with the usual report (a mismatch, the biggest there is), not exit 1 with a
    hint about the password; the other database is still checked."""
    target, engine = running
    for name in ("qa_v1", "qa_v2"):
        fresh(target, name)
        with connect(target, name) as conn:
            conn.execute("CREATE TABLE t AS SELECT generate_series(1, 3) AS id")
    labels = dockerio.inspect_container(client, target.container_id)["Config"]["Labels"]
    path = tmp_path / "reconcile.yaml"
    path.write_text(SPEC.replace("{project}", labels["reconcile.project"]))
    loaded = load_spec(path, {**os.environ, "PG_TEST_PASSWORD": PASSWORD})
    env = {"PG_TEST_PASSWORD": PASSWORD}
    made = run_cli(loaded, "backup", env=env)
    assert made.returncode == 0, made.stdout + made.stderr
    with connect(target, "qa_v1") as conn:
        conn.execute("DELETE FROM t WHERE id = 1")
    with connect(target, "postgres") as conn:
        conn.execute("DROP DATABASE qa_v2 WITH (FORCE)")
    checked = run_cli(loaded, "verify", "--json", env=env)
    assert checked.returncode == 2, checked.stdout + checked.stderr
    failed = {c["name"]: c for c in json.loads(checked.stdout)["services"]["db"]["checks"] if not c["ok"]}
    assert failed["qa_v2: database"]["actual"] == "missing"
    assert failed["qa_v1: rows in public.t"]["actual"] == 2
    said = run_cli(loaded, "verify", env=env)
    assert said.returncode == 2 and "password" not in said.stdout + said.stderr, said.stdout + said.stderr


SPEC = """\
version: 1
project: {project}
services:
  db:
    kind: postgres
    image: reconcile-lab/postgres:15
    env: { POSTGRES_PASSWORD: "${env:PG_TEST_PASSWORD}", POSTGRES_DB: shop }
    stateful: true
    backup: { databases: [qa_v1, qa_v2] }
backup:
  local: { path: ./backups }
"""
