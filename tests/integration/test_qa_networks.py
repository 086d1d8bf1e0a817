"""QA of networks against the real engine: plan says what apply will do with them, and apply
converges in one run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

pytestmark = pytest.mark.engine

SPEC = """\
version: 1
project: {project}
state_dir: ./state
networks:
  backend: {}
services:
  cache:
    profile: infrastructure
    kind: redis
    image: reconcile-lab/redis:7
    networks: [backend]
  worker:
    image: reconcile-lab/nginx:latest
    networks: [backend]
backup:
  local: { path: ./backups }
"""


def cli(spec, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reconciler", "-f", str(spec), *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "NO_COLOR": "1"})


def applied(loaded) -> None:
    done = cli(loaded.file, "apply", "--auto-approve")
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_network_made_internal_in_the_spec_is_not_reported_converged(client, write_spec, project):
    """Was: plan "No changes", drift "No drift" and apply exit 0 while the network stayed open."""
    loaded = write_spec(SPEC)
    applied(loaded)
    loaded.file.write_text(SPEC.replace("{project}", project).replace("backend: {}", "backend: { internal: true }"))

    plan = cli(loaded.file, "plan", "--detailed-exitcode")
    assert plan.returncode == 1, plan.stdout + plan.stderr
    assert "No changes" not in plan.stdout and "internal false → true" in plan.stdout
    assert cli(loaded.file, "drift").returncode == 1
    refused = cli(loaded.file, "apply", "--auto-approve")
    assert refused.returncode == 1 and "plan.network-differs" in refused.stderr, refused.stdout + refused.stderr

    for service in ("cache", "worker"):  # the way out the hint gives
        client.api.stop(f"{project}-{service}")
    client.api.remove_network(f"{project}_backend")
    applied(loaded)
    assert client.api.inspect_network(f"{project}_backend")["Internal"] is True
    assert cli(loaded.file, "plan", "--detailed-exitcode").returncode == 0


def test_a_network_deleted_under_two_stopped_services_converges_in_one_apply(client, write_spec, project):
    """Was: heal made the network again for the first service, the second's rejoin was dropped as
    done (its endpoint still named the network) and its start failed: exit 2."""
    loaded = write_spec(SPEC)
    applied(loaded)
    for service in ("cache", "worker"):
        client.api.stop(f"{project}-{service}")
    client.api.remove_network(f"{project}_backend")

    applied(loaded)
    for service in ("cache", "worker"):
        assert client.api.inspect_container(f"{project}-{service}")["State"]["Running"]
    assert cli(loaded.file, "plan", "--detailed-exitcode").returncode == 0


def test_a_network_made_by_hand_under_the_name_blocks_the_plan(client, write_spec, project):
    """Was: plan "create network", then apply failed on the engine's "already exists" (exit 2)."""
    loaded = write_spec(SPEC)
    by_hand = client.api.create_network(f"{project}_backend")["Id"]
    try:
        plan = cli(loaded.file, "plan")
        assert plan.returncode == 1 and "not make" in plan.stdout and by_hand[:12] in plan.stdout, plan.stdout
        refused = cli(loaded.file, "apply", "--auto-approve")
        assert refused.returncode == 1 and "plan.network-taken" in refused.stderr, refused.stdout + refused.stderr
        assert not client.api.containers(all=True, filters={"label": f"reconcile.project={project}"})
        assert not client.api.inspect_network(by_hand)["Containers"]
    finally:
        client.api.remove_network(by_hand)


def test_a_host_port_taken_on_create_says_which_port_and_how_to_find_its_holder(write_spec, project):
    """Was: "hint: see the engine's message above; `docker info` shows its state"."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        loaded = write_spec(SPEC.replace("    networks: [backend]\nbackup:",
                                         f"    networks: [backend]\n    ports: ['127.0.0.1:{port}:80']\nbackup:"))
        failed = cli(loaded.file, "apply", "--auto-approve")
        assert failed.returncode == 2, failed.stdout + failed.stderr
        assert f"hint: host port {port} is taken by another process or container" in failed.stderr, failed.stderr
        assert f"docker ps --filter publish={port}" in failed.stderr
    finally:
        holder.close()


def test_profiles_given_as_one_comma_separated_value_get_a_hint_that_fits(write_spec):
    """Was: "unknown profile app,infrastructure; hint: did you mean 'infrastructure'?"."""
    loaded = write_spec(SPEC)
    failed = cli(loaded.file, "plan", "--profile", "app,infrastructure")
    assert failed.returncode == 1
    assert "give each profile its own option (--profile app --profile infrastructure)" in failed.stderr, failed.stderr
