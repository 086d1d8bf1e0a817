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


def sh(client, container: str, script: str, stops_it: bool = False) -> None:
    """Run ``script`` in the container. One that ends the container's main process may be
    killed with it (exit 137) before it returns: that is its success, not a failure."""
    run = client.api.exec_create(container, ["sh", "-c", script])
    client.api.exec_start(run["Id"])
    assert client.api.exec_inspect(run["Id"])["ExitCode"] in ((0, 137) if stops_it else (0,))


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
    sh(client, name, "nginx -s stop", stops_it=True)  # nginx exits; restart policy brings it back, or apply starts it
    result = apply(spec, env)
    assert result.returncode == 0, show(result)
    assert containers(client, project)[name]["Id"] == before


TWO = SPEC + """\
  front:
    profile: app
    kind: http
    image: reconcile-lab/nginx:latest
    depends_on: [video]
    health: { http: { port: 80, path: /health }, timeout: 8s, interval: 1s }
"""


def test_a_service_whose_dependency_the_plan_brings_up_is_left_to_the_plan(client, project, tmp_path):
    """An API is unhealthy while its database is missing: restarting it before the plan
    creates the database (then waiting out its health timeout) fixes nothing."""
    spec, env = tmp_path / "two.yaml", lab_env(project, tmp_path)
    spec.write_text(TWO)
    assert apply(spec, env).returncode == 0
    front = containers(client, project)[f"{project}-front"]["Id"]
    sh(client, f"{project}-front", BREAK)  # unhealthy whatever happens to video
    client.api.remove_container(f"{project}-video", force=True)
    result = apply(spec, env)
    assert "ok  create:video" in result.stdout, show(result)
    assert "restarting it once" not in result.stdout and "front" not in result.stdout
    assert containers(client, project)[f"{project}-front"]["Id"] == front
    later = apply(spec, env)  # its dependency is there now: front is healed as usual
    assert "front is unhealthy" in later.stdout and "restarting it once" in later.stdout, show(later)
