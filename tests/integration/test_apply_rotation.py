"""Rotating a cache password in the spec: the server still runs with the old one until apply
recreates it, so the backup before the recreate must reach it with the password its
container was started with, and the restore and verify after it with the new one."""

from __future__ import annotations

import pytest
import redis

from reconciler import dockerio
from reconciler.engines import container_ip
from tests.integration.apply_support import apply, containers, lab_env, show

pytestmark = pytest.mark.engine

SPEC = """\
version: 1
project: "${env:LAB_PROJECT}"
state_dir: "${env:LAB_STATE_DIR}"
volumes: { cache_data: {} }
services:
  cache:
    kind: redis
    image: reconcile-lab/redis:7
    command: ["redis-server", "--requirepass", "${env:CACHE_PW}", "--appendonly", "no"]
    volumes: ["cache_data:/data"]
    stateful: true
    health: { interval: 1s }
backup:
  local: { path: "${env:LAB_BACKUP_DIR}" }
"""


def cache(client, project: str, password: str) -> redis.Redis:
    doc = dockerio.inspect_container(client, f"{project}-cache")
    return redis.Redis(host=container_ip(doc), port=6379, password=password)


def test_a_rotated_cache_password_is_applied_with_the_data_carried_over(client, project, tmp_path):
    spec = tmp_path / "reconcile.yaml"
    spec.write_text(SPEC)
    old = lab_env(project, tmp_path, CACHE_PW="old-cache-pw-1")
    first = apply(spec, old)
    assert first.returncode == 0, show(first)
    cache(client, project, "old-cache-pw-1").mset({f"session:{i}": f"v{i}" for i in range(300)})
    before = containers(client, project)[f"{project}-cache"]["Id"]

    rotated = apply(spec, {**old, "CACHE_PW": "new-cache-pw-2"})
    assert rotated.returncode == 0, show(rotated)
    assert containers(client, project)[f"{project}-cache"]["Id"] != before  # recreated
    after = cache(client, project, "new-cache-pw-2")
    assert after.dbsize() == 300 and after.get("session:7") == b"v7"
    for text in (rotated.stdout, rotated.stderr):
        assert "old-cache-pw-1" not in text and "new-cache-pw-2" not in text
