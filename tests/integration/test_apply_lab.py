"""The reference stack (specs/lab.yaml) from an empty engine, then an app-only upgrade."""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.integration.apply_support import LAB_SPEC, apply, cli, containers, lab_env, show

pytestmark = pytest.mark.engine
INFRA = ("postgres", "dragonfly", "openvidu")


def started(client, project) -> dict[str, tuple[str, str]]:
    return {name.removeprefix(f"{project}-"): (doc["Id"], doc["State"]["StartedAt"])
            for name, doc in containers(client, project).items()}


def test_empty_engine_to_healthy_stack_then_app_only_upgrade(client, project, tmp_path):
    env = lab_env(project, tmp_path)
    first = apply(LAB_SPEC, env)
    assert first.returncode == 0, show(first)
    assert sorted(started(client, project)) == ["api", "api-proxy", "dragonfly", "openvidu", "postgres",
                                                 "worker"]
    health = cli(LAB_SPEC, env, "health")
    assert health.returncode == 0, show(health)
    again = apply(LAB_SPEC, env)
    assert again.returncode == 0 and again.stdout.strip() == "No changes.", show(again)

    before = started(client, project)
    upgrade = {**env, "LAB_APP_VERSION": "2"}
    result = apply(LAB_SPEC, upgrade)
    assert result.returncode == 0, show(result)
    done = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("ok  ")]
    assert done == ["recreate:api", "switch-traffic:api", "recreate:worker"], result.stdout
    after = started(client, project)
    assert {s: after[s] for s in INFRA} == {s: before[s] for s in INFRA}
    assert after["api"][0] != before["api"][0] and after["worker"][0] != before["worker"][0]
    with urllib.request.urlopen(f"http://127.0.0.1:{env['LAB_API_PORT']}/", timeout=5) as answer:
        assert json.load(answer)["version"] == "2"
    assert apply(LAB_SPEC, upgrade).stdout.strip() == "No changes."
