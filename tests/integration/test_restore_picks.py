"""Which backup `restore` / `verify` take for each service, and that nothing live is touched
before every file has been fetched and checked. Real PostgreSQL, real Redis, real S3 server."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys

import psycopg
import pytest
import redis

from reconciler.backup import metadata
from reconciler.engines import container_ip
from reconciler.health import Level, wait_healthy
from reconciler.session import Session
from tests.conftest_s3 import empty_and_remove_bucket, raw_client
from tests.integration.conftest import materialise

pytestmark = [pytest.mark.engine, pytest.mark.s3]

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
    env: { POSTGRES_PASSWORD: "${env:PGPW}", POSTGRES_DB: clinic }
    stateful: true
    backup: { databases: [clinic] }
  cache:
    profile: infrastructure
    kind: redis
    image: reconcile-lab/redis:7
    stateful: true
backup:
  local: { path: ./backups }
  s3:
    enabled: true
    endpoint: "${env:S3_ENDPOINT}"
    bucket: "${env:S3_BUCKET}"
    region: us-east-1
"""


@pytest.fixture()
def stack(client, write_spec, s3_endpoint, monkeypatch):
    bucket = f"picks-{secrets.token_hex(4)}"
    for key, value in {"PGPW": PASSWORD, "S3_ENDPOINT": s3_endpoint.url, "S3_BUCKET": bucket,
                       **s3_endpoint.environ}.items():
        monkeypatch.setenv(key, value)
    loaded = write_spec(SPEC)
    session = Session(loaded, environ=dict(os.environ))
    session.s3.ensure_bucket()
    materialise(client, loaded)
    for service in ("postgres", "cache"):
        name = f"{loaded.spec.project}-{service}"
        assert wait_healthy(session, service, name, timeout=60).level is Level.HEALTHY
    with pg(session) as conn:
        conn.execute("CREATE TABLE notes (id serial PRIMARY KEY, body text)")
        conn.execute("INSERT INTO notes (body) SELECT 'note ' || g FROM generate_series(1, 100) g")
    kv(session).set("version", "one")
    yield loaded, session
    empty_and_remove_bucket(raw_client(s3_endpoint), bucket)


def pg(session: Session) -> psycopg.Connection:
    ip = container_ip(session.container_doc("postgres"))
    return psycopg.connect(f"postgresql://postgres:{PASSWORD}@{ip}:5432/clinic", autocommit=True)


def kv(session: Session) -> redis.Redis:
    return redis.Redis(host=container_ip(session.container_doc("cache")), port=6379)


def notes(session: Session) -> int:
    with pg(session) as conn:
        return conn.execute("SELECT count(*) FROM notes").fetchone()[0]


def cli(loaded, *args):
    result = subprocess.run([sys.executable, "-m", "reconciler", "-f", str(loaded.file), *args],
                            check=False, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "NO_COLOR": "1"})
    assert PASSWORD not in result.stdout + result.stderr
    return result


def backup(loaded, *services) -> str:
    result = cli(loaded, "backup", *services, "--json", "--no-prune")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["backup_id"]


def test_latest_takes_each_services_own_newest_backup(stack):
    """A later backup of the cache alone must not make `restore latest` skip PostgreSQL."""
    loaded, session = stack
    full = backup(loaded)
    with pg(session) as conn:
        conn.execute("INSERT INTO notes (body) VALUES ('after the full backup')")
    kv(session).set("version", "two")
    cache_only = backup(loaded, "cache")
    assert cache_only != full
    with pg(session) as conn:
        conn.execute("DELETE FROM notes WHERE id <= 50")
    kv(session).set("version", "three")

    verified = cli(loaded, "verify", "--json")
    assert verified.returncode == 2, verified.stdout
    report = json.loads(verified.stdout)
    assert report["services"]["postgres"]["backup_id"] == full
    assert report["services"]["cache"]["backup_id"] == cache_only

    result = cli(loaded, "restore", "latest", "--yes", "--json")
    assert result.returncode == 0, result.stderr
    done = json.loads(result.stdout)
    assert (done["postgres"]["backup_id"], done["cache"]["backup_id"]) == (full, cache_only)
    assert done["backup_id"] == cache_only  # the newest one used
    assert notes(session) == 100 and kv(session).get("version") == b"two"
    assert cli(loaded, "verify").returncode == 0


def test_a_bad_file_stops_the_restore_before_any_data_is_replaced(stack):
    loaded, session = stack
    backup_id = backup(loaded)
    doc = json.loads(session.local.read_bytes(metadata.key_for(backup_id)))
    cache_file = session.local.path_of(doc["services"]["cache"]["key"])
    cache_file.write_bytes(b"not the backup")
    with pg(session) as conn:
        conn.execute("INSERT INTO notes (body) VALUES ('after the backup')")

    result = cli(loaded, "restore", backup_id, "--yes", "--source", "local")
    assert result.returncode != 0
    assert "cache" in result.stderr and "unusable" in result.stderr
    assert notes(session) == 101  # PostgreSQL (restored first otherwise) was not touched


def test_a_file_fetched_from_s3_is_recorded_locally(stack):
    """After a restore from S3, the local copy is a backup like any other: listed, restorable
    with --source local, and in local retention's reach."""
    loaded, session = stack
    backup_id = backup(loaded)
    key = metadata.key_for(backup_id)
    doc = json.loads(session.local.read_bytes(key))
    session.local.delete(key)
    for entry in doc["services"].values():
        session.local.delete(entry["key"])

    assert cli(loaded, "restore", backup_id, "postgres", "--yes").returncode == 0
    local_doc = json.loads(session.local.read_bytes(key))
    assert list(local_doc["services"]) == ["postgres"]  # only what is local now
    assert local_doc["partial"] is True
    with pg(session) as conn:
        conn.execute("INSERT INTO notes (body) VALUES ('after the backup')")
    result = cli(loaded, "restore", backup_id, "postgres", "--yes", "--source", "local")
    assert result.returncode == 0, result.stderr
    assert notes(session) == 100

    assert list(local_doc["services"]) == ["postgres"] and local_doc["partial"] is True
    assert cli(loaded, "restore", backup_id, "--yes").returncode == 0  # both: S3 knows the cache
    local_doc = json.loads(session.local.read_bytes(key))
    assert sorted(local_doc["services"]) == ["cache", "postgres"] and "partial" not in local_doc


def test_restore_from_s3_keeps_the_other_local_files_of_the_backup(stack):
    """Local metadata lost, data files still local: a restore of one service from S3 writes a
    local document naming every file still in the folder, not only the one fetched."""
    loaded, session = stack
    backup_id = backup(loaded)
    key = metadata.key_for(backup_id)
    doc = json.loads(session.local.read_bytes(key))
    session.local.delete(key)
    truncated = session.local.path_of(doc["services"]["cache"]["key"])

    assert cli(loaded, "restore", backup_id, "postgres", "--source", "s3", "--yes").returncode == 0
    local_doc = json.loads(session.local.read_bytes(key))
    assert sorted(local_doc["services"]) == ["cache", "postgres"] and "partial" not in local_doc
    assert local_doc["services"]["cache"] == doc["services"]["cache"]
    kv(session).set("version", "changed")
    result = cli(loaded, "restore", backup_id, "cache", "--source", "local", "--yes")
    assert result.returncode == 0, result.stderr
    assert kv(session).get("version") == b"one"

    session.local.delete(key)  # a local file of another size is not the backup's: partial
    truncated.write_bytes(truncated.read_bytes()[:-1])
    assert cli(loaded, "restore", backup_id, "postgres", "--source", "s3", "--yes").returncode == 0
    local_doc = json.loads(session.local.read_bytes(key))
    assert list(local_doc["services"]) == ["postgres"] and local_doc["partial"] is True


def test_latest_is_the_newest_backup_of_either_store(stack):
    """The newest backup's local copy is gone (a disk swapped, a folder cleaned): `latest` is
    still the newest, fetched from S3, not an older local one. Unreadable local metadata is
    named in the result instead of being passed over in silence."""
    loaded, session = stack
    older = backup(loaded, "cache")
    kv(session).set("version", "two")
    newest = backup(loaded, "cache")
    local = loaded.file.parent / "backups"
    (local / "metadata" / f"backup-{newest}.json").unlink()
    for path in (local / "cache").glob(f"cache-{newest}*"):
        path.unlink()
    (local / "metadata" / "backup-2026-01-01-000000.json").write_text("{ torn")
    kv(session).set("version", "three")

    result = cli(loaded, "restore", "latest", "cache", "--yes", "--json")
    assert result.returncode == 0, result.stderr
    done = json.loads(result.stdout)
    assert done["cache"]["backup_id"] == newest != older and done["cache"]["source"] == "s3"
    assert kv(session).get("version") == b"two"
    assert any("backup-2026-01-01-000000.json in the local store was skipped" in note
               for note in done["notes"]), done
