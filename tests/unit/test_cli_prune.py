"""`backups prune` and the retention after `backup` when one store fails: each store is
pruned on its own, what the local store did is always reported, and the failed store is
a per-store warning (stderr with a hint, or an "error" in its JSON entry), exit 1.

No engine and no S3 server: backups are written into the local folder by hand and the S3
endpoint is a closed loopback port."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from reconciler.spec.load import load_spec
from reconciler.storage.base import data_key, metadata_key
from reconciler.storage.local import LocalStore
from tests.conftest_s3 import FAST_RETRY, TEST_ACCESS_KEY, TEST_SECRET_KEY, closed_port

SPEC = """\
version: 1
project: cli-prune
services:
  postgres:
    kind: postgres
    image: reconcile-lab/postgres:15
    stateful: true
backup:
  local: { path: ./backups }
  s3:
    enabled: true
    endpoint: "${env:S3_ENDPOINT}"
    bucket: prune-test
  retention: { daily: 1, weekly: 0, monthly: 0 }
"""
T0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
DAYS = 3  # one kept (daily: 1), two pruned: 2 data files and 2 metadata files


@pytest.fixture()
def spec(tmp_path):
    path = tmp_path / "reconcile.yaml"
    path.write_text(textwrap.dedent(SPEC))
    store = LocalStore(tmp_path / "backups")
    for day in range(DAYS):
        when = T0 + timedelta(days=day)
        backup_id = when.strftime("%Y-%m-%d-%H%M%S")
        key = data_key("postgres", when, ".sql.zst")
        obj = store.write_bytes(key, f"dump {day}".encode())
        doc = {"backup_id": backup_id, "timestamp": when.isoformat(), "services": {
            "postgres": {"file": Path(key).name, "checksum": f"sha256:{obj.sha256}"}}}
        store.write_bytes(metadata_key(backup_id), json.dumps(doc).encode())
    return path


def s3_down() -> dict[str, str]:
    return {"S3_ENDPOINT": f"http://127.0.0.1:{closed_port()}", "S3_ACCESS_KEY_ID": TEST_ACCESS_KEY,
            "S3_SECRET_ACCESS_KEY": TEST_SECRET_KEY}


def run(spec: Path, *args: str, env: dict | None = None):
    return subprocess.run([sys.executable, "-m", "reconciler", "-f", str(spec), *args],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "NO_COLOR": "1", **(env or {})})


def local_files(spec: Path) -> list[str]:
    return sorted(o.key for o in LocalStore(spec.parent / "backups").list())


def test_json_reports_local_deletions_and_the_s3_error_in_its_own_entry(spec):
    result = run(spec, "backups", "prune", "--json", env=s3_down())
    assert result.returncode == 1, result.stderr
    local, s3 = json.loads(result.stdout)
    assert local["name"] == "local" and local["error"] is None
    assert len(local["deleted"]) == 2 and len(local["deleted_metadata"]) == 2
    assert len(local_files(spec)) == 2  # what the report says was deleted, was
    assert s3["name"] == "s3" and s3["deleted"] == []
    assert s3["error"]["error"] == "storage"
    assert "cannot reach S3 endpoint" in s3["error"]["message"] and s3["error"]["hint"]


def test_dry_run_shows_the_local_plan_and_warns_about_s3_on_stderr(spec):
    before = local_files(spec)
    result = run(spec, "backups", "prune", "--dry-run", env=s3_down())
    assert result.returncode == 1
    assert "would delete 2 files, kept 1." in result.stdout
    assert "postgres/postgres-2026-11-01-020000.sql.zst" in result.stdout
    assert "pruning the s3 store failed: cannot reach S3 endpoint" in result.stderr
    assert "hint:" in result.stderr
    assert local_files(spec) == before


def test_retention_after_a_backup_returns_the_local_report_and_warns_about_s3(spec):
    from reconciler.cli.data import _prune_after_backup
    from reconciler.session import Session
    from reconciler.storage.s3 import S3Store

    env = s3_down()
    session = Session(load_spec(spec, {**os.environ, **env}), environ={**os.environ, **env})
    session.s3 = S3Store.from_env(session.spec.backup.s3, env, retry=FAST_RETRY)
    run_ = SimpleNamespace(s3_status="ok", warnings=[])
    pruned = _prune_after_backup(session, run_)
    assert [r["name"] for r in pruned] == ["local", "s3"]
    assert len(pruned[0]["deleted"]) == 2 and pruned[0]["error"] is None
    assert len(local_files(spec)) == 2
    assert len(run_.warnings) == 1
    assert run_.warnings[0].startswith("retention was not applied to s3")
    assert "cannot reach S3 endpoint" in run_.warnings[0]


def test_prune_names_metadata_it_cannot_read_and_leaves_it(spec):
    bad = spec.parent / "backups" / "metadata" / "backup-hand-edited.json"
    bad.write_bytes(b'{"backup_id": "x", "timest')
    result = run(spec, "backups", "prune", "--json", env=s3_down())
    local = json.loads(result.stdout)[0]
    assert [u["key"] for u in local["unreadable"]] == ["metadata/backup-hand-edited.json"]
    assert len(local["deleted"]) == 2 and bad.exists()
    result = run(spec, "backups", "prune", env=s3_down())
    assert "metadata/backup-hand-edited.json in the local store is skipped" in result.stderr


def test_metadata_it_cannot_read_makes_prune_exit_1_and_warns_after_a_backup(spec):
    """Cron runs prune (and the retention after a nightly backup) unattended: a record that
    cannot be read keeps its backup's files forever, so it must not pass as a clean run."""
    from reconciler.cli.data import _prune_after_backup
    from reconciler.session import Session

    spec.write_text(SPEC.split("  s3:")[0] + "  retention: { daily: 1, weekly: 0, monthly: 0 }\n")
    bad = spec.parent / "backups" / "metadata" / "backup-hand-edited.json"
    bad.write_bytes(b"[]")
    result = run(spec, "backups", "prune", "--dry-run")
    assert result.returncode == 1, result.stderr
    assert "backup-hand-edited.json in the local store is skipped" in result.stderr
    session = Session(load_spec(spec, dict(os.environ)), environ=dict(os.environ))
    run_ = SimpleNamespace(s3_status="ok", warnings=[])
    _prune_after_backup(session, run_)
    assert [w.split(" (")[0] for w in run_.warnings] == ["metadata/backup-hand-edited.json in the local store cannot be read"]
    assert "never pruned" in run_.warnings[0]
