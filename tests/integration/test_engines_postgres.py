"""The PostgreSQL engine against a real server: backup, drop, restore, identical rows, verify."""

from __future__ import annotations

import io
import json
import os
import secrets
import subprocess
import threading
import time

import psycopg
import pytest

from reconciler import dockerio
from reconciler.engines import container_ip, engine_for, make_target, pgglobals
from reconciler.engines.base import ProbeStatus
from reconciler.engines.compress import CompressingWriter, DecompressingReader
from reconciler.errors import BackupError, ReconcileError, RestoreError
from reconciler.session import Session
from reconciler.spec.load import load_spec
from reconciler.spec.models import Compression, Kind
from tests.integration.apply_support import cli
from tests.integration.conftest import materialise, purge

pytestmark = pytest.mark.engine

PASSWORD = "pw-" + secrets.token_hex(8)
SPEC = """\
version: 1
project: {project}
services:
  db:
    profile: infrastructure
    kind: postgres
    image: reconcile-lab/postgres:15
    env: { POSTGRES_PASSWORD: "${env:PG_TEST_PASSWORD}", POSTGRES_DB: shop }
    stateful: true
    backup: { critical_tables: [customers, orders] }
"""

SCHEMA = """
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, email text UNIQUE,
    balance numeric(12, 2), notes text, avatar bytea, created timestamptz DEFAULT now());
CREATE TABLE orders (id serial PRIMARY KEY, customer_id int NOT NULL REFERENCES customers(id),
    total numeric(12, 2) NOT NULL, status text, placed_at timestamptz);
CREATE TABLE order_items (order_id int REFERENCES orders(id), line int, product text,
    qty int, price double precision, PRIMARY KEY (order_id, line));
CREATE SCHEMA audit;
CREATE TABLE audit.events (id bigserial PRIMARY KEY, payload jsonb, at timestamptz);
INSERT INTO customers (name, email, balance, notes, avatar) VALUES
    ('Zoë Ærøskøbing', 'zoe@example.org', 1234.50, NULL, decode('00ff10807f', 'hex')),
    ('東京 太郎', 'taro@example.jp', -0.01, E'line1\\nline2\\ttab', NULL),
    ('emoji 🐘', NULL, NULL, 'quote '' and backslash \\', '\\x'::bytea);
INSERT INTO customers (name, email, balance, avatar)
    SELECT 'customer ' || i, 'c' || i || '@example.org', (random() * 10000)::numeric(12, 2),
           decode(md5(i::text), 'hex') FROM generate_series(1, 500) i;
INSERT INTO orders (customer_id, total, status, placed_at)
    SELECT 1 + (i % 503), (random() * 500)::numeric(12, 2),
           (ARRAY['new', 'paid', NULL])[1 + i % 3], now() - i * interval '1 hour'
    FROM generate_series(1, 2000) i;
INSERT INTO order_items SELECT o.id, l, 'product ' || md5(o.id::text || l), l, random() * 10
    FROM orders o, generate_series(1, 3) l;
INSERT INTO audit.events (payload, at) SELECT jsonb_build_object('n', i, 'ü', 'ß'), now()
    FROM generate_series(1, 300) i;
"""
TABLES = ["customers", "orders", "order_items", "audit.events"]


@pytest.fixture(scope="module")
def running(client, tmp_path_factory):
    """One PostgreSQL 15 container for the module (initdb is the slow part); removed after."""
    project = f"it-{secrets.token_hex(3)}"
    path = tmp_path_factory.mktemp("pg") / "reconcile.yaml"
    path.write_text(SPEC.replace("{project}", project))
    loaded = load_spec(path, {**os.environ, "PG_TEST_PASSWORD": PASSWORD})
    try:
        ids = materialise(client, loaded)
        doc = dockerio.inspect_container(client, ids["db"])
        target = make_target("db", loaded.spec.services["db"], ids["db"], container_ip(doc))
        engine = engine_for(Kind.POSTGRES, client)
        wait_healthy(engine, target)
        yield target, engine
    finally:
        purge(client, project)


@pytest.fixture()
def server(running):
    """The module's server with a freshly made shop database; yields (target, engine)."""
    target, engine = running
    with connect(target, "postgres") as conn:
        conn.execute("DROP DATABASE IF EXISTS shop WITH (FORCE)")
        conn.execute("CREATE DATABASE shop")
    with connect(target) as conn:
        conn.execute(SCHEMA)
    return target, engine


def wait_healthy(engine, target, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if engine.probe(target, timeout=2).status is ProbeStatus.HEALTHY:
            return
        time.sleep(0.5)
    pytest.fail(f"postgres did not become healthy: {engine.probe(target, 2)}")


def connect(target, dbname: str = "shop") -> psycopg.Connection:
    return psycopg.connect(host=target.host, port=target.port, user="postgres", password=PASSWORD,
                           dbname=dbname, autocommit=True)


def fingerprints(target) -> dict[str, str]:
    """md5 over every row of every table in primary-key order: equal means identical content."""
    with connect(target) as conn:
        return {table: conn.execute(f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))"
                                    f" FROM {table} t").fetchone()[0] for table in TABLES}


def backup(engine, target, compression=Compression.ZSTD):
    dest = io.BytesIO()
    writer = CompressingWriter(dest, compression)
    stats = engine.backup(target, writer)
    written = writer.finish()
    return stats, written, dest.getvalue()


def restore(engine, target, stored, written, stats, compression=Compression.ZSTD):
    reader = DecompressingReader(io.BytesIO(stored), compression, written.sha256)
    return engine.restore(target, reader, stats)


def test_probe_reports_size_connections_and_version(server):
    target, engine = server
    result = engine.probe(target)
    assert result.status is ProbeStatus.HEALTHY
    assert result.details["version"].startswith("15.") and result.details["database"] == "shop"
    assert result.details["database_size"] > 0 and result.details["max_connections"] == 100


def test_backup_drop_restore_gives_identical_rows_and_verify_names_a_missing_row(server):
    target, engine = server
    before = fingerprints(target)
    stats, written, stored = backup(engine, target)
    assert stats.table_count == 4
    assert stats.tables == {"public.customers": 503, "public.orders": 2000,
                            "public.order_items": 6000, "audit.events": 300}
    assert stats.row_count == 8803 and stats.database_size > 0
    assert written.size == len(stored) and written.raw_size == stats.raw_bytes

    with connect(target) as conn:
        conn.execute("DROP TABLE order_items")
        conn.execute("UPDATE customers SET name = 'changed'")
    restored = restore(engine, target, stored, written, stats)
    assert restored.tables_restored == 4 and restored.rows_restored == 8803
    assert restored.verify is not None and restored.verify.ok
    assert fingerprints(target) == before

    report = engine.verify(target, stats)
    assert report.ok and any("foreign key" in c.name for c in report.checks)
    with connect(target) as conn:
        conn.execute("DELETE FROM order_items WHERE order_id = 7 AND line = 1")
    report = engine.verify(target, stats)
    assert not report.ok
    assert [c.name for c in report.failures] == ["shop: rows in public.order_items"]


def test_verify_catches_orphans_and_missing_critical_tables(server):
    target, engine = server
    stats, _, _ = backup(engine, target)
    with connect(target) as conn:
        conn.execute("SET session_replication_role = replica")  # FK triggers off: an orphan
        conn.execute("UPDATE order_items SET order_id = 999999 WHERE order_id = 1 AND line = 1")
        conn.execute("RESET session_replication_role")
        conn.execute("ALTER TABLE orders DROP CONSTRAINT orders_customer_id_fkey")
        conn.execute("ALTER TABLE orders ADD CONSTRAINT orders_customer_id_fkey "
                     "FOREIGN KEY (customer_id) REFERENCES customers(id) NOT VALID")
        conn.execute("DROP TABLE audit.events")
    report = engine.verify(target, stats)
    failed = {c.name: c for c in report.failures}
    orphan = failed["shop: foreign key order_items_order_id_fkey on public.order_items"]
    assert orphan.actual == "1 orphan row"
    assert "shop: foreign key orders_customer_id_fkey on public.orders" not in failed  # NOT VALID, no orphan
    [not_valid] = [c for c in report.checks if c.name == "shop: foreign key orders_customer_id_fkey on public.orders"]
    assert not_valid.actual == "0 orphan rows (constraint not validated)"
    assert {"shop: rows in audit.events", "shop: table count"} <= set(failed)
    stats_critical = target.service.backup.critical_tables
    assert all(c.ok for c in report.checks if "critical table" in c.name) and stats_critical
    with connect(target) as conn:
        conn.execute("DROP TABLE orders CASCADE")
    failed = {c.name for c in engine.verify(target, stats).failures}
    assert "shop: critical table orders" in failed


def test_gzip_backup_is_a_plain_pg_dump_and_restores_through_the_exec_path(server, monkeypatch):
    target, engine = server
    before = fingerprints(target)
    monkeypatch.setenv("RECONCILE_STREAM", "exec")
    stats, written, stored = backup(engine, target, Compression.GZIP)
    import gzip
    text = gzip.decompress(stored)
    assert text.startswith(pgglobals.HEADER)  # then pg_dump's own output, as psql reads it
    assert b"\n--\n-- PostgreSQL database dump\n--" in text[:4096]
    assert b"-- PostgreSQL database dump complete" in text[-300:]
    with connect(target) as conn:
        conn.execute("TRUNCATE order_items")
    restore(engine, target, stored, written, stats, Compression.GZIP)
    assert fingerprints(target) == before


def test_damaged_or_truncated_backup_leaves_the_database_untouched(server):
    target, engine = server
    stats, written, stored = backup(engine, target)
    with connect(target) as conn:
        conn.execute("DELETE FROM order_items WHERE line = 3")
    current = fingerprints(target)
    damaged = bytearray(stored)
    damaged[-100] ^= 0x01
    with pytest.raises(RestoreError):
        restore(engine, target, bytes(damaged), written, stats)
    assert fingerprints(target) == current

    raw = io.BytesIO()
    w = CompressingWriter(raw)
    w.write(raw_dump(stored, written)[:-200])  # a dump cut before its marker
    cut = w.finish()
    with pytest.raises(RestoreError) as caught:
        restore(engine, target, raw.getvalue(), cut, stats)
    assert caught.value.ref == "restore.truncated"
    assert fingerprints(target) == current
    with connect(target, "postgres") as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE "
                            "'%reconcile_restore'").fetchone()[0] == 0


def test_a_row_the_server_refuses_fails_the_parallel_load_and_changes_nothing(server):
    target, engine = server
    stats, written, stored = backup(engine, target)
    with connect(target) as conn:
        conn.execute("DELETE FROM order_items WHERE line = 2")
    current = fingerprints(target)
    dump = raw_dump(stored, written)
    start = dump.index(b"COPY public.orders ")
    row = dump.index(b"\n", start) + 1
    bad = dump[:row] + b"not-a-number" + dump[dump.index(b"\t", row):]  # the id column
    raw = io.BytesIO()
    writer = CompressingWriter(raw)
    writer.write(bad)
    written = writer.finish()
    with pytest.raises(RestoreError) as caught:
        restore(engine, target, raw.getvalue(), written, stats)
    assert caught.value.ref == "restore.postgres" and "not-a-number" in caught.value.message
    assert caught.value.hint.startswith("the current database is unchanged")
    assert fingerprints(target) == current
    with connect(target, "postgres") as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE "
                            "'%reconcile_restore'").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname LIKE "
                            "'%reconcile_restore'").fetchone()[0] == 0


def raw_dump(stored: bytes, written) -> bytes:
    return DecompressingReader(io.BytesIO(stored), Compression.ZSTD, written.sha256).read(1 << 30)


class FailingOut:
    """A destination that breaks after some bytes, like a full disk."""

    def __init__(self, limit: int) -> None:
        self.limit, self.count = limit, 0

    def write(self, data: bytes) -> int:
        self.count += len(data)
        if self.count > self.limit:
            raise OSError(28, "No space left on device")
        return len(data)


@pytest.mark.parametrize("stream", ["auto", "exec"])
def test_destination_failing_midway_is_a_backup_error_and_pg_dump_stops(server, monkeypatch, stream):
    target, engine = server
    monkeypatch.setenv("RECONCILE_STREAM", stream)
    with connect(target) as conn:
        conn.execute("CREATE TABLE big AS SELECT i, md5(i::text) AS t FROM generate_series(1, 200000) i")
    with pytest.raises(BackupError) as caught:
        engine.backup(target, FailingOut(256 * 1024))
    assert "No space left" in caught.value.message
    assert no_dump_running(target)


def no_dump_running(target, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    with connect(target, "postgres") as conn:
        while time.monotonic() < deadline:
            if not conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name "
                                "LIKE 'reconcile%' AND pid <> pg_backend_pid()").fetchone()[0]:
                return True
            time.sleep(0.2)
    return False


class SlowOut(io.BytesIO):
    def write(self, data: bytes) -> int:
        time.sleep(0.02)
        return super().write(data)


@pytest.mark.parametrize("stream", ["auto", "exec"])
def test_pg_dump_killed_midway_is_a_backup_error(server, client, monkeypatch, stream):
    target, engine = server
    monkeypatch.setenv("RECONCILE_STREAM", stream)
    with connect(target) as conn:
        conn.execute("CREATE TABLE big AS SELECT i, md5(i::text) AS t FROM generate_series(1, 300000) i")
    killed: list[bool] = []
    killer = threading.Thread(target=kill_dump_when_copying, args=(target, killed), daemon=True)
    killer.start()
    out = SlowOut()
    with pytest.raises(BackupError) as caught:
        engine.backup(target, out)
    killer.join()
    assert killed and out.tell() > 0  # killed while data was flowing, not before
    assert caught.value.ref in {"backup.pg_dump", "backup.truncated"}


def kill_dump_when_copying(target, killed: list[bool]) -> None:
    """Terminate pg_dump's server session while it streams COPY data: pg_dump dies mid-dump."""
    with connect(target, "postgres") as conn:
        for _ in range(300):
            if conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE application_name = 'reconcile-dump' AND query LIKE 'COPY%big%'"
                            ).fetchall():
                killed.append(True)
                return
            time.sleep(0.05)


def test_table_data_never_goes_through_the_exec_stream(server, monkeypatch):
    """On a local engine a dump leaves through the helper's pipe, and a restore sends only
    the SQL (schema, indexes) through psql's exec stream: the rows go over COPY connections."""
    target, engine = server
    real_exec = dockerio.exec_stream
    sent: list[int] = []

    def refuse(*args, **kwargs):
        raise AssertionError("exec stream used")

    def counted(*args, source=None, **kwargs):
        def count(chunks):
            for chunk in chunks:
                sent.append(len(chunk))
                yield chunk
        return real_exec(*args, source=count(source), **kwargs)

    before = fingerprints(target)
    monkeypatch.setattr(dockerio, "exec_stream", refuse)
    stats, written, stored = backup(engine, target)
    monkeypatch.setattr(dockerio, "exec_stream", counted)
    restore(engine, target, stored, written, stats)
    assert fingerprints(target) == before
    rows = b"".join(line for line in raw_dump(stored, written).splitlines(keepends=True)
                    if line.count(b"\t") >= 2)
    assert len(rows) > 10 * sum(sent) > 0


def helper_volumes(client, since: int, until: int) -> set[str]:
    """Volumes created for this process's helpers between two instants, read from the
    engine's events: other tests (another xdist worker) create volumes meanwhile too."""
    from reconciler.dockerio.stream import LABEL_HELPER_OWNER
    from reconciler.owner import owner_text

    events = list(client.api.events(since=since, until=until, decode=True))
    ours = {e["Actor"]["ID"] for e in events if e.get("Type") == "container" and e.get("Action") == "create"
            and e["Actor"]["Attributes"].get(LABEL_HELPER_OWNER) == owner_text()}
    created = {e["Actor"]["ID"] for e in events if e.get("Type") == "volume" and e.get("Action") == "create"}
    return {e["Actor"]["ID"] for e in events if e.get("Type") == "volume" and e.get("Action") == "mount"
            and e["Actor"]["Attributes"].get("container") in ours} & created


def test_the_helper_containers_leave_no_volume_behind(server, client):
    """A helper runs the server's image, whose VOLUME gives each helper an anonymous volume;
    removing the helper removes that too (one volume leaked per backup, before)."""
    target, engine = server
    since = int(time.time()) - 1
    backup(engine, target)
    mounted = helper_volumes(client, since, int(time.time()) + 1)
    assert mounted, "no helper mounted a volume: the test no longer sees what it checks"
    left = {v["Name"] for v in client.api.volumes().get("Volumes") or ()} & mounted
    assert not left


def test_no_secret_in_errors_probes_or_stats(server):
    target, engine = server
    stats, _, _ = backup(engine, target)
    assert PASSWORD not in repr(target) and PASSWORD not in repr(stats)
    assert PASSWORD not in repr(engine.probe(target))
    wrong = make_target("db", target.service, target.container_id, target.host)
    object.__setattr__(wrong, "password", PASSWORD + "-wrong")
    result = engine.probe(wrong)
    assert result.status is ProbeStatus.REFUSED and PASSWORD not in repr(result)
    elsewhere_db = target.service.backup.model_copy(update={"databases": ["no_such_db"]})
    missing = make_target("db", target.service.model_copy(update={"backup": elsewhere_db}),
                          target.container_id, target.host)
    assert engine.probe(missing).status is ProbeStatus.REFUSED  # the server runs; the spec is wrong
    elsewhere = make_target("db", target.service, target.container_id, "127.0.0.1")
    object.__setattr__(elsewhere, "port", 1)  # nothing listens there: not a refusal
    assert engine.probe(elsewhere, timeout=2).status is ProbeStatus.UNREACHABLE
    for call, ref in ((lambda: engine.backup(wrong, io.BytesIO()), "backup.postgres"),
                      (lambda: engine.estimate_size(wrong), "backup.postgres"),
                      (lambda: engine.verify(wrong, stats), "verify.postgres")):
        with pytest.raises(ReconcileError) as caught:
            call()
        assert PASSWORD not in str(caught.value) and "authentication failed" in str(caught.value)
        assert caught.value.ref == ref


def test_several_databases_share_one_stream_and_restore_each(server):
    target, engine = server
    with connect(target, "postgres") as conn:
        conn.execute("DROP DATABASE IF EXISTS extra WITH (FORCE)")
        conn.execute("CREATE DATABASE extra")
    with connect(target, "extra") as conn:
        conn.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)")
        conn.execute("INSERT INTO notes SELECT i, repeat('n', i) FROM generate_series(1, 50) i")
    several = target.service.model_copy(update={"backup": target.service.backup.model_copy(
        update={"databases": ["shop", "extra"]})})
    both = make_target("db", several, target.container_id, target.host)
    object.__setattr__(both, "password", PASSWORD)
    before = fingerprints(target)
    stats, written, stored = backup(engine, both)
    assert [d.name for d in stats.databases] == ["shop", "extra"]
    assert stats.tables["extra/public.notes"] == 50 and stats.table_count == 5
    assert engine.estimate_size(both) > 0
    with connect(target, "extra") as conn:
        conn.execute("DROP TABLE notes")
    with connect(target) as conn:
        conn.execute("DELETE FROM order_items")
    restored = restore(engine, both, stored, written, stats)
    assert restored.rows_restored == 8853 and restored.verify.ok
    assert fingerprints(target) == before
    with connect(target, "extra") as conn:
        assert conn.execute("SELECT count(*), sum(length(body)) FROM notes").fetchone() == (50, 1275)


def run_cli(loaded, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The CLI on the spec, as a user runs it; its output never holds the password."""
    result = cli(loaded.file, {**os.environ, "NO_COLOR": "1", **(env or {})}, *args, timeout=300)
    assert PASSWORD not in result.stdout + result.stderr
    return result


def test_a_server_on_another_port_is_probed_backed_up_and_restored(client, write_spec, project):
    """``-c port=5433``: the host reaches it there, and pg_dump / psql inside its container
    find the socket that port names."""
    loaded = write_spec("""
        version: 1
        project: {project}
        services:
          db:
            kind: postgres
            image: reconcile-lab/postgres:15
            command: ["postgres", "-c", "port=5433"]
            env: { POSTGRES_PASSWORD: "${env:PG_TEST_PASSWORD}", POSTGRES_DB: shop }
            stateful: true
        backup:
          local: { path: ./backups }
        """, environ={"PG_TEST_PASSWORD": PASSWORD})
    ids = materialise(client, loaded)
    target = make_target("db", loaded.spec.services["db"], ids["db"],
                         container_ip(dockerio.inspect_container(client, ids["db"])))
    assert target.port == 5433
    wait_healthy(engine_for(Kind.POSTGRES, client), target)
    with connect(target) as conn:
        conn.execute(SCHEMA)
    before = fingerprints(target)
    env = {"PG_TEST_PASSWORD": PASSWORD}
    deadline = time.monotonic() + 60  # the Docker health check must find the port too
    while (health := run_cli(loaded, "health", env=env)).returncode != 0 and time.monotonic() < deadline:
        time.sleep(1)
    assert health.returncode == 0, health.stdout + health.stderr
    backup = run_cli(loaded, "backup", env=env)
    assert backup.returncode == 0, backup.stderr
    with connect(target) as conn:
        conn.execute("DROP TABLE order_items; DELETE FROM audit.events")
    restore = run_cli(loaded, "restore", "--yes", env=env)
    assert restore.returncode == 0, restore.stderr
    assert fingerprints(target) == before


def test_a_password_given_as_a_docker_secret_file_is_read_in_the_container(client, write_spec, project,
                                                                          tmp_path):
    """POSTGRES_PASSWORD_FILE, as with Docker secrets: the password is in a file mounted into
    the container, not in the spec or its environment."""
    secret = tmp_path / "pg-password"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    loaded = write_spec(f"""
        version: 1
        project: {{project}}
        services:
          db:
            kind: postgres
            image: reconcile-lab/postgres:15
            env: {{ POSTGRES_PASSWORD_FILE: /run/secrets/pg, POSTGRES_DB: shop }}
            volumes: ["{secret}:/run/secrets/pg:ro"]
            stateful: true
        backup:
          local: {{ path: ./backups }}
        """)
    materialise(client, loaded)
    session = Session(loaded)
    target = session.target("db")
    assert target.password == PASSWORD
    wait_healthy(engine_for(Kind.POSTGRES, client), target)
    with connect(target) as conn:
        conn.execute(SCHEMA)
    for command in ("health", "backup", "verify"):
        result = run_cli(loaded, command)
        assert result.returncode == 0, result.stdout + result.stderr
    secret.unlink()  # the mount's source is gone: the service is critical, the command still reports
    probe = run_cli(loaded, "health", "--json")
    assert probe.returncode == 2, probe.stdout + probe.stderr
    details = json.loads(probe.stdout)["services"]["db"]
    assert details["status"] == "refused" and "/run/secrets/pg" in details["details"]["error"]


def test_a_database_the_spec_names_but_the_server_lacks_is_refused_and_fails_the_backup(server, client,
                                                                                          tmp_path):
    """``backup.databases`` names one the server does not have: health says ``refused`` and names
    it, diagnose reports the blocking issue, and the backup fails saying which and what to do
    (not "is the server up?"). Once it exists, the same spec is healthy."""
    target, engine = server
    labels = dockerio.inspect_container(client, target.container_id)["Config"]["Labels"]
    env = {"PG_TEST_PASSWORD": PASSWORD}

    def spec(databases: list[str]):
        path = tmp_path / "reconcile.yaml"
        path.write_text(SPEC.replace("{project}", labels["reconcile.project"]).replace(
            "backup: {", f"backup: {{ databases: {json.dumps(databases)},"))
        return load_spec(path, {**os.environ, **env})

    with connect(target, "postgres") as conn:
        conn.execute("DROP DATABASE IF EXISTS extra WITH (FORCE)")
    loaded = spec(["shop", "extra"])
    probe = engine.probe(Session(loaded).target("db"))
    assert probe.status is ProbeStatus.REFUSED and probe.details["missing_databases"] == ["extra"]
    with pytest.raises(BackupError) as caught:
        engine.estimate_size(Session(loaded).target("db"))
    assert caught.value.ref == "backup.database-missing" and "extra" in caught.value.message
    backup = run_cli(loaded, "backup", env=env)
    said = backup.stdout + backup.stderr
    assert backup.returncode == 1, said
    assert "extra" in said and "create it, or remove it from backup.databases of db" in said, said
    assert "is the server up" not in said, said
    health = run_cli(loaded, "health", "--json", env=env)
    assert health.returncode == 2, health.stdout + health.stderr
    db = json.loads(health.stdout)["services"]["db"]
    assert db["status"] == "refused" and 'database "extra" does not exist' in db["details"]["error"], db
    found = run_cli(loaded, "diagnose", "--json", env=env)
    assert found.returncode == 2, found.stdout + found.stderr
    [issue] = [i for i in json.loads(found.stdout)["issues"] if i["service"] == "db"]
    assert (issue["rule"], issue["issue"], issue["severity"]) == ("credentials-refused", "database missing",
                                                                 "critical"), issue
    assert "extra" in issue["details"], issue
    with connect(target, "postgres") as conn:
        conn.execute("CREATE DATABASE extra")
    assert engine.probe(Session(loaded).target("db")).status is ProbeStatus.HEALTHY
    healthy = run_cli(loaded, "health", "--json", env=env)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert json.loads(healthy.stdout)["services"]["db"]["details"]["database"] == "shop"
