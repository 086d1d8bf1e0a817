"""`reconcile backups …` against a misbehaving S3 server (moto behind ``tests/faultproxy.py``).

No engine: backups are written by hand into the local folder and the bucket, as a backup
would leave them; the CLI runs as the operator runs it, pointed at the proxy. What is checked
is the contract with CI: exit codes as the README states them, messages that name the store
and say what to do, and no credential in any output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reconciler.storage.base import data_key, metadata_key
from reconciler.storage.local import LocalStore
from tests.conftest_s3 import TEST_ACCESS_KEY, TEST_SECRET_KEY, S3Endpoint
from tests.faultproxy import Action, FaultProxy, Rule

pytestmark = pytest.mark.s3

SPEC = """\
version: 1
project: qas3-cli
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
    bucket: "${env:S3_BUCKET}"
    region: us-east-1
    prefix: backups/
  retention: { daily: 1, weekly: 0, monthly: 0 }
"""
T0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
DATA_GET = r"/backups/postgres/.*\.sql\.zst$"


@pytest.fixture()
def proxy(s3_endpoint: S3Endpoint) -> Iterator[FaultProxy]:
    with FaultProxy(s3_endpoint.url) as running:
        yield running


@pytest.fixture()
def spec(tmp_path, s3_store) -> Path:
    """Two days of backups of postgres, whole in both stores."""
    path = tmp_path / "reconcile.yaml"
    path.write_text(textwrap.dedent(SPEC))
    local = LocalStore(tmp_path / "backups")
    for day in range(2):
        when = T0 + timedelta(days=day)
        backup_id = when.strftime("%Y-%m-%d-%H%M%S")
        key = data_key("postgres", when, ".sql.zst")
        data = os.urandom(1000)
        for store in (local, s3_store):
            obj = store.write_bytes(key, data)
        doc = {"backup_id": backup_id, "timestamp": when.isoformat(), "project": "qas3-cli", "verified": True,
               "storage": {"local": "ok", "s3": "ok"},
               "services": {"postgres": {"file": Path(key).name, "key": key, "size": len(data),
                                         "checksum": f"sha256:{obj.sha256}"}}}
        for store in (local, s3_store):
            store.write_bytes(metadata_key(backup_id), json.dumps(doc).encode())
    return path


def run(spec: Path, proxy: FaultProxy, bucket: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1", "S3_ENDPOINT": proxy.url, "S3_BUCKET": bucket,
           "S3_ACCESS_KEY_ID": TEST_ACCESS_KEY, "S3_SECRET_ACCESS_KEY": TEST_SECRET_KEY}
    result = subprocess.run([sys.executable, "-m", "reconciler", "-f", str(spec), *args], capture_output=True,
                            text=True, timeout=300, check=False, env=env)
    for secret in (TEST_ACCESS_KEY, TEST_SECRET_KEY):
        assert secret not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_backups_verify_all_good_through_the_proxy(spec, proxy, s3_settings):
    result = run(spec, proxy, s3_settings.bucket, "backups", "verify", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["checked"] == 4


@pytest.mark.parametrize("rule", [
    Rule(Action.ERROR, "GET", DATA_GET, status=403, code="AccessDenied", times=None),
    Rule(Action.RESET_BODY, "GET", DATA_GET, times=None),
], ids=["refused", "reset"])
def test_backups_verify_that_cannot_read_s3_files_is_an_error_not_a_mismatch(spec, proxy, s3_settings, rule):
    """S3 refusing or dropping the downloads says nothing about the backups: exit 1 (a store
    that could not be read, named with a hint), never 2, which tells CI a backup is corrupt."""
    proxy.add(rule)
    result = run(spec, proxy, s3_settings.bucket, "backups", "verify", "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 1, result.stdout
    assert report["problems"] == [] and report["status"] == "incomplete"
    assert [p["store"] for p in report["stores_not_read"]] == ["s3"]
    assert report["stores_not_read"][0]["hint"]
    assert proxy.count("GET", DATA_GET) <= 3  # the first file that fails stops the S3 check


def test_backups_verify_still_calls_a_corrupt_or_missing_s3_file_a_mismatch(spec, proxy, s3_settings, s3_client):
    s3_client.delete_object(Bucket=s3_settings.bucket, Key="backups/postgres/postgres-2026-11-01-020000.sql.zst")
    proxy.add(Rule(Action.CORRUPT, "GET", r"postgres-2026-11-02-020000\.sql\.zst$", times=None))
    result = run(spec, proxy, s3_settings.bucket, "backups", "verify", "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 2, result.stdout
    assert sorted(p["error"].split(" ")[0] for p in report["problems"]) == ["checksum", "postgres/postgres-2026-11-01"
                                                                               "-020000.sql.zst"]


def test_a_metadata_file_corrupted_on_s3_is_skipped_and_named_not_trusted(spec, proxy, s3_settings, s3_client):
    """The provider changed a record's bytes (still valid JSON, the SHA-256 it was written
    with no longer matches): list and prune (and restore, which loads records the same way)
    must not act on what it says."""
    key = "backups/metadata/backup-2026-11-02-020000.json"
    stored = s3_client.get_object(Bucket=s3_settings.bucket, Key=key)
    body = stored["Body"].read().replace(b'"size": 1000', b'"size": 1001')
    s3_client.put_object(Bucket=s3_settings.bucket, Key=key, Body=body, Metadata=stored["Metadata"])
    listed = run(spec, proxy, s3_settings.bucket, "backups", "list", "--json")
    assert "metadata/backup-2026-11-02-020000.json" in listed.stdout + listed.stderr, listed.stdout
    assert "SHA-256 mismatch" in listed.stdout + listed.stderr
    pruned = run(spec, proxy, s3_settings.bucket, "backups", "prune", "--dry-run", "--json")
    assert pruned.returncode == 1, pruned.stdout + pruned.stderr
    s3 = json.loads(pruned.stdout)[1]
    assert s3["error"] is None and [u["key"] for u in s3["unreadable"]] == ["metadata/backup-2026-11-02-020000.json"]
    assert s3["deleted"] == []  # the backup 11-01 is the newest readable one there: kept
