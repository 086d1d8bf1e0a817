"""`reconcile drift --metrics-file` and `reconcile status` against the real engine: per-profile
files without a common series, no drift claimed while the lock is held, an unreachable engine
written down, and the image a container really runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from reconciler.apply.lock import LOCK_DIR_ENV, ApplyLock
from tests.integration.conftest import materialise
from tests.unit.test_metrics_runs import samples, series, values

pytestmark = pytest.mark.engine

SPEC = """\
version: 1
project: {project}
networks:
  backend: {}
services:
  cache:
    profile: infrastructure
    kind: redis
    image: reconcile-lab/redis:7
    networks: [backend]
  worker:
    profile: app
    image: "reconcile-lab/app:${env:FX_APP_VERSION:-1}"
    command: ["python3", "/app/worker.py"]
    env: { WORKER_INTERVAL: "5" }
    networks: [backend]
"""


@pytest.fixture()
def env(tmp_path):
    return {**os.environ, "NO_COLOR": "1", LOCK_DIR_ENV: str(tmp_path / "host-locks")}


def run(loaded, env, *args) -> subprocess.CompletedProcess:
    found = subprocess.run([sys.executable, "-m", "reconciler", "-f", str(loaded.file), *args],
                           capture_output=True, text=True, timeout=120, env=env)
    assert "Traceback" not in found.stderr, found.stderr
    return found


def backed_up(loaded, project: str) -> None:
    """A backup of both services in the local store (its metadata is what the series read)."""
    folder = loaded.file.parent / "backups" / "metadata"
    folder.mkdir(parents=True)
    doc = {"backup_id": "2026-01-05-020000", "timestamp": "2026-01-05T02:00:00Z", "project": project,
           "storage": {"local": "ok", "s3": "disabled"},
           "services": {name: {"file": f"{name}.zst", "size": 10, "checksum": "sha256:" + "0" * 64}
                        for name in ("cache", "worker")}}
    (folder / "backup-2026-01-05-020000.json").write_text(json.dumps(doc))


def test_one_file_per_profile_in_one_folder_repeats_no_series(client, write_spec, project, env):
    loaded = write_spec(SPEC)
    materialise(client, loaded)
    backed_up(loaded, project)
    folder = loaded.file.parent / "textfile"
    for profile in ("infrastructure", "app"):
        found = run(loaded, env, "drift", "--profile", profile, "--metrics-file", str(folder / f"{profile}.prom"))
        assert found.returncode == 0, found.stdout + found.stderr
    infra, app = ((folder / f"{p}.prom").read_text() for p in ("infrastructure", "app"))
    assert [s for s, n in Counter(series(infra) + series(app)).items() if n > 1] == []
    assert {dict(labels).get("service") for _, labels in series(infra)} == {None, "cache"}
    assert {dict(labels).get("service") for _, labels in series(app)} == {None, "worker"}
    assert values(app, "reconcile_engine_up") == {frozenset({("project", project), ("profile", "app")}): "1"}


def test_while_the_lock_is_held_drift_is_not_written_and_the_gauge_is_1(client, write_spec, env):
    loaded = write_spec(SPEC)
    ids = materialise(client, loaded)
    client.api.stop(ids["worker"], timeout=2)  # drift, once judged
    metrics = loaded.file.parent / "reconcile.prom"
    with ApplyLock(loaded.state_dir(), "20260105T040000Z-abcdef"):
        found = run(loaded, env, "drift", "--metrics-file", str(metrics))
    assert found.returncode == 0 and "Not judged" in found.stdout, found.stdout + found.stderr
    text = metrics.read_text()
    assert "reconcile_drift" not in text
    assert f'reconcile_apply_running{{project="{loaded.spec.project}"}} 1\n' in text
    assert f'reconcile_service_health{{project="{loaded.spec.project}",service="worker"}} 2\n' in text
    found = run(loaded, env, "drift", "--metrics-file", str(metrics))
    assert found.returncode == 2
    text = metrics.read_text()
    assert f'reconcile_drift{{project="{loaded.spec.project}",service="worker"}} 1\n' in text
    assert f'reconcile_apply_running{{project="{loaded.spec.project}"}} 0\n' in text


def test_an_unreachable_engine_replaces_the_healthy_file_with_engine_up_0(client, write_spec, env, tmp_path):
    loaded = write_spec(SPEC)
    materialise(client, loaded)
    backed_up(loaded, loaded.spec.project)
    metrics = loaded.file.parent / "reconcile.prom"
    assert run(loaded, env, "drift", "--metrics-file", str(metrics)).returncode == 0
    assert "reconcile_service_health" in metrics.read_text()
    socket = f"unix://{tmp_path}/none.sock"
    found = run(loaded, {**env, "DOCKER_HOST": socket}, "drift", "--metrics-file", str(metrics))
    assert found.returncode == 1
    assert found.stderr.startswith(f"error[engine.unreachable] cannot reach the Docker engine at {socket}\n")
    text = metrics.read_text()
    names = {name for name, _, _ in samples(text)}
    assert "reconcile_service_health" not in names and "reconcile_drift" not in names
    assert f'reconcile_engine_up{{project="{loaded.spec.project}"}} 0\n' in text
    assert "reconcile_last_backup_timestamp_seconds" in names  # read from the store, not the engine


def test_status_shows_the_image_the_container_was_made_from(client, write_spec, env):
    loaded = write_spec(SPEC)
    materialise(client, loaded)  # worker from reconcile-lab/app:1
    newer = {**env, "FX_APP_VERSION": "2"}  # the spec moved on; no apply yet
    rows = {r["service"]: r for r in json.loads(run(loaded, newer, "status", "--json").stdout)["services"]}
    worker = rows["worker"]
    assert (worker["image"], worker["running_image"], worker["image_matches_spec"]) == (
        "reconcile-lab/app:2", "reconcile-lab/app:1", False)
    assert rows["cache"]["running_image"] == "reconcile-lab/redis:7" and rows["cache"]["image_matches_spec"]
    text = run(loaded, newer, "status").stdout
    assert "reconcile-lab/app:1 (spec: reconcile-lab/app:2)" in next(
        line for line in text.splitlines() if line.startswith("worker "))


def test_health_during_an_apply_calls_a_service_without_its_container_replacing_not_missing(client, write_spec,
                                                                                              env):
    """Its old and new containers carry other names while apply swaps them: exit 3 ("containers
    missing") paged someone in the middle of every deploy. Exit 1 while the lock is held, 3 after."""
    loaded = write_spec(SPEC)
    materialise(client, loaded, ["cache"])
    with ApplyLock(loaded.state_dir(), "20260105T040000Z-abcdef"):
        during = run(loaded, env, "health", "--json")
    assert during.returncode == 1, during.stdout + during.stderr
    worker = json.loads(during.stdout)["services"]["worker"]
    assert worker["status"] == "replacing" and "an apply changes the stack" in worker["details"]["error"]
    after = run(loaded, env, "health", "--json")
    assert after.returncode == 3 and json.loads(after.stdout)["services"]["worker"]["status"] == "missing"
