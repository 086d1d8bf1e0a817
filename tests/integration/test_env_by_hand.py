"""A container re-run by hand with the project's name and labels but another env value (a
DATABASE_URL pointed elsewhere) is drift: plan recreates it as the spec says, never showing
either value."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.integration.conftest import materialise

pytestmark = pytest.mark.engine

SPEC = """\
version: 1
project: {project}
services:
  worker:
    image: reconcile-lab/nginx:latest
    env: { DATABASE_URL: "postgresql://app:Spec-Pw-1@db/x", LOG_LEVEL: info }
"""


def test_an_env_value_changed_by_re_running_the_container_is_drift(client, write_spec, project):
    loaded = write_spec(SPEC)
    made = materialise(client, loaded)["worker"]
    doc = client.api.inspect_container(made)
    env = [e if not e.startswith("DATABASE_URL=") else "DATABASE_URL=postgresql://app:Hand-Pw-2@elsewhere/x"
           for e in doc["Config"]["Env"]]
    client.api.remove_container(made, force=True)
    client.containers.run("reconcile-lab/nginx:latest", name=f"{project}-worker", detach=True,
                          labels=doc["Config"]["Labels"], environment=env)

    plan = subprocess.run([sys.executable, "-m", "reconciler", "-f", str(loaded.file), "plan",
                           "--detailed-exitcode"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_COLOR": "1"})
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert "env DATABASE_URL of the live container is not what the spec sets" in plan.stdout
    assert "LOG_LEVEL" not in plan.stdout  # the value that is as the spec says is not named
    assert "Spec-Pw-1" not in plan.stdout and "Hand-Pw-2" not in plan.stdout
