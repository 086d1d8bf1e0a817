"""`reconcile verify`, backup and restore of less common PostgreSQL data, through the CLI on a
real server: orphan rows a NOT VALID foreign key let in before the backup, tables made after
it, large objects; a spec that lists a database twice; a cache that refuses DUMP."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import textwrap
import time

import psycopg
import pytest
import redis

from reconciler.engines import container_ip
from reconciler.health import Level, wait_healthy
from reconciler.session import Session
from reconciler.spec.load import load_spec
from tests.integration.conftest import materialise, purge

pytestmark = pytest.mark.engine

PASSWORD = "pw-" + secrets.token_hex(8)
SPEC = """\
version: 1
project: {project}
state_dir: ./state
services:
  postgres:
    profile: infrastructure
    kind: postgres
    image: reconcile-lab/postgres:15
    env: { POSTGRES_PASSWORD: "${env:QAPGV_PW}", POSTGRES_DB: clinic }
    stateful: true
    backup: { databases: [clinic, "Odd Db"] }
backup:
  local: { path: ./backups }
"""


@pytest.fixture(scope="module")
def stack(client, tmp_path_factory):
    """One server for the module (initdb is the slow part), its databases made afresh per test."""
    project = f"qapgv-{secrets.token_hex(3)}"
    path = tmp_path_factory.mktemp("qapgv") / "reconcile.yaml"
    path.write_text(SPEC.replace("{project}", project))
    environ = {**os.environ, "QAPGV_PW": PASSWORD}
    loaded = load_spec(path, environ)
    session = Session(loaded, environ=environ)
    try:
        materialise(client, loaded)
        ip = container_ip(session.container_doc("postgres"))
        with until_up(ip) as conn:
            conn.execute('CREATE DATABASE "Odd Db"')  # the spec lists it: health calls it refused till then
        assert wait_healthy(session, "postgres", f"{project}-postgres", timeout=90).level is Level.HEALTHY
        yield loaded, session
    finally:
        purge(client, project)


def until_up(ip: str, timeout: float = 90.0) -> psycopg.Connection:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return psycopg.connect(host=ip, user="postgres", password=PASSWORD, dbname="clinic", autocommit=True)
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.fixture()
def pg(stack):
    """A connection factory to a database of the server, ``clinic`` and ``Odd Db`` empty again."""
    loaded, session = stack
    ip = container_ip(session.container_doc("postgres"))

    def connect(dbname: str = "clinic") -> psycopg.Connection:
        return psycopg.connect(host=ip, user="postgres", password=PASSWORD, dbname=dbname, autocommit=True)

    with connect("postgres") as conn:
        for db in ("clinic", "Odd Db"):
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{db}"')
    return connect


def cli(loaded, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "reconciler", "-f", str(loaded.file), *args],
                            check=False, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "QAPGV_PW": PASSWORD, "NO_COLOR": "1"})
    assert PASSWORD not in result.stdout + result.stderr
    return result


def backup(loaded) -> None:
    result = cli(loaded, "backup", "--no-prune")
    assert result.returncode == 0, result.stderr


def test_orphans_a_not_valid_foreign_key_let_in_before_the_backup_verify_and_restore(stack, pg):
    """Orphan rows under a NOT VALID foreign key (a migration's first step) are data the dump
    holds: `verify` right after the backup said "failed", and every restore of that backup
    was refused by its own check ("the restored data does not match the backup"), so also
    every apply that had to restore it. More orphans than the backup held still fail."""
    loaded, _ = stack
    with pg("Odd Db") as conn:
        conn.execute('CREATE TABLE "Parent" (id int PRIMARY KEY); INSERT INTO "Parent" VALUES (1), (2)')
        conn.execute('CREATE TABLE "Child" (id int PRIMARY KEY, "parent id" int)')
        conn.execute('INSERT INTO "Child" VALUES (1, 1), (2, 7), (3, 8), (4, NULL)')
        conn.execute('ALTER TABLE "Child" ADD CONSTRAINT "child.parent fk" FOREIGN KEY ("parent id") '
                     'REFERENCES "Parent"(id) NOT VALID')
    backup(loaded)

    result = cli(loaded, "verify")
    assert result.returncode == 0, result.stdout
    with pg("Odd Db") as conn:
        conn.execute('DELETE FROM "Child" WHERE id = 3')
    result = cli(loaded, "restore", "latest", "--yes")
    assert result.returncode == 0, result.stderr
    with pg("Odd Db") as conn:
        assert conn.execute('SELECT count(*) FROM "Child"').fetchone()[0] == 4
    assert cli(loaded, "verify").returncode == 0

    with pg("Odd Db") as conn:
        conn.execute("SET session_replication_role = replica")  # FK triggers off: one orphan more
        conn.execute('UPDATE "Child" SET "parent id" = 9 WHERE id = 1')
    result = cli(loaded, "verify")
    assert result.returncode == 2, result.stdout
    assert ('Odd Db: foreign key child.parent fk on public."Child": expected 2 orphan rows, as backed up, '
            "found 3 orphan rows (constraint not validated)") in result.stdout


def test_tables_made_after_the_backup_are_named(stack, pg):
    """"table count: expected 1, found 3" alone left the reader to find which tables by hand."""
    loaded, _ = stack
    with pg() as conn:
        conn.execute("CREATE TABLE patients (id int PRIMARY KEY); INSERT INTO patients VALUES (1)")
    backup(loaded)
    with pg() as conn:
        conn.execute('CREATE SCHEMA "Audit.Trail"; CREATE TABLE "Audit.Trail".log (id int)')
        conn.execute('CREATE TABLE "Ünïcødé" (id int)')

    result = cli(loaded, "verify")
    assert result.returncode == 2, result.stdout
    assert "clinic: table count: expected 1, found 3" in result.stdout
    assert 'clinic: table "Audit.Trail".log (not in the backup): expected absent, found present' in result.stdout
    assert 'clinic: table public."Ünïcødé" (not in the backup): expected absent, found present' in result.stdout
    assert "patients" not in result.stdout


def test_large_objects_are_counted_and_one_lost_fails_verify(stack, pg):
    """Large objects live outside every table: one unlinked after the backup passed verify."""
    loaded, _ = stack
    with pg() as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body oid)")
        conn.execute("INSERT INTO docs SELECT g, lo_from_bytea(0, convert_to(repeat('x', 100000), 'UTF8'))"
                     " FROM generate_series(1, 3) g")
    backup(loaded)
    assert cli(loaded, "verify").returncode == 0
    with pg() as conn:
        conn.execute("SELECT lo_unlink(body) FROM docs WHERE id = 2")

    result = cli(loaded, "verify")
    assert result.returncode == 2, result.stdout
    assert "clinic: large objects: expected 3, found 2" in result.stdout
    assert cli(loaded, "restore", "latest", "--yes").returncode == 0
    with pg() as conn:
        assert conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()[0] == 3
        assert conn.execute("SELECT length(lo_get(body)) FROM docs WHERE id = 2").fetchone()[0] == 100000
    assert cli(loaded, "verify").returncode == 0


def test_a_database_listed_twice_or_empty_is_refused_by_validate(tmp_path):
    """Listed twice, it was dumped twice into one backup that no restore could load (the second
    copy's schema clashed with the first); an empty name failed the backup with "database  of
    postgres does not exist"."""
    path = tmp_path / "reconcile.yaml"
    path.write_text(textwrap.dedent(SPEC.replace("{project}", "qapgv-spec")).replace(
        'databases: [clinic, "Odd Db"]', 'databases: [clinic, "Odd Db", clinic, ""]'))
    result = subprocess.run([sys.executable, "-m", "reconciler", "-f", str(path), "validate"], check=False,
                            capture_output=True, text=True, env={**os.environ, "QAPGV_PW": PASSWORD})
    assert result.returncode == 1
    assert "(services.postgres.backup.databases[2]): service postgres lists database 'clinic' twice" in result.stderr
    assert "(services.postgres.backup.databases[3]): service postgres lists an empty database name" in result.stderr
    assert "hint: remove one of the two entries" in result.stderr


CACHE_SPEC = """\
version: 1
project: {project}
state_dir: ./state
services:
  cache:
    profile: infrastructure
    kind: redis
    image: reconcile-lab/redis:7
    command: ["redis-server", "--dir", "/data", "--rename-command", "DUMP", ""]
    stateful: true
backup:
  local: { path: ./backups }
"""


def test_a_cache_that_refuses_dump_fails_the_backup_instead_of_keeping_an_empty_one(client, tmp_path):
    """DUMP renamed away (a common hardening): each key's error reply was counted as a key that
    expired meanwhile, so `backup` said ok (exit 0) with 0 keys, and retention began to
    replace the good backups with empty ones."""
    project = f"qapgv-{secrets.token_hex(3)}"
    path = tmp_path / "reconcile.yaml"
    path.write_text(CACHE_SPEC.replace("{project}", project))
    loaded = load_spec(path, dict(os.environ))
    session = Session(loaded, environ=dict(os.environ))
    try:
        materialise(client, loaded)
        assert wait_healthy(session, "cache", f"{project}-cache", timeout=60).level is Level.HEALTHY
        server = redis.Redis(host=container_ip(session.container_doc("cache")))
        server.set("patient:1", "kept")
        server.set("", "the empty key")

        result = cli(loaded, "backup", "--no-prune")
        assert result.returncode == 1, result.stdout
        assert "error[backup.cache-dump] the cache refused to dump a key: ERR unknown command 'DUMP'" in result.stderr
        assert "patient:1" not in result.stderr and "hint: a backup reads every key with DUMP" in result.stderr
        assert not list((tmp_path / "backups").rglob("*.redis-dump*"))
        assert server.dbsize() == 2
    finally:
        purge(client, project)
