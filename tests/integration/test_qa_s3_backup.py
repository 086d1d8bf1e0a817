"""`reconcile backup` / `restore` of a real cache whose S3 copy goes through a misbehaving
server (moto behind ``tests/faultproxy.py``). The cache holds 6 MB of random bytes, so its
dump (more than the 5 MiB part size) is uploaded in parts: faults hit a multipart upload.

The contract checked: the local copy is primary and whole whatever S3 does; a transient
fault is retried and the copy succeeds; a refusal is a warning (exit 1) that names the store,
or with ``required`` an error (exit 1); no unfinished upload is left in the bucket; a restore
from S3 survives a download cut off once; no credential appears anywhere.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from reconciler import dockerio
from reconciler.engines import container_ip
from reconciler.health import Level, wait_healthy
from reconciler.session import Session
from tests.conftest_s3 import TEST_ACCESS_KEY, TEST_SECRET_KEY, S3Endpoint, empty_and_remove_bucket, raw_client
from tests.faultproxy import Action, FaultProxy, Rule
from tests.integration.conftest import materialise, purge

pytestmark = [pytest.mark.engine, pytest.mark.s3]

SPEC = """\
version: 1
project: {project}
state_dir: ./state
services:
  cache:
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
    part_size_mb: 5
    required: "${env:S3_REQUIRED:-false}"
"""
BIG = os.urandom(6 * 1024 * 1024)


@pytest.fixture()
def project(client) -> Iterator[str]:
    name = f"qas3-{secrets.token_hex(3)}"
    yield name
    purge(client, name)


@pytest.fixture()
def proxy(s3_endpoint: S3Endpoint) -> Iterator[FaultProxy]:
    with FaultProxy(s3_endpoint.url) as running:
        yield running


@pytest.fixture()
def stack(client, write_spec, s3_endpoint, proxy, monkeypatch):
    bucket = f"qas3-{secrets.token_hex(4)}"
    env = {"S3_ENDPOINT": proxy.url, "S3_BUCKET": bucket, **s3_endpoint.environ}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    loaded = write_spec(SPEC)
    session = Session(loaded, environ=dict(os.environ))
    session.s3.ensure_bucket()
    ids = materialise(client, loaded)
    assert wait_healthy(session, "cache", f"{loaded.spec.project}-cache", timeout=60).level is Level.HEALTHY
    conn = redis.Redis(host=container_ip(dockerio.inspect_container(client, ids["cache"])), port=6379)
    conn.set(b"big", BIG)
    conn.set(b"small", b"value", ex=3600)
    proxy.clear()
    yield loaded, conn, bucket
    empty_and_remove_bucket(raw_client(s3_endpoint), bucket)


def cli(loaded, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "reconciler", "-f", str(loaded.file), *args],
                            capture_output=True, text=True, timeout=600, check=False,
                            env={**os.environ, "NO_COLOR": "1", **(env or {})})
    assert "Traceback" not in result.stderr, result.stderr
    folder = Path(loaded.file).parent
    for secret in (TEST_ACCESS_KEY, TEST_SECRET_KEY):
        assert secret not in result.stdout + result.stderr
        for path in folder.rglob("*"):
            assert not path.is_file() or secret.encode() not in path.read_bytes(), path
    return result


def unfinished_uploads(s3_endpoint: S3Endpoint, bucket: str) -> list:
    return raw_client(s3_endpoint).list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def test_a_multipart_copy_survives_a_part_refused_once_and_a_part_reset(stack, proxy, s3_endpoint):
    loaded, _, bucket = stack
    proxy.add(Rule(Action.ERROR, "PUT", r"partNumber=1", status=503, code="SlowDown"),
              Rule(Action.RESET_UPLOAD, "PUT", r"partNumber=2"))
    result = cli(loaded, "backup", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    doc = json.loads(result.stdout)
    assert doc["storage"] == {"local": "ok", "s3": "ok"}
    entry = doc["services"]["cache"]
    head = raw_client(s3_endpoint).head_object(Bucket=bucket, Key=f"backups/{entry['key']}")
    assert head["ContentLength"] == entry["size"] > 5 * 1024 * 1024
    assert head["ETag"].strip('"').endswith("-2")  # it was a multipart upload
    assert unfinished_uploads(s3_endpoint, bucket) == []


@pytest.mark.parametrize("required", ["false", "true"])
def test_a_multipart_copy_refused_for_good_leaves_the_local_backup_and_no_upload(stack, proxy, s3_endpoint,
                                                                                required):
    loaded, _, bucket = stack
    proxy.add(Rule(Action.ERROR, "PUT", r"partNumber=2", status=403, code="AccessDenied", times=None))
    result = cli(loaded, "backup", env={"S3_REQUIRED": required})
    assert result.returncode == 1
    assert "S3 refused to upload cache/" in result.stdout + result.stderr
    assert f"in bucket {bucket}" in result.stdout + result.stderr
    assert "check S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY" in result.stdout + result.stderr
    if required == "true":
        assert "error[backup.s3-required]" in result.stderr
    else:
        assert "warning: S3 copy failed" in result.stdout + result.stderr
    assert proxy.count("PUT", r"partNumber=2") == 1  # a refusal is not retried
    assert unfinished_uploads(s3_endpoint, bucket) == []
    folder = Path(loaded.file).parent / "backups"
    [record] = [json.loads(p.read_text()) for p in (folder / "metadata").glob("backup-*.json")]
    assert record["storage"] == {"local": "ok", "s3": "failed"}
    assert (folder / record["services"]["cache"]["key"]).stat().st_size == record["services"]["cache"]["size"]


def test_restore_from_s3_with_the_local_copy_gone_survives_a_download_cut_off_once(stack, proxy):
    loaded, conn, _ = stack
    assert cli(loaded, "backup").returncode == 0
    folder = Path(loaded.file).parent / "backups"
    for dump in (folder / "cache").iterdir():
        dump.unlink()
    conn.flushall()
    proxy.add(Rule(Action.RESET_BODY, "GET", r"/cache/cache-.*\.zst$"))
    result = cli(loaded, "restore", "latest", "--yes", "--source", "auto", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["cache"]["source"] == "s3"
    assert conn.get(b"big") == BIG and conn.get(b"small") == b"value"
    assert proxy.count("GET", r"/cache/cache-.*\.zst$") == 2
