"""QA of what the README promises, run for real: apply's exit 2 means "the failed step rolled back";
`restore ID --source local|s3` says where the backup is when the chosen store lacks it."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys

import pytest

from tests.conftest_s3 import empty_and_remove_bucket, raw_client
from tests.integration.conftest import purge

pytestmark = pytest.mark.engine

SPEC = """\
version: 1
project: {project}
state_dir: ./state
services:
  web:
    image: reconcile-lab/app:1
    command: ["python3", "/app/no-such-server.py"]
"""


@pytest.fixture()
def qa_project(client):
    name = f"qadocs-{secrets.token_hex(3)}"
    yield name
    purge(client, name)


def cli(spec, *args: str, environ: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reconciler", "-f", str(spec), *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "NO_COLOR": "1", **(environ or {})})


def test_a_new_service_that_never_turns_healthy_is_removed_and_planned_again(client, qa_project, tmp_path):
    """A new container in a restart loop was left running: the next plan said "No changes" and
    the error's "only the failed step is undone" was untrue. Exit 2 undoes the create."""
    spec = tmp_path / "reconcile.yaml"
    spec.write_text(SPEC.format(project=qa_project))
    result = cli(spec, "apply", "--auto-approve", "--json")
    assert result.returncode == 2, result.stdout + result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    steps = [e["message"] for e in events if e["event"] == "step"]
    assert any(step.startswith(f"rollback: remove {qa_project}-web") for step in steps), steps
    assert client.api.containers(all=True, filters={"name": f"^/{qa_project}-web$"}) == []
    again = cli(spec, "plan", "--detailed-exitcode")
    assert again.returncode == 2 and "+ create  web" in again.stdout, again.stdout + again.stderr


CACHE_SPEC = """\
version: 1
project: {project}
state_dir: ./state
services:
  cache:
    kind: redis
    image: reconcile-lab/redis:7
    stateful: true
backup:
  local: {{ path: ./backups }}
  s3: {{ enabled: true, endpoint: "{endpoint}", bucket: "{bucket}", region: us-east-1 }}
"""


@pytest.mark.s3
def test_a_backup_only_on_s3_restored_with_source_local_is_named_as_on_s3(qa_project, tmp_path, s3_endpoint):
    """`--source local` of an id whose local copy is gone said "no backup with id X" (and "did
    you mean" another): untrue, `backups list` shows it on S3. The symmetric case already said so."""
    bucket = f"qadocs-{secrets.token_hex(4)}"
    raw_client(s3_endpoint).create_bucket(Bucket=bucket)
    spec = tmp_path / "reconcile.yaml"
    spec.write_text(CACHE_SPEC.format(project=qa_project, endpoint=s3_endpoint.url, bucket=bucket))
    env = s3_endpoint.environ
    try:
        assert (made := cli(spec, "apply", "--auto-approve", environ=env)).returncode == 0, made.stderr
        backup = cli(spec, "backup", "--json", environ=env)
        assert backup.returncode == 0, backup.stdout + backup.stderr
        backup_id = json.loads(backup.stdout)["backup_id"]
        shutil.rmtree(tmp_path / "backups")
        result = cli(spec, "restore", backup_id, "--source", "local", "--yes", environ=env)
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"backup {backup_id} is not in the local folder: its metadata is on S3 only" in result.stderr, \
            result.stderr
        assert "--source s3" in result.stderr, result.stderr
    finally:
        empty_and_remove_bucket(raw_client(s3_endpoint), bucket)
