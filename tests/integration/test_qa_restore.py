"""Restore and `backups verify` at their edges: a service's container gone in the middle of a
multi-service restore, and a local folder too full to take a file fetched from S3. Real
PostgreSQL, real Redis, real S3 server, a real tmpfs for the backups folder."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

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
  local: { path: "${env:QA_BACKUP_DIR}" }
  s3:
    enabled: true
    endpoint: "${env:S3_ENDPOINT}"
    bucket: "${env:S3_BUCKET}"
    region: us-east-1
"""


@pytest.fixture()
def backup_dir(tmp_path):
    """The backups folder on a tmpfs of its own, so it can be filled without filling the host."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m,nr_inodes=200", "tmpfs", str(folder)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (the lab's tests run as root): {mounted.stderr}", pytrace=False)
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture()
def stack(client, write_spec, s3_endpoint, backup_dir, monkeypatch):
    bucket = f"qa-restore-{secrets.token_hex(4)}"
    for key, value in {"PGPW": PASSWORD, "S3_ENDPOINT": s3_endpoint.url, "S3_BUCKET": bucket,
                       "QA_BACKUP_DIR": str(backup_dir / "backups"), **s3_endpoint.environ}.items():
        monkeypatch.setenv(key, value)
    loaded = write_spec(SPEC)
    session = Session(loaded, environ=dict(os.environ))
    session.s3.ensure_bucket()
    materialise(client, loaded)
    for service in ("postgres", "cache"):
        assert wait_healthy(session, service, f"{loaded.spec.project}-{service}", timeout=60).level is Level.HEALTHY
    with pg(session) as conn:
        conn.execute("CREATE TABLE notes (id serial PRIMARY KEY, body text)")
        conn.execute("INSERT INTO notes (body) SELECT 'note ' || g FROM generate_series(1, 100) g")
    redis.Redis(host=container_ip(session.container_doc("cache")), port=6379).set("version", "one")
    yield loaded, session
    empty_and_remove_bucket(raw_client(s3_endpoint), bucket)


def pg(session: Session) -> psycopg.Connection:
    ip = container_ip(session.container_doc("postgres"))
    return psycopg.connect(f"postgresql://postgres:{PASSWORD}@{ip}:5432/clinic", autocommit=True)


def notes_digest(session: Session) -> tuple[int, str]:
    with pg(session) as conn:
        return conn.execute("SELECT count(*), md5(string_agg(body, '|' ORDER BY id)) FROM notes").fetchone()


def cli(loaded, *args):
    result = subprocess.run([sys.executable, "-m", "reconciler", "-f", str(loaded.file), *args],
                            check=False, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "NO_COLOR": "1"})
    for secret in (PASSWORD, os.environ["S3_SECRET_ACCESS_KEY"], os.environ["S3_ACCESS_KEY_ID"]):
        assert secret not in result.stdout + result.stderr
    return result


def backup(loaded) -> dict:
    result = cli(loaded, "backup", "--json", "--no-prune")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def fill(folder: Path) -> None:
    """Fill the disk holding ``folder`` to the last byte."""
    with open(folder / "filler", "wb", buffering=0) as sink:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    sink.write(b"\0" * size)
            except OSError:
                continue


def test_restore_of_all_refuses_before_any_change_when_a_later_service_has_no_container(stack, client):
    """The cache's container removed: `restore latest` of both used to replace PostgreSQL's
    databases first, then fail on the cache, leaving the stack half restored."""
    loaded, session = stack
    backup(loaded)
    with pg(session) as conn:
        conn.execute("DELETE FROM notes WHERE id > 60")
    changed = notes_digest(session)
    client.api.remove_container(f"{loaded.spec.project}-cache", force=True)

    result = cli(loaded, "restore", "latest", "--yes")
    assert result.returncode == 1, result.stdout
    assert "cache has no container" in result.stderr and "no service was restored" in result.stderr
    assert "hint: run `reconcile apply`" in result.stderr
    assert notes_digest(session) == changed  # PostgreSQL's live data was not replaced

    result = cli(loaded, "restore", "latest", "postgres", "--yes")  # the one service alone still restores
    assert result.returncode == 0, result.stderr
    assert notes_digest(session)[0] == 100


def test_a_full_local_disk_is_not_blamed_on_the_s3_copy(stack, backup_dir):
    """No local copy, and no room left for the one fetched from S3: the error says the local
    disk is full, not that the S3 copy is unusable too; `backups verify` says the S3 store was
    not checked, not that its files are corrupt. Once there is room, the same
    S3 copy restores the data exactly."""
    loaded, session = stack
    before = notes_digest(session)
    doc = backup(loaded)
    assert doc["storage"] == {"local": "ok", "s3": "ok"}
    entry = doc["services"]["postgres"]
    session.local.delete(entry["key"])
    with pg(session) as conn:
        conn.execute("DELETE FROM notes WHERE id > 10")
    fill(backup_dir)

    result = cli(loaded, "restore", doc["backup_id"], "postgres", "--yes")
    assert result.returncode == 1
    assert "disk full" in result.stderr and "could not be saved in the local folder" in result.stderr
    assert "the S3 copy too" not in result.stderr and "hint: free space" in result.stderr
    assert notes_digest(session)[0] == 10
    assert not session.local.path_of(entry["key"]).exists()

    checked = cli(loaded, "backups", "verify", "--json")
    report = json.loads(checked.stdout)
    assert [(p["store"], p["key"]) for p in report["problems"]] == [("local", entry["key"])]  # deleted above
    assert [(p["store"], p["error"]) for p in report["stores_not_read"]] == [("s3", "backup.not-checked")]

    (backup_dir / "filler").unlink()
    result = cli(loaded, "restore", doc["backup_id"], "postgres", "--yes", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["postgres"]["source"] == "s3"
    assert notes_digest(session) == before
    assert json.loads(session.local.read_bytes(metadata.key_for(doc["backup_id"])))["services"]["postgres"]
    assert cli(loaded, "backups", "verify").returncode == 0


def test_a_disk_that_fills_at_the_metadata_leaves_no_unrecorded_files(stack, backup_dir):
    """The data file fits, its metadata does not: the backup fails (exit 1) and its data file
    is removed too. It was left whole under its final name, named by no record: never restored,
    never pruned, never swept, holding the very space that had run out."""
    loaded, session = stack
    first = backup(loaded)  # a small cache backup to size the next one by (the free-space check)
    cache_folder = session.local.path_of(first["services"]["cache"]["key"]).parent
    held = sorted(cache_folder.iterdir())
    page = os.statvfs(backup_dir).f_frsize
    # room for the claim marker and the cache's file (a page each), none for the metadata
    info = os.statvfs(backup_dir)
    (backup_dir / "filler").write_bytes(b"\0" * ((info.f_bavail - 2) * page))

    result = cli(loaded, "backup", "cache", "--no-prune")
    assert result.returncode == 1, result.stdout
    assert "disk full" in result.stderr and "metadata/backup-" in result.stderr and "hint:" in result.stderr
    assert sorted(cache_folder.iterdir()) == held
    assert [doc["backup_id"] for doc in metadata.load_all(session.local)] == [first["backup_id"]]

    (backup_dir / "filler").unlink()
    assert cli(loaded, "backup", "cache", "--no-prune").returncode == 0
    checked = json.loads(cli(loaded, "backups", "verify", "--json").stdout)
    assert checked["unrecorded"] == [] and checked["problems"] == [] and checked["status"] == "ok"


def test_no_inode_left_is_an_error_not_a_traceback(stack, backup_dir):
    """A disk out of inodes (bytes free): `backups verify` crashed with a traceback making the
    folder it downloads S3 files into, and a restore's hint named the S3 key as a local path."""
    loaded, session = stack
    doc = backup(loaded)
    entry = doc["services"]["cache"]
    session.local.delete(entry["key"])
    count = 0
    try:
        while True:
            (backup_dir / f"inode-{count}").touch()
            count += 1
    except OSError:
        pass

    checked = cli(loaded, "backups", "verify", "--json")
    assert "Traceback" not in checked.stderr and checked.stdout, checked.stderr
    report = json.loads(checked.stdout)
    assert [(p["store"], p["key"]) for p in report["problems"]] == [("local", entry["key"])]  # deleted above
    assert [(p["store"], p["error"]) for p in report["stores_not_read"]] == [("s3", "backup.not-checked")]
    assert "No space left on device" in report["stores_not_read"][0]["message"]

    result = cli(loaded, "restore", doc["backup_id"], "cache", "--yes")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    local_path = str(session.local.path_of(entry["key"]))
    assert f"hint: free space on the disk holding {local_path} " in result.stderr

    for index in range(count):
        (backup_dir / f"inode-{index}").unlink()
    assert cli(loaded, "restore", doc["backup_id"], "cache", "--yes").returncode == 0
    assert cli(loaded, "backups", "verify").returncode == 0
