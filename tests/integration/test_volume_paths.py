"""A generic service's volume moved to another path in the spec (``data:/srv/data`` →
``data:/srv/data2``): apply backs the old container up from where IT mounts the volume and
carries the data over; a backup of the old path is refused before anything is stopped."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.integration.conftest import materialise

pytestmark = pytest.mark.engine

SPEC = """\
version: 1
project: {project}
state_dir: ./state
volumes: { data: {} }
services:
  files:
    kind: generic
    image: reconcile-lab/nginx:latest
    volumes: ["data:/srv/data"]
    stateful: true
backup:
  local: { path: ./backups }
"""


def cli(spec, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reconciler", "-f", str(spec), *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "NO_COLOR": "1"})


def sh(client, container: str, script: str) -> str:
    return client.api.exec_start(client.api.exec_create(container, ["sh", "-c", script])["Id"]).decode().strip()


def test_a_moved_mount_is_backed_up_from_where_the_container_has_it(client, write_spec, project):
    loaded = write_spec(SPEC)
    old = materialise(client, loaded)["files"]
    sh(client, old, "echo kept > /srv/data/note")
    first = json.loads(cli(loaded.file, "backup", "--json").stdout)["backup_id"]

    loaded.file.write_text(loaded.file.read_text().replace("data:/srv/data", "data:/srv/data2"))
    applied = cli(loaded.file, "apply", "--auto-approve")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    new = client.api.inspect_container(f"{project}-files")
    assert new["Id"] != old and sh(client, new["Id"], "cat /srv/data2/note") == "kept"

    refused = cli(loaded.file, "restore", first, "files", "--yes")
    assert refused.returncode == 1, refused.stderr
    assert "the backup holds /srv/data, which files's container does not mount (it mounts /srv/data2)" \
        in refused.stderr
    assert client.api.inspect_container(new["Id"])["State"]["Running"]  # never stopped
    assert cli(loaded.file, "health").returncode == 0  # and not called restore-interrupted
