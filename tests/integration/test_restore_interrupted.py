"""A restore that replaces a volume in place and stops halfway leaves partial data that the
container does not show: health, diagnose and heal must say so (and heal must not start the
service on it) until a restore of it succeeds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

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
# The restore is cut off right after it recorded itself, where a kill -9 in the middle of the
# wipe or the unpack would leave it: the record of a process that is gone.
KILLED_IN_THE_MIDDLE = """
import os, sys
from reconciler.engines import volume
volume.VolumeEngine.restore = lambda *args, **kwargs: os._exit(9)
from reconciler.cli.launch import main
sys.argv[0] = "reconcile"
main()
"""


def cli(loaded, *args: str, script: str | None = None) -> subprocess.CompletedProcess:
    head = ["-c", script] if script else ["-m", "reconciler"]
    return subprocess.run([sys.executable, *head, "-f", str(loaded.file), *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "NO_COLOR": "1"})


def healthy_soon(loaded, seconds: float = 60.0) -> bool:
    """``health`` exits 0 within ``seconds`` (a started container's healthcheck first says starting)."""
    deadline = time.monotonic() + seconds
    while cli(loaded, "health").returncode != 0:
        if time.monotonic() > deadline:
            return False
        time.sleep(1)
    return True


def test_an_interrupted_restore_is_reported_until_a_restore_succeeds(client, write_spec):
    loaded = write_spec(SPEC)
    container = materialise(client, loaded)["files"]
    backup = cli(loaded, "backup", "--json")
    assert backup.returncode == 0, backup.stderr
    backup_id = json.loads(backup.stdout)["backup_id"]

    killed = cli(loaded, "restore", backup_id, "files", "--yes", script=KILLED_IN_THE_MIDDLE)
    assert killed.returncode == 9
    client.api.stop(container, timeout=1)  # as the volume restore leaves it, mid-way

    health = cli(loaded, "health", "--json")
    assert health.returncode == 2
    assert json.loads(health.stdout)["services"]["files"]["status"] == "restore-interrupted"
    diagnosis = cli(loaded, "diagnose", "--json")
    assert diagnosis.returncode == 2
    [issue] = [i for i in json.loads(diagnosis.stdout)["issues"] if i["service"] == "files"
               and i["severity"] == "critical" and "restore" in i["issue"]]
    assert f"reconcile restore {backup_id} files --yes" in issue["suggested_fix"]
    heal = cli(loaded, "heal")
    assert heal.returncode == 2, heal.stdout + heal.stderr
    applied = cli(loaded, "apply", "--auto-approve")  # its plan starts the stopped container
    assert applied.returncode == 1 and f"reconcile restore {backup_id} files --yes" in applied.stdout, \
        applied.stdout + applied.stderr
    assert not client.api.inspect_container(container)["State"]["Running"]  # never started on it

    again = cli(loaded, "restore", backup_id, "files", "--yes")
    assert again.returncode == 0, again.stderr
    assert not list((loaded.file.parent / "state" / "restoring").iterdir())
    # it ran before the first attempt: whole again, it runs again
    assert client.api.inspect_container(container)["State"]["Running"]
    assert healthy_soon(loaded)


def test_a_failed_volume_restore_leaves_the_service_stopped_until_one_succeeds(client, write_spec):
    """A restore whose archive breaks off (tar fails after the wipe) must not start the service
    on the partial folders; the restore that then succeeds starts it, as it ran before."""
    import hashlib

    import zstandard

    loaded = write_spec(SPEC)
    container = materialise(client, loaded)["files"]
    filled = client.api.exec_create(container, ["sh", "-c", "head -c 2000000 /dev/urandom > /srv/data/blob"
                                                             " && echo kept > /srv/data/note"])["Id"]
    client.api.exec_start(filled)
    backup = cli(loaded, "backup", "--json")
    assert backup.returncode == 0, backup.stderr
    doc = json.loads(backup.stdout)
    entry = doc["services"]["files"]
    meta = loaded.file.parent / "backups" / "metadata" / f"backup-{doc['backup_id']}.json"
    path, whole_meta = Path(entry["local_path"]), meta.read_bytes()
    whole = path.read_bytes()
    # an archive cut off inside the blob, with metadata that vouches for it (as a backup written
    # by a tar that failed unnoticed would): the restore wipes the folder, then tar fails
    cut = zstandard.ZstdCompressor().compress(zstandard.ZstdDecompressor().decompressobj().decompress(whole)[:600_000])
    path.write_bytes(cut)
    damaged = json.loads(whole_meta)
    damaged["services"]["files"].update(size=len(cut), checksum="sha256:" + hashlib.sha256(cut).hexdigest())
    meta.write_text(json.dumps(damaged))

    failed = cli(loaded, "restore", doc["backup_id"], "files", "--yes")
    assert failed.returncode == 1 and "left stopped" in failed.stderr, failed.stdout + failed.stderr
    assert not client.api.inspect_container(container)["State"]["Running"]
    assert json.loads(cli(loaded, "health", "--json").stdout)["services"]["files"]["status"] == \
        "restore-interrupted"

    path.write_bytes(whole)
    meta.write_bytes(whole_meta)
    again = cli(loaded, "restore", doc["backup_id"], "files", "--yes")
    assert again.returncode == 0, again.stderr
    assert client.api.inspect_container(container)["State"]["Running"]
    shown = client.api.exec_create(container, ["cat", "/srv/data/note"])["Id"]
    assert client.api.exec_start(shown) == b"kept\n"
