"""A backup restored onto a FRESH server (lost volume, new major version) brings the roles
its objects belong to and the database's own owner, privileges, settings and comment;
restored onto the same server it leaves existing roles alone."""

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
from reconciler.spec.load import load_spec
from reconciler.spec.models import Compression, Kind
from tests.integration.conftest import materialise, purge

pytestmark = pytest.mark.engine

PASSWORD = "pw-" + secrets.token_hex(8)
APP_PASSWORD = "app-" + secrets.token_hex(8)
SPEC = """\
version: 1
project: {project}
services:
  db:
    kind: postgres
    image: reconcile-lab/postgres:15
    env: { POSTGRES_PASSWORD: "${env:PG_TEST_PASSWORD}" }
    stateful: true
    backup: { databases: [shop] }
"""
SETUP = [
    f"CREATE ROLE appuser LOGIN PASSWORD '{APP_PASSWORD}' CONNECTION LIMIT 20",
    "CREATE ROLE readers NOLOGIN",
    "GRANT readers TO appuser",
    "ALTER ROLE appuser SET statement_timeout = '5s'",
    "CREATE DATABASE shop OWNER appuser",
    "REVOKE CONNECT, TEMPORARY ON DATABASE shop FROM PUBLIC",
    "GRANT CONNECT ON DATABASE shop TO appuser, readers",
    "ALTER DATABASE shop SET work_mem = '7MB'",
    """ALTER DATABASE shop SET search_path = "$user", public, "odd,schema\"""",
    "ALTER DATABASE shop CONNECTION LIMIT 50",
    "COMMENT ON DATABASE shop IS 'the 100% shop''s data'",
    "ALTER ROLE appuser IN DATABASE shop SET search_path = app, public",
    "ALTER ROLE readers IN DATABASE shop SET statement_timeout = '3s'",
    "ALTER ROLE postgres IN DATABASE shop SET work_mem = '9MB'",
]
DATABASE_FACTS = """
SELECT pg_get_userbyid(datdba), datconnlimit, datacl::text[],
       (SELECT setconfig FROM pg_db_role_setting WHERE setdatabase = d.oid AND setrole = 0),
       shobj_description(d.oid, 'pg_database'),
       ARRAY(SELECT pg_get_userbyid(setrole) || ' ' || setconfig::text FROM pg_db_role_setting
             WHERE setdatabase = d.oid AND setrole <> 0 ORDER BY 1)
FROM pg_database d WHERE datname = 'shop'
"""
ROLE_FACTS = """
SELECT r.rolname, r.rolcanlogin, r.rolconnlimit,
       ARRAY(SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
             WHERE m.member = r.oid ORDER BY 1),
       (SELECT setconfig FROM pg_db_role_setting WHERE setrole = r.oid AND setdatabase = 0)
FROM pg_roles r WHERE r.rolname IN ('appuser', 'readers') ORDER BY 1
"""


def start(client, tmp_path_factory, name: str):
    project = f"it-{name}-{secrets.token_hex(3)}"
    path = tmp_path_factory.mktemp(name) / "reconcile.yaml"
    path.write_text(SPEC.replace("{project}", project))
    loaded = load_spec(path, {**os.environ, "PG_TEST_PASSWORD": PASSWORD})
    ids = materialise(client, loaded)
    doc = dockerio.inspect_container(client, ids["db"])
    target = make_target("db", loaded.spec.services["db"], ids["db"], container_ip(doc))
    return project, target


@pytest.fixture(scope="module")
def servers(client, tmp_path_factory):
    projects = []
    try:
        old, old_target = start(client, tmp_path_factory, "old")
        projects.append(old)
        fresh, fresh_target = start(client, tmp_path_factory, "fresh")
        projects.append(fresh)
        engine = engine_for(Kind.POSTGRES, client)
        for target in (old_target, fresh_target):
            wait_healthy(target)
        yield engine, old_target, fresh_target
    finally:
        for project in projects:
            purge(client, project)


def wait_healthy(target, timeout: float = 90.0) -> None:
    """Up and accepting connections (the probe would look for shop, which is made later)."""
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


def facts(target) -> tuple:
    with connect(target) as conn:
        return conn.execute(DATABASE_FACTS).fetchone(), conn.execute(ROLE_FACTS).fetchall()


def test_roles_and_database_properties_reach_a_fresh_server(servers):
    engine, old, fresh = servers
    with connect(old) as conn:
        for statement in SETUP:
            conn.execute(statement)
    with connect(old, "shop", "appuser", APP_PASSWORD) as conn:
        conn.execute("CREATE TABLE items (id serial PRIMARY KEY, name text)")
        conn.execute("INSERT INTO items (name) SELECT 'item ' || g FROM generate_series(1, 100) g")
        conn.execute("GRANT SELECT ON items TO readers")
    before = facts(old)
    assert before[0][2] is not None and before[1][0][3] == ["readers"]  # the setup took
    assert before[0][5] == ['appuser {"search_path=app, public"}', "postgres {work_mem=9MB}",
                            "readers {statement_timeout=3s}"]

    dest = io.BytesIO()
    writer = CompressingWriter(dest, Compression.ZSTD)
    stats = engine.backup(old, writer)
    written = writer.finish()
    reader = DecompressingReader(io.BytesIO(dest.getvalue()), Compression.ZSTD, written.sha256)
    result = engine.restore(fresh, reader, stats)

    assert result.verify is not None and result.verify.ok
    assert facts(fresh) == before
    with connect(fresh, "shop", "appuser", APP_PASSWORD) as conn:  # the password hash came along
        assert conn.execute("SELECT count(*), pg_get_userbyid(relowner) FROM items, pg_class "
                            "WHERE relname = 'items' GROUP BY 2").fetchone() == (100, "appuser")
        assert conn.execute("SHOW work_mem").fetchone()[0] == "7MB"
        assert conn.execute("SHOW search_path").fetchone()[0] == "app, public"  # its own, in this database


def test_an_existing_role_is_left_as_it_is(servers):
    """A password rotated since the backup stays rotated: roles are only created if missing."""
    engine, old, _ = servers
    dest = io.BytesIO()
    writer = CompressingWriter(dest, Compression.ZSTD)
    stats = engine.backup(old, writer)
    written = writer.finish()
    rotated = "rotated-" + secrets.token_hex(6)
    with connect(old) as conn:
        conn.execute(f"ALTER ROLE appuser PASSWORD '{rotated}'")
    before = facts(old)
    reader = DecompressingReader(io.BytesIO(dest.getvalue()), Compression.ZSTD, written.sha256)
    engine.restore(old, reader, stats)
    with connect(old, "shop", "appuser", rotated) as conn:
        assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == 100
        assert conn.execute("SHOW search_path").fetchone()[0] == "app, public"
    assert facts(old) == before  # the settings in this database went with the old copy, and came back
