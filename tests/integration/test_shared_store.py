"""Two projects pointed at one backup folder and one S3 prefix (keys name no project): neither
restores, lists or prunes the other's backups, and the S3 copy into a prefix another project
uses is refused, where their files would overwrite each other's."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys

import pytest

from reconciler.session import Session
from reconciler.spec.load import load_spec
from tests.conftest_s3 import empty_and_remove_bucket, raw_client
from tests.integration.conftest import materialise, purge

pytestmark = [pytest.mark.engine, pytest.mark.s3]

SPEC = """\
version: 1
project: {project}
state_dir: ./state-{project}
volumes: { data: {} }
services:
  files:
    kind: generic
    image: reconcile-lab/nginx:latest
    volumes: ["data:/srv/data"]
    stateful: true
backup:
  local: { path: ./shared-backups }
  s3: { enabled: true, endpoint: "${env:S3_ENDPOINT}", bucket: "${env:S3_BUCKET}", region: us-east-1 }
"""


def run(spec, env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reconciler", "-f", str(spec), *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **env, "NO_COLOR": "1"})


def write(client, container: str, text: str) -> None:
    exec_id = client.api.exec_create(container, ["sh", "-c", f"echo {text} > /srv/data/who"])["Id"]
    client.api.exec_start(exec_id)


def read(client, container: str) -> str:
    return client.api.exec_start(client.api.exec_create(container, ["cat", "/srv/data/who"])["Id"]).decode().strip()


@pytest.fixture()
def two_projects(client, tmp_path, s3_endpoint):
    bucket = f"shared-{secrets.token_hex(4)}"
    env = {"S3_ENDPOINT": s3_endpoint.url, "S3_BUCKET": bucket, **s3_endpoint.environ}
    names = [f"it-{secrets.token_hex(3)}", f"it-{secrets.token_hex(3)}"]
    made = []
    try:
        for name in names:
            spec = tmp_path / f"{name}.yaml"
            spec.write_text(SPEC.replace("{project}", name))
            loaded = load_spec(spec, {**os.environ, **env})
            container = materialise(client, loaded)["files"]
            write(client, container, name)
            made.append((spec, container))
        Session(loaded, environ={**os.environ, **env}).s3.ensure_bucket()
        yield env, names, made
    finally:
        for name in names:
            purge(client, name)
        empty_and_remove_bucket(raw_client(s3_endpoint), bucket)


def test_projects_sharing_a_folder_and_prefix_never_take_each_other_s_backups(client, two_projects):
    env, (first, second), [(spec_a, box_a), (spec_b, box_b)] = two_projects
    backup = run(spec_a, env, "backup", "--json")
    assert backup.returncode == 0, backup.stderr
    assert json.loads(backup.stdout)["storage"] == {"local": "ok", "s3": "ok"}

    backup = run(spec_b, env, "backup", "--json")  # the newest backup in the shared folder
    assert backup.returncode == 1, backup.stderr
    doc = json.loads(backup.stdout)
    assert doc["storage"] == {"local": "ok", "s3": "failed"}  # not copied over the other's keys
    assert f"holds backups of project {first}" in doc["s3_error"]

    listed = run(spec_a, env, "backups", "list", "--json")
    assert listed.returncode == 1  # with a warning: the folder is shared
    rows = json.loads(listed.stdout)
    assert len(rows) == 1 and rows[0]["backup_id"] != doc["backup_id"]
    assert f"of project {second}" in listed.stderr and "backup.s3.prefix" in listed.stderr

    write(client, box_a, "changed")
    restored = run(spec_a, env, "restore", "latest", "files", "--yes")
    assert restored.returncode == 0, restored.stderr
    assert read(client, box_a) == first  # its own backup, not the newer one of the other project

    other_id = doc["backup_id"]
    refused = run(spec_a, env, "restore", other_id, "files", "--yes")
    assert refused.returncode == 1 and f"is one of project {second}" in refused.stderr, refused.stderr

    pruned = run(spec_b, env, "backups", "prune", "--json")
    assert all(store["deleted"] == [] for store in json.loads(pruned.stdout))
    assert {first: 1} in [store["others"] for store in json.loads(pruned.stdout)]
    again = run(spec_a, env, "restore", "latest", "files", "--source", "s3", "--yes")
    assert again.returncode == 0, again.stderr
    assert read(client, box_a) == first
