"""`reconcile backup` killed outright (SIGKILL) during its S3 copy, for real: the copy goes
through ``tests/faultproxy.py`` in front of moto, which stalls the upload of the dump, so the
backup is deterministically mid-copy when it is killed.

The contract checked: while the copy runs, `backups verify` / `list` do not call it
interrupted (its claim is held); once the process is gone they do (verify exit 2, list exit 1,
with the hint); the next backup copies it, after which S3 holds its files and metadata with
the same checksums and verify passes.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
import time
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
from tests.integration.conftest import materialise

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
"""


@pytest.fixture()
def proxy(s3_endpoint: S3Endpoint) -> Iterator[FaultProxy]:
    with FaultProxy(s3_endpoint.url) as running:
        yield running


@pytest.fixture()
def stack(client, write_spec, s3_endpoint, proxy, monkeypatch):
    bucket = f"s3int-{secrets.token_hex(4)}"
    for key, value in {"S3_ENDPOINT": proxy.url, "S3_BUCKET": bucket, **s3_endpoint.environ}.items():
        monkeypatch.setenv(key, value)
    loaded = write_spec(SPEC)
    session = Session(loaded, environ=dict(os.environ))
    session.s3.ensure_bucket()
    try:
        ids = materialise(client, loaded)
        assert wait_healthy(session, "cache", f"{loaded.spec.project}-cache", timeout=60).level is Level.HEALTHY
        conn = redis.Redis(host=container_ip(dockerio.inspect_container(client, ids["cache"])), port=6379)
        conn.mset({f"key:{n}": os.urandom(64) for n in range(200)})
        proxy.clear()
        yield loaded, bucket
    finally:
        empty_and_remove_bucket(raw_client(s3_endpoint), bucket)


def command(loaded, *args: str) -> list[str]:
    return [sys.executable, "-m", "reconciler", "-f", str(loaded.file), *args]


def cli(loaded, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(command(loaded, *args), capture_output=True, text=True, timeout=120, check=False,
                            env={**os.environ, "NO_COLOR": "1"})
    assert "Traceback" not in result.stderr, result.stderr
    for secret in (TEST_ACCESS_KEY, TEST_SECRET_KEY):
        assert secret not in result.stdout + result.stderr
    return result


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def local_records(loaded) -> list[dict]:
    folder = Path(loaded.file).parent / "backups" / "metadata"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("backup-*.json"))]


def test_a_backup_killed_during_its_s3_copy_is_reported_then_copied_by_the_next(stack, proxy, s3_endpoint):
    loaded, bucket = stack
    proxy.add(Rule(Action.STALL_UPLOAD, "PUT", r"/cache/cache-", seconds=60))
    first = subprocess.Popen(command(loaded, "backup", "--no-prune"), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env={**os.environ, "NO_COLOR": "1"})
    try:
        wait_for(lambda: proxy.count("PUT", r"/cache/cache-") >= 1 or first.poll() is not None)
        assert first.poll() is None, "the backup ended before its S3 copy stalled"
        [record] = local_records(loaded)
        assert record["storage"] == {"local": "ok", "s3": "pending"}

        checking = cli(loaded, "backups", "verify", "--json")  # the copy runs: not interrupted
        assert checking.returncode == 0, checking.stdout + checking.stderr
        assert json.loads(checking.stdout)["problems"] == []
        listing = cli(loaded, "backups", "list", "--json")
        assert listing.returncode == 0, listing.stderr
        assert [row["s3_copy"] for row in json.loads(listing.stdout)] == ["pending"]
    finally:
        first.kill()  # SIGKILL: nothing of it runs after this
        first.wait()
    backup_id, entry = record["backup_id"], record["services"]["cache"]
    said = f"the S3 copy of backup {backup_id} was interrupted (its backup process is gone): only the local copy exists"

    checking = cli(loaded, "backups", "verify", "--json")
    assert checking.returncode == 2, checking.stdout + checking.stderr
    found = json.loads(checking.stdout)
    assert found["status"] == "failed"
    assert [(p["backup_id"], p["error"]) for p in found["problems"]] == [(backup_id, said)]
    assert "reconcile backup" in found["problems"][0]["hint"]
    text = cli(loaded, "backups", "verify")
    assert text.returncode == 2 and said in text.stdout and "hint: the next `reconcile backup`" in text.stdout
    listing = cli(loaded, "backups", "list")
    assert listing.returncode == 1 and said in listing.stderr and "S3 copy interrupted" in listing.stdout

    proxy.clear()
    second = cli(loaded, "backup", "--no-prune", "--json")
    assert second.returncode == 0, second.stdout + second.stderr
    done = json.loads(second.stdout)
    assert done["storage"] == {"local": "ok", "s3": "ok"} and done["resumed"] == [backup_id]

    s3 = raw_client(s3_endpoint)
    on_s3 = json.loads(s3.get_object(Bucket=bucket, Key=f"backups/metadata/backup-{backup_id}.json")["Body"].read())
    assert on_s3["storage"]["s3"] == "ok" and on_s3["services"]["cache"]["checksum"] == entry["checksum"]
    data = s3.get_object(Bucket=bucket, Key=f"backups/{entry['key']}")["Body"].read()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == entry["checksum"]
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert [r["storage"] for r in local_records(loaded)] == [{"local": "ok", "s3": "ok"}] * 2
    assert not list((Path(loaded.file).parent / "backups" / "metadata").glob(".*reserved"))

    checking = cli(loaded, "backups", "verify", "--json")
    assert checking.returncode == 0, checking.stdout + checking.stderr
    assert json.loads(checking.stdout)["problems"] == []
