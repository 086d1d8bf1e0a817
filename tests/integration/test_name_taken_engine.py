"""A container started by hand under a service's name, without reconcile's labels: `plan` says
up front that apply would refuse (a blocking line, exit 1) instead of showing a plain create
that then fails midway, and `apply` refuses before it creates anything."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.engine

SPEC = """\
version: 1
project: {project}
networks:
  backend: {}
services:
  web:
    image: reconcile-lab/app:1
    networks: [backend]
  worker:
    image: reconcile-lab/app:1
    command: ["python3", "/app/worker.py"]
    networks: [backend]
"""


def run_cli(loaded, *args, **env):
    return subprocess.run([sys.executable, "-m", "reconciler", "-f", str(loaded.file), *args],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_COLOR": "1", **env})


def ours(client, project: str) -> list[str]:
    """Everything the project's labels are on: containers, networks, volumes."""
    label = {"label": f"reconcile.project={project}"}
    return ([c["Names"][0] for c in client.api.containers(all=True, filters=label)]
            + [n["Name"] for n in client.api.networks(filters=label)]
            + [v["Name"] for v in client.api.volumes(filters=label).get("Volumes") or []])


def test_a_name_taken_by_hand_blocks_the_plan_and_apply_refuses_before_any_change(client, write_spec, project):
    loaded = write_spec(SPEC)
    name = f"{project}-web"
    other = client.containers.run("reconcile-lab/debian:bookworm", ["sleep", "600"], name=name, detach=True)
    try:
        plan = run_cli(loaded, "plan", "--out", str(loaded.file.parent / "plan.json"))
        assert plan.returncode == 1, plan.stdout + plan.stderr
        assert "apply refuses it until what is Blocked above is fixed" in plan.stdout  # was: "Apply it with: …"
        assert "Apply it with" not in plan.stdout
        assert "  + create  web              new service (blocked)\n" in plan.stdout, plan.stdout
        assert "  + create  worker           new service\n" in plan.stdout
        assert (f"  ! web: the name {name} is taken by container {other.id[:12]} (image "
                "reconcile-lab/debian:bookworm, running), which reconcile did not make (it has no reconcile "
                "labels)") in plan.stdout, plan.stdout
        assert f"docker rename {name} " in plan.stdout and f"docker rm -f {name}" in plan.stdout
        assert "Apply would refuse this plan before changing anything" in plan.stdout

        detailed = run_cli(loaded, "plan", "--detailed-exitcode", "--json", RECONCILE_NO_PREFETCH="1")
        assert detailed.returncode == 1, detailed.stdout + detailed.stderr  # refused, not "changes"
        data = json.loads(detailed.stdout)
        assert [(b["resource"], b["ref"]) for b in data["blocking"]] == [("web", "plan.name-taken")]
        assert other.id[:12] in data["blocking"][0]["message"]
        assert "error[plan.name-taken]" in detailed.stderr
        assert "create:web" in [a["id"] for a in data["actions"]]

        applied = run_cli(loaded, "apply", "--auto-approve")
        assert applied.returncode == 1, applied.stdout + applied.stderr
        assert "error[plan.name-taken]" in applied.stderr and "nothing was changed" in applied.stderr
        assert ours(client, project) == []  # not the network, not the worker: nothing was created
        other.reload()
        assert other.status == "running" and client.api.inspect_container(name)["Id"] == other.id

        applied = run_cli(loaded, "apply", "--auto-approve", "--json")
        assert applied.returncode == 1, applied.stdout + applied.stderr
        last = json.loads(applied.stdout.splitlines()[-1])
        assert (last["event"], last["error"], last["exit_code"]) == ("error", "plan.name-taken", 1)

        other.rename(f"{name}-by-hand")  # the hint: keep it under another name
        freed = run_cli(loaded, "plan", "--detailed-exitcode")
        assert freed.returncode == 2, freed.stdout + freed.stderr
        assert "Blocked" not in freed.stdout and "(blocked)" not in freed.stdout
    finally:
        other.remove(force=True)
