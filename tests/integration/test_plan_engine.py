"""`reconcile plan` against the real engine: each state is made by the test, then planned."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from reconciler.errors import EngineError
from reconciler.pipeline import snapshot
from tests.integration.conftest import materialise

pytestmark = pytest.mark.engine

SPEC = """\
version: 1
project: {project}
volumes:
  cache_data: {}
networks:
  backend: {}
services:
  cache:
    profile: infrastructure
    kind: redis
    image: reconcile-lab/redis:7
    volumes: ["cache_data:/data"]
    networks: [backend]
    stateful: true
  web:
    profile: app
    image: "reconcile-lab/app:${env:APP_VERSION:-1}"
    command: ["python3", "/app/worker.py"]
    env: { LOG_LEVEL: "${env:LOG_LEVEL:-info}", API_TOKEN: "${env:API_TOKEN:-tok-3141592}" }
    depends_on: { cache: started }
    networks: [backend]
"""


def run_cli(loaded, *args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "reconciler", "-f", str(loaded.file), *args],
        capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1", **(env or {})},
        timeout=120)


def kinds(plan):
    return [(a.kind.value, a.resource) for a in plan.actions]


def test_empty_engine_plans_every_create(client, write_spec):
    loaded = write_spec(SPEC)
    plan = snapshot(loaded.file).plan
    assert kinds(plan) == [("create-network", "backend"), ("create-volume", "cache_data"),
                           ("create", "cache"), ("create", "web")]


def test_matching_engine_has_no_changes_and_exit_0(client, write_spec):
    loaded = write_spec(SPEC)
    materialise(client, loaded)
    result = run_cli(loaded, "plan", "--detailed-exitcode")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No changes" in result.stdout


def test_stopped_container_is_started(client, write_spec):
    loaded = write_spec(SPEC)
    ids = materialise(client, loaded)
    client.api.stop(ids["cache"], timeout=5)
    plan = snapshot(loaded.file).plan
    assert kinds(plan) == [("start", "cache")]
    assert plan.actions[0].container_id == ids["cache"]


def test_env_change_is_a_recreate_with_a_redacted_field_diff(client, write_spec, monkeypatch):
    loaded = write_spec(SPEC)
    materialise(client, loaded)
    monkeypatch.setenv("LOG_LEVEL", "debug")
    result = run_cli(loaded, "plan", "--detailed-exitcode", env={"LOG_LEVEL": "debug"})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "~" in result.stdout and "web" in result.stdout and "env.LOG_LEVEL" in result.stdout
    assert "debug" not in result.stdout and "tok-3141592" not in result.stdout
    plan = json.loads(run_cli(loaded, "plan", "--json", env={"LOG_LEVEL": "debug"}).stdout)
    assert [(a["kind"], a["resource"]) for a in plan["actions"]] == [("recreate", "web")]
    assert "debug" not in json.dumps(plan)


def test_image_change_recreates_only_that_service(client, write_spec, monkeypatch):
    loaded = write_spec(SPEC)
    materialise(client, loaded)
    monkeypatch.setenv("APP_VERSION", "2")
    plan = snapshot(loaded.file).plan
    assert kinds(plan) == [("recreate", "web")]
    assert "image" in plan.actions[0].cause


def test_stateful_recreate_is_preceded_by_backup(client, write_spec):
    loaded = write_spec(SPEC)
    materialise(client, loaded)
    changed = write_spec(SPEC.replace("kind: redis\n", "kind: redis\n    env: { X: y }\n"))
    plan = snapshot(changed.file).plan
    assert kinds(plan)[:2] == [("backup", "cache"), ("recreate", "cache")]
    assert "backup:cache" in plan.actions[1].depends_on


def test_orphan_is_removed_but_not_outside_selected_profiles(client, write_spec):
    loaded = write_spec(SPEC)
    materialise(client, loaded)
    without_web = write_spec(SPEC.split("  web:")[0])
    assert kinds(snapshot(without_web.file).plan) == [("remove", "web")]
    assert kinds(snapshot(without_web.file, ["infrastructure"]).plan) == []


def test_saved_plan_carries_the_observed_fingerprint(client, write_spec, tmp_path):
    loaded = write_spec(SPEC)
    ids = materialise(client, loaded)
    out = tmp_path / "plan.json"
    assert run_cli(loaded, "plan", "--out", str(out)).returncode == 0
    saved = json.loads(out.read_text())
    assert saved["fingerprint"] == snapshot(loaded.file).plan.fingerprint
    client.api.stop(ids["web"], timeout=5)
    assert saved["fingerprint"] != snapshot(loaded.file).plan.fingerprint


def test_unreachable_engine_is_a_clear_error(write_spec, tmp_path, monkeypatch):
    loaded = write_spec(SPEC)
    dead = f"unix://{tmp_path}/no-engine.sock"
    result = run_cli(loaded, "plan", env={"DOCKER_HOST": dead})
    assert result.returncode == 1
    assert "cannot reach the Docker engine" in result.stderr and "hint:" in result.stderr
    assert "Traceback" not in result.stderr
    monkeypatch.setenv("DOCKER_HOST", dead)
    with pytest.raises(EngineError):
        snapshot(loaded.file)
