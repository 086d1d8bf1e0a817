"""What apply's summary tells the operator to do by hand must never cost data."""

from __future__ import annotations

import json

import pytest

from tests.integration.apply_support import apply, lab_env, show

pytestmark = pytest.mark.engine

SPEC = """\
version: 1
project: "${env:LAB_PROJECT}"
state_dir: "${env:LAB_STATE_DIR}"
volumes:
  cachedata: {}
services:
  cache:
    profile: infrastructure
    kind: redis
    image: reconcile-lab/redis:7
    volumes: ["cachedata:/data"]
    stateful: true
  web:
    profile: app
    kind: http
    image: reconcile-lab/nginx:latest
    env: { RELEASE: "${env:RELEASE:-1}" }
    health: { http: { port: 80, path: /health }, timeout: 30s, interval: 1s }
backup:
  local: { path: "${env:LAB_BACKUP_DIR}" }
"""


def test_the_volume_of_a_service_whose_container_is_gone_is_not_called_removable(client, project, tmp_path):
    """The cache's container was removed by hand; an app-only apply leaves it alone. Its
    volume is the cache's live data, not an old generation: "remove by hand" would lose it."""
    spec, env = tmp_path / "stack.yaml", lab_env(project, tmp_path)
    spec.write_text(SPEC)
    assert apply(spec, env).returncode == 0
    client.api.remove_container(f"{project}-cache", force=True)
    result = apply(spec, {**env, "RELEASE": "2"}, "--profile", "app", "--json")
    assert result.returncode == 0, show(result)
    finish = json.loads(result.stdout.splitlines()[-1])
    assert finish["event"] == "finish" and finish["actions"] == ["recreate:web"], finish
    assert finish["unused_volumes"] == [], finish
    assert f"{project}_cachedata" in {v["Name"] for v in client.api.volumes()["Volumes"] or []}


def test_a_degraded_service_is_a_warning_not_a_promise_to_restart_it(client, project, tmp_path):
    """apply heals only critical services: a cache near its memory limit is said, untouched."""
    from reconciler.engines import container_ip
    from reconciler.engines.resp import RespConnection

    spec, env = tmp_path / "stack.yaml", lab_env(project, tmp_path)
    spec.write_text(SPEC)
    assert apply(spec, env).returncode == 0
    name = f"{project}-cache"
    before = client.api.inspect_container(name)["Id"]
    with RespConnection(container_ip(client.api.inspect_container(name)), 6379) as conn:
        used = int(dict(line.split(":", 1) for line in conn.call("INFO", "memory").decode().split("\r\n")
                        if ":" in line)["used_memory"])
        conn.call("CONFIG", "SET", "maxmemory", str(int(used * 1.08)))  # near it; at it, writes fail
    result = apply(spec, {**env, "RELEASE": "2"})
    assert result.returncode == 0, show(result)
    assert "cache is degraded" in result.stdout and "apply restarts it once" not in result.stdout, show(result)
    assert client.api.inspect_container(name)["Id"] == before
