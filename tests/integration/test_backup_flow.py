"""`reconcile backup / restore / verify / backups` end to end: real PostgreSQL, real S3 server."""

from __future__ import annotations

import json
import os
import secrets
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

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
volumes:
  pgdata: {}
services:
  postgres:
    profile: infrastructure
    kind: postgres
    image: reconcile-lab/postgres:15
    env: { POSTGRES_PASSWORD: "${env:PGPW}", POSTGRES_DB: clinic }
    volumes: ["pgdata:/var/lib/postgresql/data"]
    stateful: true
    backup: { databases: [clinic], critical_tables: [patients, visits] }
backup:
  local: { path: ./backups }
  s3:
    enabled: true
    endpoint: "${env:S3_ENDPOINT}"
    bucket: "${env:S3_BUCKET}"
    region: us-east-1
    required: "${env:S3_REQUIRED:-false}"
"""


@pytest.fixture()
def stack(client, write_spec, s3_endpoint, monkeypatch):
    bucket = f"flow-{secrets.token_hex(4)}"
    env = {"PGPW": PASSWORD, "S3_ENDPOINT": s3_endpoint.url, "S3_BUCKET": bucket,
           **s3_endpoint.environ}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    loaded = write_spec(SPEC)
    session = Session(loaded, environ=dict(os.environ))
    session.s3.ensure_bucket()
    materialise(client, loaded)
    assert wait_healthy(session, "postgres", f"{loaded.spec.project}-postgres", timeout=60).level is Level.HEALTHY
    seed(session)
    yield loaded, session, env
    empty_and_remove_bucket(raw_client(s3_endpoint), bucket)


def dsn(session: Session) -> str:
    doc = session.container_doc("postgres")
    return f"postgresql://postgres:{PASSWORD}@{container_ip(doc)}:5432/clinic"


def seed(session: Session) -> None:
    with psycopg.connect(dsn(session), autocommit=True) as conn:
        conn.execute("""
            CREATE TABLE patients (id serial PRIMARY KEY, name text NOT NULL, born date, note text);
            CREATE TABLE visits (id serial PRIMARY KEY, patient_id int REFERENCES patients(id),
                                 cost numeric(10,2), data bytea, at timestamptz DEFAULT now());
            INSERT INTO patients (name, born, note)
              SELECT 'patient ' || g || ' ünïcødé', date '1950-01-01' + g, md5(g::text)
              FROM generate_series(1, 3000) g;
            INSERT INTO visits (patient_id, cost, data)
              SELECT 1 + g % 3000, g * 1.5, decode(md5(g::text), 'hex') FROM generate_series(1, 6000) g;
        """)


def table_digest(session: Session, table: str) -> str:
    with psycopg.connect(dsn(session)) as conn:
        return conn.execute(f"SELECT md5(string_agg(t::text, '|' ORDER BY t.id)) FROM {table} t").fetchone()[0]


def cli(loaded, *args, env=None):
    result = subprocess.run([sys.executable, "-m", "reconciler", "-f", str(loaded.file), *args],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "NO_COLOR": "1", **(env or {})})
    for secret in (PASSWORD, os.environ.get("S3_SECRET_ACCESS_KEY", "never-set")):
        assert secret not in result.stdout + result.stderr
    return result


def test_backup_drop_restore_gives_identical_rows(stack):
    loaded, session, _ = stack
    before = {t: table_digest(session, t) for t in ("patients", "visits")}
    result = cli(loaded, "backup", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    entry = doc["services"]["postgres"]
    assert doc["storage"] == {"local": "ok", "s3": "ok"} and doc["verified"] is True
    assert entry["checksum"].startswith("sha256:") and entry["table_count"] == 2
    assert entry["row_count"] == 9000 and entry["tables"]["public.visits"] == 6000
    assert entry["file"].startswith("postgres-") and entry["file"].endswith(".sql.zst")
    path = Path(entry["local_path"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((path.parent.parent / "metadata").stat().st_mode) == 0o700

    with psycopg.connect(dsn(session), autocommit=True) as conn:
        conn.execute("DROP TABLE visits")
    result = cli(loaded, "restore", "latest", "--yes", "--json")
    assert result.returncode == 0, result.stderr
    restored = json.loads(result.stdout)
    assert restored["backup_id"] == doc["backup_id"] and restored["postgres"]["source"] == "local"
    assert {t: table_digest(session, t) for t in ("patients", "visits")} == before
    assert cli(loaded, "verify").returncode == 0


def test_backups_in_the_same_second_keep_their_own_files(stack, monkeypatch):
    """Two backups taken within one second: the second gets id …-2 and files of its own."""
    from reconciler.backup import catalogue
    from reconciler.backup import run as backup_run

    loaded, session, _ = stack
    instant = datetime.now(UTC)

    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return instant

    monkeypatch.setattr(backup_run, "datetime", Frozen)
    first = backup_run.backup_services(session, ["postgres"])
    with psycopg.connect(dsn(session), autocommit=True) as conn:
        conn.execute("INSERT INTO patients (name) VALUES ('after the first backup')")
    second = backup_run.backup_services(session, ["postgres"])
    assert second.backup_id == f"{first.backup_id}-2"
    keys = [run.document["services"]["postgres"]["key"] for run in (first, second)]
    assert keys[0] != keys[1] and keys[1].endswith("-2.sql.zst")
    found = catalogue.check_files(session)
    assert found.problems == [] and found.checked == 4  # two files, local and S3
    assert found.unrecorded == [] and found.unreadable_stores == []
    result = cli(loaded, "restore", first.backup_id, "--yes")
    assert result.returncode == 0, result.stderr
    with psycopg.connect(dsn(session)) as conn:
        assert conn.execute("SELECT count(*) FROM patients").fetchone()[0] == 3000


def test_corrupt_local_copy_restores_from_s3_and_heals_local(stack):
    loaded, session, _ = stack
    doc = json.loads(cli(loaded, "backup", "--json").stdout)
    path = Path(doc["services"]["postgres"]["local_path"])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert cli(loaded, "backups", "verify").returncode == 2
    result = cli(loaded, "restore", "--yes", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["postgres"]["source"] == "s3"
    assert cli(loaded, "backups", "verify").returncode == 0


def test_corrupt_s3_copy_local_is_used(stack, s3_endpoint):
    loaded, session, env = stack
    doc = json.loads(cli(loaded, "backup", "--json").stdout)
    key = "backups/" + doc["services"]["postgres"]["key"]
    s3 = raw_client(s3_endpoint)
    meta = s3.head_object(Bucket=env["S3_BUCKET"], Key=key)["Metadata"]
    s3.put_object(Bucket=env["S3_BUCKET"], Key=key, Body=b"garbage", Metadata=meta)
    result = cli(loaded, "restore", "--yes", "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["postgres"]["source"] == "local"
    assert cli(loaded, "restore", "--yes", "--source", "s3").returncode != 0


def test_both_copies_corrupt_names_both_and_leaves_the_database_alone(stack, s3_endpoint):
    loaded, session, env = stack
    doc = json.loads(cli(loaded, "backup", "--json").stdout)
    entry = doc["services"]["postgres"]
    Path(entry["local_path"]).write_bytes(b"damaged")
    s3 = raw_client(s3_endpoint)
    key = "backups/" + entry["key"]
    meta = s3.head_object(Bucket=env["S3_BUCKET"], Key=key)["Metadata"]
    s3.put_object(Bucket=env["S3_BUCKET"], Key=key, Body=b"garbage", Metadata=meta)
    with psycopg.connect(dsn(session), autocommit=True) as conn:
        conn.execute("INSERT INTO patients (name) VALUES ('after the backup')")
        before = conn.execute("SELECT count(*) FROM patients").fetchone()[0]
    result = cli(loaded, "restore", "--yes")
    assert result.returncode == 1
    assert "local copy is unusable" in result.stderr and "checksum mismatch" in result.stderr
    assert "the S3 copy too" in result.stderr and "hint:" in result.stderr
    with psycopg.connect(dsn(session)) as conn:
        assert conn.execute("SELECT count(*) FROM patients").fetchone()[0] == before


def test_s3_down_is_a_warning_unless_required(stack):
    loaded, session, _ = stack
    from tests.conftest_s3 import closed_port

    down = {"S3_ENDPOINT": f"http://127.0.0.1:{closed_port()}"}
    result = cli(loaded, "backup", "--json", env=down)
    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    assert doc["storage"] == {"local": "ok", "s3": "failed"} and doc["warnings"]
    assert Path(doc["services"]["postgres"]["local_path"]).exists()
    assert "; hint: " in doc["warnings"][0]  # the same advice as when S3 is required
    result = cli(loaded, "backup", env={**down, "S3_REQUIRED": "true"})
    assert result.returncode == 1 and "S3 copy failed" in result.stderr and "hint:" in result.stderr


def test_failed_dump_leaves_no_file_and_no_metadata(stack, write_spec):
    loaded, session, _ = stack
    broken = write_spec(SPEC.replace("databases: [clinic]", "databases: [no_such_db]"))
    before = sorted(p.name for p in (loaded.file.parent / "backups").rglob("*") if p.is_file())
    result = cli(broken, "backup")
    assert result.returncode == 1 and "hint:" in result.stderr
    after = sorted(p.name for p in (loaded.file.parent / "backups").rglob("*") if p.is_file())
    assert after == before


def test_backups_list_and_prune_dry_run(stack):
    loaded, session, _ = stack
    assert cli(loaded, "backup", "--no-prune").returncode == 0
    rows = json.loads(cli(loaded, "backups", "list", "--json").stdout)
    assert len(rows) == 1 and rows[0]["stores"] == ["local", "s3"]
    result = cli(loaded, "backups", "prune", "--dry-run", "--json")
    assert result.returncode == 0 and all(not r["deleted"] for r in json.loads(result.stdout))


def test_backups_list_piped_shows_whole_ids(stack):
    loaded, session, _ = stack
    assert cli(loaded, "backup", "--no-prune").returncode == 0
    row = json.loads(cli(loaded, "backups", "list", "--json").stdout)[0]
    result = cli(loaded, "backups", "list")  # captured: stdout is a pipe, as under cron
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and "…" not in result.stdout
    assert lines[1].split()[:2] == [row["backup_id"], "postgres"]  # the id is when it was taken
    assert all(len(line) <= 80 for line in lines)


def test_backups_list_warns_when_a_store_cannot_be_read(stack):
    loaded, session, _ = stack
    from tests.conftest_s3 import closed_port

    assert cli(loaded, "backup", "--no-prune").returncode == 0
    backup_id = json.loads(cli(loaded, "backups", "list", "--json").stdout)[0]["backup_id"]
    down = {"S3_ENDPOINT": f"http://127.0.0.1:{closed_port()}"}
    result = cli(loaded, "backups", "list", env=down)
    assert result.returncode == 1
    assert backup_id in result.stdout and "local" in result.stdout
    assert "backups in the s3 store were not listed: cannot reach S3 endpoint" in result.stderr
    assert "hint:" in result.stderr

    result = cli(loaded, "backups", "list", "--json", env=down)
    assert result.returncode == 1
    rows = json.loads(result.stdout)  # stdout keeps its shape: the list of backups
    assert [r["backup_id"] for r in rows] == [backup_id] and rows[0]["stores"] == ["local"]
    report = json.loads(result.stderr)
    assert report["stores"] == {"local": "ok", "s3": "failed"} and len(report["warnings"]) == 1
    assert report["problems"][0]["store"] == "s3"

    result = cli(loaded, "backups", "list", env={"S3_BUCKET": f"missing-{secrets.token_hex(4)}"})
    assert result.returncode == 1
    assert backup_id in result.stdout and "No backups yet" not in result.stdout
    assert "does not exist" in result.stderr


def test_backups_list_with_nothing_readable_does_not_say_no_backups_yet(stack, write_spec):
    loaded, session, _ = stack
    elsewhere = write_spec(SPEC.replace("path: ./backups", "path: ./empty-backups"), name="other.yaml")
    result = cli(elsewhere, "backups", "list", env={"S3_BUCKET": f"missing-{secrets.token_hex(4)}"})
    assert result.returncode == 1
    assert "No backups yet" not in result.stdout and "No backups in the local store." in result.stdout
    assert "warning[storage]" in result.stderr


def test_an_interrupted_s3_copy_is_recorded_as_failed_not_pending(stack, monkeypatch):
    """Ctrl-C during the upload: the local backup is whole and its record says S3 failed."""
    from reconciler.backup import run as backup_run
    from reconciler.storage.s3 import S3Store

    loaded, session, _ = stack

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(S3Store, "put", interrupted)
    with pytest.raises(KeyboardInterrupt) as caught:
        backup_run.backup_services(session, ["postgres"])
    [key] = [o.key for o in session.local.list("metadata/")]
    doc = json.loads(session.local.read_bytes(key))
    assert doc["storage"] == {"local": "ok", "s3": "failed"} and doc["verified"] is True
    assert caught.value.__notes__ == [f"backup {doc['backup_id']} is whole in the local folder; its S3 copy "
                                      "did not finish (recorded as failed)"]
    assert doc["s3_error"] == "interrupted during the S3 copy"


def test_a_critical_table_the_backup_lacks_is_a_warning_at_backup_and_no_reason_to_refuse_its_restore(stack):
    """QA: a typo in critical_tables (or a backup taken before the app made its tables) passed
    backup, backups verify and health, then every restore of that backup was refused, the
    hint pointing at `backups verify`, which found nothing wrong."""
    loaded, session, _ = stack
    loaded.file.write_text(loaded.file.read_text().replace("critical_tables: [patients, visits]",
                                                           "critical_tables: [patients, vists]"))
    taken = cli(loaded, "backup", "--json")
    assert taken.returncode == 1, taken.stderr
    assert any("no table vists of backup.critical_tables" in w for w in json.loads(taken.stdout)["warnings"])
    before = table_digest(session, "patients")
    restored = cli(loaded, "restore", "latest", "postgres", "--yes")
    assert restored.returncode == 0, restored.stderr
    assert table_digest(session, "patients") == before
    checked = cli(loaded, "verify", "--json")  # the live data is still held to the spec's names
    assert checked.returncode == 2 and "critical table vists" in checked.stdout
