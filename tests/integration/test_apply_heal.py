"""The decision matrix's "unhealthy, spec unchanged" row: restart once, then recreate."""

from __future__ import annotations

import pytest

from tests.integration.apply_support import apply, containers, lab_env, show

pytestmark = pytest.mark.engine

SPEC = """\
version: 1
project: "${env:LAB_PROJECT}"
state_dir: "${env:LAB_STATE_DIR}"
services:
  video:
    profile: infrastructure
    kind: http
    image: reconcile-lab/nginx:latest
    health: { http: { port: 80, path: /health }, timeout: 8s, interval: 1s }
"""
BREAK = "sed -i \"s/return 200 'ok'/return 503 'down'/\" /etc/nginx/conf.d/default.conf && nginx -s reload"


def sh(client, container: str, script: str) -> None:
    run = client.api.exec_create(container, ["sh", "-c", script])
    client.api.exec_start(run["Id"])
    assert client.api.exec_inspect(run["Id"])["ExitCode"] == 0


def test_a_service_that_stays_unhealthy_after_a_restart_is_recreated(client, project, tmp_path):
    spec, env = tmp_path / "video.yaml", lab_env(project, tmp_path)
    spec.write_text(SPEC)
    assert apply(spec, env).returncode == 0
    name = f"{project}-video"
    broken = containers(client, project)[name]["Id"]
    sh(client, name, BREAK)  # survives a restart: the container's own file system
    result = apply(spec, env)
    assert result.returncode == 0, show(result)
    assert "restarting it once" in result.stdout and "still unhealthy" in result.stdout
    assert "ok  recreate:video" in result.stdout
    now = containers(client, project)
    assert list(now) == [name] and now[name]["Id"] != broken
    assert apply(spec, env).stdout.strip() == "No changes."


def test_a_service_that_comes_back_is_not_recreated(client, project, tmp_path):
    spec, env = tmp_path / "video.yaml", lab_env(project, tmp_path)
    spec.write_text(SPEC)
    assert apply(spec, env).returncode == 0
    name = f"{project}-video"
    before = containers(client, project)[name]["Id"]
    sh(client, name, "nginx -s stop")  # nginx exits; restart policy brings it back, or apply starts it
    result = apply(spec, env)
    assert result.returncode == 0, show(result)
    assert containers(client, project)[name]["Id"] == before
