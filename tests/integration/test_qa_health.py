"""QA of `health`, `diagnose` and `heal` under real faults: what they say must be true, and
what heal says it fixed must be fixed (a second heal has nothing to do).

Every stack is made by `reconcile apply`; waits between heal attempts are 0.1 s.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.integration.apply_support import apply, cli, lab_env, show, wait_for

pytestmark = pytest.mark.engine

# A worker whose image's Docker health check is a heartbeat it writes only while it reaches
# PostgreSQL by name: cut off the network, Docker calls it unhealthy some seconds later.
WORKER_SPEC = """\
version: 1
project: "${env:LAB_PROJECT}"
state_dir: "${env:LAB_STATE_DIR}"
networks:
  backend: {}
services:
  postgres:
    kind: postgres
    image: reconcile-lab/postgres:15
    env: { POSTGRES_PASSWORD: lab-password, POSTGRES_DB: healthcare }
    networks: [backend]
    stateful: true
    health: { timeout: 60s, interval: 1s }
  worker:
    image: reconcile-lab/app:1
    command: ["python3", "/app/worker.py"]
    env: { DATABASE_URL: "postgresql://postgres:lab-password@postgres:5432/healthcare", WORKER_INTERVAL: "1" }
    depends_on: { postgres: healthy }
    networks: [backend]
    health: { timeout: 60s, interval: 1s }
backup:
  local: { path: "${env:LAB_BACKUP_DIR}" }
"""


def heal(spec: Path, env: dict) -> tuple[subprocess.CompletedProcess, dict]:
    result = cli(spec, env, "heal", "--json")
    try:
        return result, json.loads(result.stdout)
    except ValueError:
        pytest.fail(show(result), pytrace=False)


@pytest.fixture()
def worker_stack(project, tmp_path):
    spec, env = tmp_path / "worker.yaml", lab_env(project, tmp_path, RECONCILE_HEAL_BACKOFF="0.1")
    spec.write_text(WORKER_SPEC)
    assert (made := apply(spec, env)).returncode == 0, show(made)
    return spec, env, f"{project}-worker", f"{project}_backend"


def networks_of(client, container: str) -> set[str]:
    return set(client.api.inspect_container(container)["NetworkSettings"]["Networks"])


def docker_health(client, container: str) -> str:
    return client.api.inspect_container(container)["State"]["Health"]["Status"]


def assert_nothing_left(spec: Path, env: dict) -> None:
    again = cli(spec, env, "heal")
    assert again.returncode == 0 and "Nothing to heal" in again.stdout, show(again)


def test_a_worker_cut_off_its_network_is_reconnected_not_recreated_for_dockers_stale_verdict(client, worker_stack):
    """Docker still says unhealthy right after the reconnect (its next check has not run): heal
    waited for no check and recreated the worker it had just reconnected."""
    spec, env, worker, network = worker_stack
    before = client.api.inspect_container(worker)["Id"]
    client.api.disconnect_container_from_network(worker, network)
    wait_for(lambda: docker_health(client, worker) == "unhealthy", timeout=120, interval=0.5)
    result, report = heal(spec, env)
    assert result.returncode == 0, show(result)
    assert {r["action"] for r in report["results"]} == {"recreate-network"}, report
    assert client.api.inspect_container(worker)["Id"] == before, "reconnected, not recreated"
    assert network in networks_of(client, worker)
    assert_nothing_left(spec, env)


def test_a_deleted_network_is_rejoined_by_every_service_heal_calls_fixed(client, worker_stack):
    """The worker still passed its heartbeat check just after the network went: heal called it
    "healthy again once postgres was healed" and left it off the recreated network."""
    spec, env, worker, network = worker_stack
    for name in (worker, f"{env['LAB_PROJECT']}-postgres"):
        client.api.disconnect_container_from_network(name, network, force=True)
    client.api.remove_network(network)
    result, report = heal(spec, env)
    assert result.returncode == 0, show(result)
    fixed = [r for r in report["results"] if r["service"] == "worker"]
    assert fixed and all(r["result"] == "fixed" for r in fixed), report
    assert network in networks_of(client, worker), report
    assert_nothing_left(spec, env)


SITE_SPEC = """\
version: 1
project: "${env:LAB_PROJECT}"
state_dir: "${env:LAB_STATE_DIR}"
services:
  web:
    kind: http
    image: reconcile-lab/nginx:latest
    volumes: ["${env:SITE_DIR}:/usr/share/nginx/html:ro"]
    health: { http: { port: 80, path: /ok.html }, timeout: 8s, interval: 1s }
"""


def test_a_recreate_that_cannot_help_rolls_back_to_the_old_unhealthy_container_without_a_critical(
        client, project, tmp_path):
    """The page its health path serves is gone from the host folder: a restart and a new
    container answer 404 alike. The rollback puts back the old container, running as unhealthy
    as before: that is a rollback that worked (exit 2), not "the rollback failed too, docker
    start it" (a critical for a container that runs)."""
    site = tmp_path / "site"
    site.mkdir(mode=0o755)
    (site / "ok.html").write_text("ok\n")
    (site / "ok.html").chmod(0o644)
    spec, env = tmp_path / "site.yaml", lab_env(project, tmp_path, RECONCILE_HEAL_BACKOFF="0.1", SITE_DIR=str(site))
    spec.write_text(SITE_SPEC)
    assert (made := apply(spec, env)).returncode == 0, show(made)
    before = client.api.inspect_container(f"{project}-web")["Id"]
    (site / "ok.html").unlink()
    result, report = heal(spec, env)
    assert result.returncode == 2, show(result)
    [failed] = report["results"]
    assert failed["action"] == "restart → recreate" and failed["result"] == "failed", failed
    assert "rollback failed" not in failed["details"] and "docker start" not in failed["details"], failed
    assert "rolled back" in failed["details"] and "unhealthy before the recreate" in failed["details"], failed
    doc = client.api.inspect_container(f"{project}-web")
    assert doc["Id"] == before and doc["State"]["Running"], "the old container, running again"


STARTING_SPEC = """\
version: 1
project: "{project}"
state_dir: state
services:
  slow:
    image: reconcile-lab/app:1
"""


def test_a_service_whose_docker_check_stays_starting_is_a_warning_in_diagnose_as_in_health(
        client, project, tmp_path, write_spec):
    """Its image's check fails through a long start period: Docker says "starting", never
    unhealthy. `health` called it degraded (exit 1) while `diagnose` found no issue (exit 0)."""
    from reconciler import dockerio
    from reconciler.apply import builders

    loaded = write_spec(STARTING_SPEC)
    args = builders.container_args(loaded, "slow", client.api.inspect_image("reconcile-lab/app:1")["Id"])
    args["healthcheck"] = {"test": ["CMD", "false"], "interval": 500_000_000, "timeout": 1_000_000_000,
                           "retries": 3, "start_period": 3600_000_000_000}
    dockerio.start(client, dockerio.create_container(client, args))
    wait_for(lambda: len(client.api.inspect_container(f"{project}-slow")["State"]["Health"]["Log"]) >= 3)
    env = lab_env(project, tmp_path)
    health = cli(loaded.file, env, "health", "--json")
    assert health.returncode == 1, show(health)
    found = cli(loaded.file, env, "diagnose", "--json")
    assert found.returncode == 1, show(found)
    [issue] = json.loads(found.stdout)["issues"]
    assert issue["rule"] == "probe-starting" and issue["severity"] == "warning", issue
    assert "checks failed (exit code 1" in issue["details"], issue


BLUE_GREEN_SPEC = """\
version: 1
project: "${env:LAB_PROJECT}"
state_dir: "${env:LAB_STATE_DIR}"
networks:
  backend: {}
services:
  api:
    image: reconcile-lab/app:1
    networks: [backend]
    ports: ["127.0.0.1:${env:LAB_API_PORT}:8000"]
    health: { http: { port: 8000, path: /health }, timeout: 30s, interval: 500ms }
    deploy: { strategy: blue-green, proxy_image: reconcile-lab/nginx:latest, drain: 1s, health_timeout: 20s }
"""


def test_a_paused_proxy_is_unpaused_by_heal_as_a_paused_service_is(client, project, tmp_path):
    """Heal unpaused a paused service and started a stopped proxy, but only reported a paused
    proxy ("docker unpause" it), leaving the service's host port dead."""
    spec, env = tmp_path / "bg.yaml", lab_env(project, tmp_path, RECONCILE_HEAL_BACKOFF="0.1")
    spec.write_text(BLUE_GREEN_SPEC)
    assert (made := apply(spec, env)).returncode == 0, show(made)
    proxy = f"{project}-api-proxy"
    client.api.pause(proxy)
    result, report = heal(spec, env)
    assert result.returncode == 0, show(result)
    [fixed] = report["results"]
    assert (fixed["rule"], fixed["action"], fixed["result"]) == ("proxy-paused", "unpause", "fixed"), fixed
    assert client.api.inspect_container(proxy)["State"]["Status"] == "running"
    assert_nothing_left(spec, env)


def test_a_database_on_no_network_is_unreachable_not_probed_on_the_hosts_local_socket(client, worker_stack):
    """Cut off its only network, it has no address: the probe went to PostgreSQL's default
    local socket of this host (another server, sent the spec's password) and said "no such file"."""
    spec, env, _, network = worker_stack
    postgres = f"{env['LAB_PROJECT']}-postgres"
    client.api.disconnect_container_from_network(postgres, network)
    result = cli(spec, env, "health", "postgres", "--json")
    assert result.returncode == 2, show(result)
    found = json.loads(result.stdout)["services"]["postgres"]
    assert found["status"] == "unreachable" and "no IP address" in found["details"]["error"], found
    assert "socket" not in found["details"]["error"], found
