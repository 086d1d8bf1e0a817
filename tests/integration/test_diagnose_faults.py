"""`reconcile diagnose` against the real engine: each fault is caused for real, then diagnosed.

Set ``RECONCILE_RECORD_CASES=1`` to write each run's facts to ``tests/cases_diagnose/<case>/
facts.json`` when that file does not exist yet: that is how the unit tests' recorded inputs
were made (delete a file to record it again, then check its ``expect.yaml``: pids, ports and
times change).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reconciler import dockerio
from reconciler.errors import EngineError
from reconciler.operate import diagnose
from reconciler.session import Session
from tests.integration.conftest import materialise

pytestmark = pytest.mark.engine

CASES = Path(__file__).resolve().parents[1] / "cases_diagnose"
RECORD = os.environ.get("RECONCILE_RECORD_CASES") == "1"
SECRET = "tok-5e3r3t-31415"

APP = """\
version: 1
project: {project}
networks:
  backend: {}
services:
  web:
    image: reconcile-lab/app:1
    env: { API_TOKEN: "%s" }
    networks: [backend]
""" % SECRET

POSTGRES = """\
version: 1
project: {project}
volumes:
  pgdata: {}
services:
  postgres:
    profile: infrastructure
    kind: postgres
    image: reconcile-lab/postgres:15
    env: { POSTGRES_PASSWORD: "${env:PGPW:-pw-d1agn0se}" }
    volumes: ["pgdata:/var/lib/postgresql/data"]
    stateful: true
"""


def run(loaded, case: str | None = None, services=None) -> diagnose.Diagnosis:
    result = diagnose.run(Session(loaded), services, with_usage=False)
    target = CASES / (case or "-") / "facts.json"
    if RECORD and case and not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(result.facts.to_dict(), indent=2) + "\n")
    return result


def only(result: diagnose.Diagnosis, rule: str, service: str):
    found = [i for i in result.issues if i.rule == rule and i.service == service]
    assert found, f"no {rule} issue for {service}: {[i.to_dict() for i in result.issues]}"
    return found[0]


def wait_for(check, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}")


def state(client, container: str) -> dict:
    doc = client.api.inspect_container(container)
    return {**doc["State"], "RestartCount": doc["RestartCount"]}


def run_cli(loaded, *args, env=None):
    return subprocess.run([sys.executable, "-m", "reconciler", "-f", str(loaded.file), *args],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_COLOR": "1", **(env or {})})


def test_healthy_stack_has_no_issues_and_exit_0(client, write_spec):
    loaded = write_spec(APP)
    materialise(client, loaded)
    result = run_cli(loaded, "diagnose", "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 0, report
    assert report["issues"] == [] and set(report) >= {"timestamp", "issues", "resource_usage", "logs"}
    assert report["resource_usage"]["memory"]["containers"]["web"]["usage_bytes"] > 0
    assert "docker-root" in report["resource_usage"]["disk"]["host"]


def test_stopped_container(client, write_spec):
    loaded = write_spec(APP)
    ids = materialise(client, loaded)
    client.api.stop(ids["web"], timeout=1)
    result = run(loaded, "stopped")
    issue = only(result, "container-exited", "web")
    assert issue.severity == "critical" and "reconcile apply" in issue.suggested_fix
    assert result.exit_code == 2
    cli = run_cli(loaded, "diagnose", "web", "--json")
    assert cli.returncode == 2 and [i["service"] for i in json.loads(cli.stdout)["issues"]] == ["web"]
    unknown = run_cli(loaded, "diagnose", "nope")
    assert unknown.returncode == 1 and "unknown service nope" in unknown.stderr


def test_postgres_killed_with_sigkill(client, write_spec):
    loaded = write_spec(POSTGRES)
    ids = materialise(client, loaded)
    wait_for(lambda: "ready to accept connections" in dockerio.logs(client, ids["postgres"], 5),
             what="postgres to start")
    client.api.kill(ids["postgres"], signal="SIGKILL")
    wait_for(lambda: not state(client, ids["postgres"])["Running"], what="postgres to exit")
    issue = only(run(loaded, "postgres-killed"), "container-exited", "postgres")
    assert issue.severity == "critical" and "137" in issue.details and "SIGKILL" in issue.details
    assert "reconcile apply" in issue.suggested_fix


def test_restart_loop_from_a_bad_command(client, write_spec):
    loaded = write_spec(APP.replace("    networks: [backend]\n", "    networks: [backend]\n"
                                    "    restart: always\n"
                                    "    command: [python3, -c, \"import sys; print('boom'); sys.exit(3)\"]\n"))
    ids = materialise(client, loaded)
    wait_for(lambda: state(client, ids["web"])["RestartCount"] >= 3, what="3 restarts")
    result = run(loaded, "restart-loop")
    issue = only(result, "restart-loop", "web")
    assert issue.severity == "critical" and "log lines" in issue.suggested_fix
    assert any("boom" in line for line in result.report()["logs"]["web"])


def test_full_tmpfs_volume(client, write_spec):
    loaded = write_spec(APP.replace("networks:\n  backend: {}\n", "networks:\n  backend: {}\nvolumes:\n"
                                    "  scratch: { driver_opts: { type: tmpfs, device: tmpfs, o: size=1m } }\n")
                        .replace("    networks: [backend]\n", "    networks: [backend]\n"
                                 "    volumes: [\"scratch:/data\"]\n"))
    ids = materialise(client, loaded)
    result = dockerio.exec_stream(client, ids["web"], ["sh", "-c", "dd if=/dev/zero of=/data/fill bs=64k"])
    assert result.exit_code != 0 and b"No space left" in result.stderr
    issue = only(run(loaded, "volume-full"), "volume-full", "web")
    assert issue.severity == "critical" and "scratch" in issue.details and "0.0 %" in issue.details
    assert "larger" in issue.suggested_fix


def test_host_port_held_by_another_process(client, write_spec):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        loaded = write_spec(APP.replace("    networks: [backend]\n", "    networks: [backend]\n"
                                        f"    ports: [\"127.0.0.1:{port}:8000\"]\n"))
        ids = materialise(client, loaded, start=False)
        with pytest.raises(EngineError):
            dockerio.start(client, ids["web"])
        result = run(loaded, "port-conflict")
    finally:
        holder.close()
    issue = only(result, "port-conflict", "web")
    assert issue.severity == "critical" and str(port) in issue.issue
    assert f"pid {os.getpid()}" in issue.details and "python" in issue.details
    assert "never kills" in issue.suggested_fix
    assert not [i for i in result.issues if i.rule == "container-exited"]  # one cause, said once


def test_network_deleted(client, write_spec, project):
    loaded = write_spec(APP)
    ids = materialise(client, loaded)
    client.api.stop(ids["web"], timeout=1)
    client.api.remove_network(f"{project}_backend")
    with pytest.raises(EngineError):
        dockerio.start(client, ids["web"])
    result = run(loaded, "network-deleted")
    issue = only(result, "network-missing", "web")
    assert issue.severity == "critical" and f"{project}_backend" in issue.details
    assert "reconcile apply" in issue.suggested_fix


def test_oom_killed_by_a_tiny_memory_limit(client, write_spec):
    loaded = write_spec(APP.replace("    networks: [backend]\n", "    networks: [backend]\n"
                                    "    restart: \"no\"\n    mem_limit: 8m\n"
                                    "    command: [python3, -c, \"x = bytearray(64*1024*1024)\"]\n"))
    ids = materialise(client, loaded)
    wait_for(lambda: state(client, ids["web"])["Status"] == "exited", what="the OOM kill")
    result = run(loaded, "oom-killed")
    issue = only(result, "oom-killed", "web")
    assert issue.severity == "critical" and "mem_limit" in issue.suggested_fix and "8m" in issue.suggested_fix
    assert not [i for i in result.issues if i.rule == "container-exited"]


def test_broken_postgres_setting(client, write_spec):
    loaded = write_spec(POSTGRES.replace("    stateful: true\n", "    stateful: true\n"
                                         "    command: [postgres, -c, shared_buffers=bogus]\n"))
    ids = materialise(client, loaded)
    wait_for(lambda: "invalid value" in dockerio.logs(client, ids["postgres"], 5), what="the FATAL line")
    result = run(loaded, "postgres-bad-setting")
    issue = only(result, "config-error", "postgres")
    assert issue.severity == "critical" and "shared_buffers" in issue.details
    assert "shared_buffers" in issue.suggested_fix and "reconcile apply" in issue.suggested_fix
    assert result.exit_code == 2


def test_logs_are_redacted(client, write_spec):
    loaded = write_spec(APP.replace("    networks: [backend]\n", "    networks: [backend]\n"
                                    "    restart: \"no\"\n"
                                    "    command: [sh, -c, \"echo token=$API_TOKEN; exit 4\"]\n"))
    ids = materialise(client, loaded)
    wait_for(lambda: state(client, ids["web"])["Status"] == "exited", what="the exit")
    result = run_cli(loaded, "diagnose", "--json")
    assert result.returncode == 2
    assert SECRET not in result.stdout
    assert "token=***" in json.loads(result.stdout)["logs"]["web"]


def test_unreachable_engine_is_a_critical_issue(write_spec, tmp_path):
    loaded = write_spec(APP)
    result = run_cli(loaded, "diagnose", "--json", env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock"})
    report = json.loads(result.stdout)
    assert result.returncode == 2, result.stderr
    assert [(i["service"], i["severity"], i["rule"]) for i in report["issues"]] == [
        ("engine", "critical", "engine-unreachable")]
    assert "Traceback" not in result.stderr


CACHE = """\
version: 1
project: {project}
services:
  cache:
    kind: redis
    image: reconcile-lab/redis:7
    command: ["redis-server", "--maxmemory", "${env:CACHE_MAX:-2mb}", "--maxmemory-policy", "noeviction"]
"""


def test_a_cache_that_refuses_writes_is_critical_and_one_near_its_limit_a_warning(client, write_spec):
    """QA: a cache at maxmemory with noeviction answered "OOM command not allowed" to every
    write, health called it only degraded, and diagnose and heal found nothing."""
    import redis as redis_py

    from reconciler.engines import container_ip

    loaded = write_spec(CACHE)
    ids = materialise(client, loaded)
    conn = redis_py.Redis(host=container_ip(client.api.inspect_container(ids["cache"])), port=6379)
    wait_for(lambda: conn.ping(), what="the cache to answer")
    conn.config_set("maxmemory", str(int(conn.info("memory")["used_memory"]) + 200_000))
    with pytest.raises(redis_py.exceptions.ResponseError, match="command not allowed when used memory"):
        for i in range(10_000):
            conn.set(f"k{i}", "x" * 1000)
    health = run_cli(loaded, "health", "--json")
    assert health.returncode == 2, health.stdout
    assert "writes are refused" in json.loads(health.stdout)["services"]["cache"]["details"]["error"]
    full = deep_issues(loaded)["memory-full"]
    assert full["severity"] == "critical" and "maxmemory-policy allkeys-lru" in full["suggested_fix"]
    started = state(client, ids["cache"])["StartedAt"]
    healed = run_cli(loaded, "heal", "--json")
    assert healed.returncode == 2 and json.loads(healed.stdout)["results"][0]["result"] == "reported"
    assert state(client, ids["cache"])["StartedAt"] == started and conn.dbsize() > 0  # not restarted
    conn.config_set("maxmemory", str(int(conn.info("memory")["used_memory"] / 0.93)))  # room, but near it
    near = deep_issues(loaded)["probe-degraded"]
    assert near["severity"] == "warning" and "policy noeviction" in near["details"], near


def deep_issues(loaded) -> dict[str, dict]:
    """`reconcile diagnose --json`'s issues (deep probes included) by rule."""
    return {i["rule"]: i for i in json.loads(run_cli(loaded, "diagnose", "--json").stdout)["issues"]}


def test_a_container_of_the_service_s_name_without_labels_is_named_and_never_taken_for_it(client, write_spec, project):
    """QA: `docker run --name <project>-web …` without reconcile's labels: health probed it as
    the service, diagnose said the container was missing, and apply failed on the engine's
    Conflict (exit 2). It is named as what it is, and apply refuses before any change, saying what to do."""
    loaded = write_spec(APP)
    ids = materialise(client, loaded)
    client.api.remove_container(ids["web"], force=True)
    other = client.api.create_container("reconcile-lab/debian:bookworm", ["sleep", "300"], name=f"{project}-web")
    try:
        client.api.start(other["Id"])
        found = deep_issues(loaded)
        assert set(found) == {"name-taken"}, found
        assert other["Id"][:12] in found["name-taken"]["details"]
        assert f"docker rm -f {project}-web" in found["name-taken"]["suggested_fix"]
        health = run_cli(loaded, "health", "--json")
        assert health.returncode == 3, health.stdout  # the service's container is missing: not that one
        applied = run_cli(loaded, "apply", "--auto-approve")  # refused up front, from the plan (exit 1)
        assert applied.returncode == 1 and "error[plan.name-taken]" in applied.stderr, applied.stderr
        assert client.api.inspect_container(f"{project}-web")["Id"] == other["Id"]  # left alone
    finally:
        client.api.remove_container(other["Id"], force=True)
