"""A backup of PostgreSQL 15 restored onto 17 (apply's major upgrade does just that) keeps
each database's locale and the settings roles have in it; 17's own locale columns are read
and written back; and what an older server cannot create is refused before any change."""

from __future__ import annotations

import io
import os
import secrets
import time

import psycopg
import pytest

from reconciler import dockerio
from reconciler.engines import container_ip, engine_for, make_target
from reconciler.engines.compress import CompressingWriter, DecompressingReader
from reconciler.errors import RestoreError
from reconciler.spec.load import load_spec
from reconciler.spec.models import Compression, Kind
from tests.integration.conftest import materialise, purge

pytestmark = pytest.mark.engine

PASSWORD = "pw-" + secrets.token_hex(8)
SPEC = """\
version: 1
project: {project}
services:
  db:
    kind: postgres
    image: reconcile-lab/postgres:{version}
    env: { POSTGRES_PASSWORD: "${env:PG_TEST_PASSWORD}" }
    stateful: true
"""
FACTS_15 = "SELECT datlocprovider::text, datcollate, datctype, daticulocale, NULL FROM pg_database WHERE datname = %s"
FACTS_17 = "SELECT datlocprovider::text, datcollate, datctype, datlocale, daticurules FROM pg_database WHERE datname = %s"
WORDS = ["b", "A", "g", "a", "B"]


def start(client, tmp_path_factory, version: int):
    project = f"it-pg{version}-{secrets.token_hex(3)}"
    path = tmp_path_factory.mktemp(f"pg{version}") / "reconcile.yaml"
    path.write_text(SPEC.replace("{project}", project).replace("{version}", str(version)))
    loaded = load_spec(path, {**os.environ, "PG_TEST_PASSWORD": PASSWORD})
    ids = materialise(client, loaded)
    doc = dockerio.inspect_container(client, ids["db"])
    return project, make_target("db", loaded.spec.services["db"], ids["db"], container_ip(doc))


@pytest.fixture(scope="module")
def servers(client, tmp_path_factory):
    projects = []
    try:
        targets = {}
        for version in (15, 17):
            project, targets[version] = start(client, tmp_path_factory, version)
            projects.append(project)
        for target in targets.values():
            wait_up(target)
        yield engine_for(Kind.POSTGRES, client), targets
    finally:
        for project in projects:
            purge(client, project)


def wait_up(target, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with connect(target) as conn:
                conn.execute("SELECT 1")
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def connect(target, dbname: str = "postgres", user: str = "postgres", password: str = PASSWORD):
    return psycopg.connect(host=target.host, port=5432, user=user, password=password, dbname=dbname,
                           autocommit=True)


def backing_up(target, databases: list[str]):
    service = target.service.model_copy(update={"backup": target.service.backup.model_copy(
        update={"databases": databases})})
    made = make_target("db", service, target.container_id, target.host)
    object.__setattr__(made, "password", PASSWORD)
    return made


def make(target, name: str, options: str) -> None:
    with connect(target) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 {options}')
    with connect(target, name) as conn:
        conn.execute("CREATE TABLE words (w text PRIMARY KEY)")
        conn.execute("INSERT INTO words SELECT unnest(%s::text[])", (WORDS,))


def described(target, version: int, name: str) -> tuple:
    """The database's locale columns and the order its collation gives."""
    with connect(target) as conn:
        facts = conn.execute(FACTS_17 if version >= 17 else FACTS_15, (name,)).fetchone()
    with connect(target, name) as conn:
        return facts, [row[0] for row in conn.execute("SELECT w FROM words ORDER BY w")]


def copy(engine, source, dest):
    out = io.BytesIO()
    writer = CompressingWriter(out, Compression.ZSTD)
    stats = engine.backup(source, writer)
    written = writer.finish()
    reader = DecompressingReader(io.BytesIO(out.getvalue()), Compression.ZSTD, written.sha256)
    return engine.restore(dest, reader, stats)


def test_a_15_backup_restored_on_17_keeps_each_locale_and_the_role_settings_in_it(servers):
    engine, targets = servers
    old, new = targets[15], targets[17]
    make(old, "icu_de", "LOCALE_PROVIDER icu ICU_LOCALE 'de-DE'")
    make(old, "libc_c", "LC_COLLATE 'C' LC_CTYPE 'C'")
    app_password = "app-" + secrets.token_hex(6)
    with connect(old) as conn:
        conn.execute(f"CREATE ROLE app LOGIN PASSWORD '{app_password}'")
        conn.execute("ALTER ROLE app IN DATABASE icu_de SET search_path = app, public")
    with connect(old, "icu_de") as conn:
        conn.execute("CREATE SCHEMA app AUTHORIZATION app")
    both = ["icu_de", "libc_c"]
    before = {name: described(old, 15, name) for name in both}
    assert before["icu_de"] == (("i", "C.UTF-8", "C.UTF-8", "de-DE", None), ["a", "A", "b", "B", "g"])
    assert before["libc_c"] == (("c", "C", "C", None, None), ["A", "B", "a", "b", "g"])

    result = copy(engine, backing_up(old, both), backing_up(new, both))
    assert result.verify.ok
    assert {name: described(new, 17, name) for name in both} == before
    with connect(new, "icu_de", "app", app_password) as conn:
        assert conn.execute("SHOW search_path").fetchone()[0] == "app, public"


def test_17s_own_locales_come_back_and_a_15_server_refuses_them_before_any_change(servers):
    engine, targets = servers
    new, old = targets[17], targets[15]
    make(new, "builtin_c", "LOCALE_PROVIDER builtin BUILTIN_LOCALE 'C.UTF-8'")
    make(new, "icu_rules", "LOCALE_PROVIDER icu ICU_LOCALE 'und' ICU_RULES '&a < g'")
    both = ["builtin_c", "icu_rules"]
    before = {name: described(new, 17, name) for name in both}
    assert before["icu_rules"] == (("i", "C.UTF-8", "C.UTF-8", "und", "&a < g"), ["a", "A", "g", "b", "B"])
    assert before["builtin_c"][0] == ("b", "C.UTF-8", "C.UTF-8", "C.UTF-8", None)

    assert copy(engine, backing_up(new, both), backing_up(new, both)).verify.ok
    assert {name: described(new, 17, name) for name in both} == before

    with pytest.raises(RestoreError) as caught:
        copy(engine, backing_up(new, both), backing_up(old, both))
    assert caught.value.ref == "restore.locale"
    assert "builtin locale provider needs PostgreSQL 17" in caught.value.message, caught.value.message
    with connect(old) as conn:
        assert not conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'builtin%' "
                                "OR datname LIKE 'icu_rules%'").fetchall()
