"""`docker update` by hand, then `reconcile plan` / `apply` on the real engine: the plan shows
an in-place update, apply converges it on the SAME container (not recreated, not even
restarted), and a memory limit the spec does not have is recreated, with its backup first."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.engine
MIB = 1024 ** 2

SPEC = """\
version: 1
project: {project}
networks:
  backend: {}
volumes:
  cachedata: {}
services:
  cache:
    profile: infrastructure
    kind: redis
    image: reconcile-lab/redis:7
    volumes: ["cachedata:/data"]
    networks: [backend]
    stateful: true
  worker:
    profile: app
    image: reconcile-lab/app:1
    command: ["python3", "/app/worker.py"]
    env: { WORKER_INTERVAL: "5" }
    networks: [backend]
    mem_limit: 96m
"""


def cli(loaded, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reconciler", "-f", str(loaded.file), *args],
                          capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, "NO_COLOR": "1", "RECONCILE_NO_PREFETCH": "1"})


def show(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def applied(loaded) -> subprocess.CompletedProcess:
    result = cli(loaded, "apply", "--auto-approve")
    assert result.returncode == 0, show(result)
    return result


def plan_json(loaded) -> dict:
    result = cli(loaded, "plan", "--json")
    assert result.returncode == 0, show(result)
    return json.loads(result.stdout)


def inspect(client, project: str, service: str) -> dict:
    return client.api.inspect_container(f"{project}-{service}")


@pytest.fixture()
def stack(client, write_spec, project):
    loaded = write_spec(SPEC)
    applied(loaded)
    assert plan_json(loaded)["changes"] is False
    return loaded


def test_restart_policy_changed_by_hand_is_updated_in_place(client, project, stack):
    before = inspect(client, project, "worker")
    assert before["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    client.api.update_container(before["Id"], restart_policy={"Name": "no"})

    text = cli(stack, "plan", "--detailed-exitcode")
    assert text.returncode == 2, show(text)
    assert "^ update  worker  live container changed in place (docker update): restart: no → unless-stopped" \
        in text.stdout
    assert "1 to update in place, 0 to remove, 0 backups." in text.stdout
    data = plan_json(stack)
    assert [a["id"] for a in data["actions"]] == ["update:worker"]
    assert data["actions"][0]["container_id"] == before["Id"]

    drift = cli(stack, "drift", "--json")
    assert drift.returncode == 2, show(drift)
    (drifted,) = json.loads(drift.stdout)["drifted"]
    assert drifted["service"] == "worker" and len(drifted["reasons"]) == 1
    assert f"docker update --restart unless-stopped {project}-worker" in drifted["reasons"][0]

    result = applied(stack)
    assert "update:worker" in result.stdout
    after = inspect(client, project, "worker")
    assert after["Id"] == before["Id"], "recreated instead of updated in place"
    assert after["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert after["State"]["Running"] and after["State"]["StartedAt"] == before["State"]["StartedAt"]
    assert plan_json(stack)["changes"] is False


def test_memory_limit_changed_by_hand_is_updated_in_place(client, project, stack):
    before = inspect(client, project, "worker")
    assert before["HostConfig"]["Memory"] == 96 * MIB
    client.api.update_container(before["Id"], mem_limit=64 * MIB, memswap_limit=128 * MIB)

    text = cli(stack, "plan")
    assert "^ update  worker  live container changed in place (docker update): mem_limit: 64m → 96m" \
        in text.stdout, show(text)

    applied(stack)
    after = inspect(client, project, "worker")
    assert after["Id"] == before["Id"], "recreated instead of updated in place"
    assert after["HostConfig"]["Memory"] == 96 * MIB
    assert after["HostConfig"]["MemorySwap"] in (192 * MIB, -1)  # -1: the kernel has no swap limit
    assert after["State"]["Running"] and after["State"]["StartedAt"] == before["State"]["StartedAt"]
    assert plan_json(stack)["changes"] is False


def test_a_limit_the_spec_lacks_is_recreated_with_a_backup_first(client, project, stack):
    before = inspect(client, project, "cache")
    run = client.api.exec_create(before["Id"], ["redis-cli", "SET", "kept-key", "kept-value"])
    assert client.api.exec_start(run["Id"]).strip() == b"OK"
    client.api.update_container(before["Id"], mem_limit=256 * MIB, memswap_limit=512 * MIB)

    data = plan_json(stack)
    assert [a["id"] for a in data["actions"]] == ["backup:cache", "recreate:cache", "verify:cache"]
    assert data["actions"][1]["depends_on"] == ["backup:cache"]
    assert "mem_limit: 256m → (none); only a recreate removes a memory limit" in data["actions"][1]["cause"]

    applied(stack)
    after = inspect(client, project, "cache")
    assert after["Id"] != before["Id"] and after["HostConfig"]["Memory"] == 0
    run = client.api.exec_create(after["Id"], ["redis-cli", "GET", "kept-key"])
    assert client.api.exec_start(run["Id"]).strip() == b"kept-value"
    assert list((stack.file.parent / "backups").rglob("*.json")), "no backup metadata was written"
    assert plan_json(stack)["changes"] is False


def test_a_container_cut_off_its_network_is_reconnected_in_place(client, project, stack):
    """`docker network disconnect` by hand: it runs, looks healthy, keeps its labels, and no
    service can reach it by name. plan and drift say so; apply reconnects the same container."""
    before = inspect(client, project, "worker")
    network = f"{project}_backend"
    client.api.disconnect_container_from_network(before["Id"], network)
    assert not _resolves(client, inspect(client, project, "cache")["Id"], "worker")

    text = cli(stack, "plan", "--detailed-exitcode")
    assert text.returncode == 2, show(text)
    assert ("^ update  worker  live container changed in place (docker network disconnect): "
            f"networks: (none) → {network}") in text.stdout
    drift = cli(stack, "drift", "--json")
    assert drift.returncode == 2, show(drift)
    (drifted,) = json.loads(drift.stdout)["drifted"]
    assert f"docker network connect --alias worker {network} {project}-worker" in drifted["reasons"][0]

    applied(stack)
    after = inspect(client, project, "worker")
    assert after["Id"] == before["Id"], "recreated instead of reconnected in place"
    assert after["State"]["Running"] and after["State"]["StartedAt"] == before["State"]["StartedAt"]
    assert "worker" in after["NetworkSettings"]["Networks"][network]["Aliases"]
    assert _resolves(client, inspect(client, project, "cache")["Id"], "worker")
    assert plan_json(stack)["changes"] is False


def _resolves(client, container: str, name: str) -> bool:
    run = client.api.exec_create(container, ["getent", "hosts", name])
    client.api.exec_start(run["Id"])
    return client.api.exec_inspect(run["Id"])["ExitCode"] == 0
