"""A container re-run by hand with the project's name and labels but another command (a
one-off left running in the worker's place) is drift: plan recreates it as the spec says."""

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
    image: reconcile-lab/debian:bookworm
    command: ["sleep", "3600"]
  helper:
    image: reconcile-lab/nginx:latest
"""


def plan(loaded) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reconciler", "-f", str(loaded.file), "plan",
                           "--detailed-exitcode"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_COLOR": "1"})


def test_a_command_changed_by_re_running_the_container_is_drift(client, write_spec, project):
    loaded = write_spec(SPEC)
    made = materialise(client, loaded)
    assert plan(loaded).returncode == 0  # as made: no drift (the helper's command is the image's)
    doc = client.api.inspect_container(made["worker"])
    client.api.remove_container(made["worker"], force=True)
    client.containers.run("reconcile-lab/debian:bookworm", ["sleep", "7200"], name=f"{project}-worker",
                          detach=True, labels=doc["Config"]["Labels"], environment=doc["Config"]["Env"])

    result = plan(loaded)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "recreate  worker  command of the live container is not what the spec sets" in result.stdout
    assert "helper" not in result.stdout
