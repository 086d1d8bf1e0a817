"""`reconcile heal` against the real engine: each fault is caused for real, healed (or
reported), and then `reconcile apply` must converge once the outside cause is gone.

Every stack is made by `reconcile apply` itself, so its containers carry the labels apply
gives them. Waits between attempts are 0.1 s (``RECONCILE_HEAL_BACKOFF``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.integration.apply_support import (
    apply,
    checksum,
    cli,
    containers,
    lab_env,
    pg_spec,
    psql,
    seed_rows,
    show,
    wait_for,
)

pytestmark = pytest.mark.engine

APP_SPEC = """\
version: 1
project: "${env:LAB_PROJECT}"
state_dir: "${env:LAB_STATE_DIR}"
networks:
  backend: {}
services:
  web:
    image: reconcile-lab/app:1
    networks: [backend]
    ports: ["127.0.0.1:${env:LAB_API_PORT}:8000"]
    health: { timeout: 30s, interval: 1s }
"""
CACHE_SPEC = """\
version: 1
project: "${env:LAB_PROJECT}"
state_dir: "${env:LAB_STATE_DIR}"
services:
  cache:
    kind: redis
    image: reconcile-lab/redis:7
    ports: ["127.0.0.1:${env:LAB_REDIS_PORT}:6379"]
    stateful: true
    health: { timeout: 30s, interval: 1s }
backup:
  local: { path: "${env:LAB_BACKUP_DIR}" }
"""
# The job reads its input in one go: an input larger than its memory limit gets it OOM-killed.
HUNGRY = textwrap.dedent("""\
    import os, sys, threading, time
    sys.path.insert(0, "/app")
    import app
    def job():
        while True:
            if os.path.exists("/load/size"):
                data = bytearray(int(open("/load/size").read()) * 1024 * 1024)
            time.sleep(0.2)
    threading.Thread(target=job, daemon=True).start()
    sys.exit(app.main())
""")
# Broken inside the container's own file system (not the spec, not the data): 8 s after each
# start the entrypoint's leftover child shuts PostgreSQL down, so the engine restarts it.
SABOTAGE = r"""sed -i 's/^    exec "\$@"$/    ( sleep 8; kill -QUIT 1 ) \& exec "$@"/' /usr/local/bin/docker-entrypoint.sh
grep -q 'kill -QUIT 1' /usr/local/bin/docker-entrypoint.sh"""


def heal(spec: Path, env: dict, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    result = cli(spec, env, "heal", "--json", *args)
    try:
        return result, json.loads(result.stdout)
    except ValueError:
        pytest.fail(show(result), pytrace=False)


def diagnose(spec: Path, env: dict, expect: int = 2) -> dict[str, dict]:
    """``reconcile diagnose --json`` (exit ``expect``): its issues by rule."""
    result = cli(spec, env, "diagnose", "--json")
    assert result.returncode == expect, show(result)
    return {i["rule"]: i for i in json.loads(result.stdout)["issues"]}


def by_rule(report: dict) -> dict[str, dict]:
    return {r["rule"]: r for r in report["results"]}


def sh(client, container: str, script: str) -> None:
    run = client.api.exec_create(container, ["sh", "-c", script], user="root")
    out = client.api.exec_start(run["Id"])
    assert client.api.exec_inspect(run["Id"])["ExitCode"] == 0, out


def converges(spec: Path, env: dict) -> None:
    """``apply`` succeeds, and the one after it has nothing left to do."""
    first = apply(spec, env)
    assert first.returncode == 0, show(first)
    again = apply(spec, env)
    assert again.returncode == 0 and again.stdout.strip() == "No changes.", show(again)


@pytest.fixture()
def webhook():
    """A local webhook receiver: its URL and the JSON bodies it got."""
    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


@pytest.fixture()
def app_stack(project, tmp_path):
    spec, env = tmp_path / "app.yaml", lab_env(project, tmp_path, RECONCILE_HEAL_BACKOFF="0.1")
    spec.write_text(APP_SPEC)
    assert (made := apply(spec, env)).returncode == 0, show(made)
    return spec, env, f"{project}-web"


@pytest.fixture()
def pg_stack(client, project, tmp_path):
    spec, env = pg_spec(tmp_path), lab_env(project, tmp_path, RECONCILE_HEAL_BACKOFF="0.1")
    assert (made := apply(spec, env)).returncode == 0, show(made)
    name = f"{project}-postgres"
    return spec, env, name, seed_rows(client, name, rows=2000)


def test_a_stopped_container_is_started(client, app_stack):
    spec, env, name = app_stack
    client.api.stop(name, timeout=1)
    result, report = heal(spec, env)
    assert result.returncode == 0, show(result)
    fixed = by_rule(report)["container-exited"]
    assert (fixed["action"], fixed["result"], fixed["attempts"]) == ("start", "fixed", 1)
    assert report["status"] == "ok" and set(report) >= {"timestamp", "results", "status"}
    assert client.api.inspect_container(name)["State"]["Health"]["Status"] in ("starting", "healthy")
    assert apply(spec, env).stdout.strip() == "No changes."
    log = max((Path(env["LAB_STATE_DIR"]) / "logs").glob("heal-*.jsonl")).read_text()
    assert '"event": "heal"' in log and "attempt 1/3" in log


def test_a_restart_loop_of_a_database_is_recreated_after_a_backup(client, pg_stack):
    spec, env, name, rows = pg_stack
    quiet, _ = heal(spec, env)  # nothing to do; remembers the restart count
    assert quiet.returncode == 0, show(quiet)
    before = client.api.inspect_container(name)["Id"]
    sh(client, name, SABOTAGE)
    client.api.restart(name, timeout=5)
    # twice: one crash the engine recovered from is a warning, not yet a loop
    wait_for(lambda: client.api.inspect_container(name)["RestartCount"] >= 2, timeout=60)
    result, report = heal(spec, env)
    assert result.returncode == 0, show(result)
    loop = by_rule(report)["restart-loop"]
    assert loop["action"] == "recreate" and loop["result"] == "fixed", loop
    assert "backup" in loop["details"] and "verify" in loop["details"], loop
    assert list(Path(env["LAB_BACKUP_DIR"]).rglob("*.json")), "no backup metadata"
    now = containers(client, env["LAB_PROJECT"])
    assert list(now) == [name] and now[name]["Id"] != before
    assert checksum(client, name) == rows
    converges(spec, env)


CANNOT_START = r"""sed -i 's/^    exec "\$@"$/    echo "cannot start" >\&2; exit 1/' /usr/local/bin/docker-entrypoint.sh
grep -q 'cannot start' /usr/local/bin/docker-entrypoint.sh"""


def test_a_database_that_cannot_start_is_left_to_a_person_with_its_data(client, pg_stack):
    """QA: heal recreated a crash-looping cache from its latest backup (apply's fallback, for a
    server that cannot be read), losing every write since, and said "fixed". Heal never puts an
    older backup in place of live data: it reports, and nothing is replaced or removed."""
    spec, env, name, rows = pg_stack
    before = client.api.inspect_container(name)
    sh(client, name, CANNOT_START)
    client.api.restart(name, timeout=5)
    wait_for(lambda: client.api.inspect_container(name)["RestartCount"] >= 2, timeout=60)
    result, report = heal(spec, env)
    assert result.returncode == 2, show(result)
    [loop] = [r for r in report["results"] if r["service"] == "postgres"]  # a probe failing, or a loop
    assert loop["result"] == "reported" and "never puts an older backup in place" in loop["details"], loop
    assert "docker logs" in loop["details"] and "reconcile apply" in loop["details"]
    after = client.api.inspect_container(name)
    assert after["Id"] == before["Id"]
    assert [m["Name"] for m in after["Mounts"]] == [m["Name"] for m in before["Mounts"]]
    assert not list(Path(env["LAB_BACKUP_DIR"]).rglob("*.json")), "no backup stands in for the data"


def test_a_deleted_network_is_recreated_and_the_database_reconnected(client, pg_stack):
    spec, env, name, rows = pg_stack
    before = client.api.inspect_container(name)["Id"]
    client.api.stop(name, timeout=10)
    client.api.remove_network(f"{env['LAB_PROJECT']}_backend")
    result, report = heal(spec, env)
    assert result.returncode == 0, show(result)
    fixed = by_rule(report)["network-missing"]
    assert fixed["action"] == "recreate-network" and fixed["result"] == "fixed", fixed
    assert f"created network {env['LAB_PROJECT']}_backend" in fixed["details"]
    assert client.api.inspect_container(name)["Id"] == before  # kept, with its data: no backup needed
    assert checksum(client, name) == rows
    converges(spec, env)


def test_a_container_cut_off_its_network_is_found_and_reconnected(client, app_stack):
    """``docker network disconnect``: the container runs and looks healthy from the host, but
    nothing on the network can reach it by name. diagnose says so; heal rejoins it, same container."""
    spec, env, name = app_stack
    network = f"{env['LAB_PROJECT']}_backend"
    before = client.api.inspect_container(name)["Id"]
    client.api.disconnect_container_from_network(name, network)
    found = cli(spec, env, "diagnose", "--json")
    assert found.returncode == 2, show(found)
    [issue] = [i for i in json.loads(found.stdout)["issues"] if i["rule"] == "network-detached"]
    assert issue["service"] == "web" and network in issue["details"], issue
    result, report = heal(spec, env)
    assert result.returncode == 0, show(result)
    fixed = by_rule(report)["network-detached"]
    assert fixed["action"] == "recreate-network" and fixed["result"] == "fixed", fixed
    assert f"reconnected {name} to {network}" in fixed["details"], fixed
    doc = client.api.inspect_container(name)
    assert doc["Id"] == before and "web" in doc["NetworkSettings"]["Networks"][network]["Aliases"]
    assert cli(spec, env, "diagnose").returncode == 0


def test_a_held_host_port_is_reported_with_its_holder_who_is_left_alone(client, app_stack):
    spec, env, name = app_stack
    client.api.stop(name, timeout=1)
    port = int(env["LAB_API_PORT"])
    holder = subprocess.Popen([sys.executable, "-c", (
        f"import socket, time; s = socket.socket(); s.bind(('127.0.0.1', {port})); s.listen(); "
        "print('ready', flush=True); time.sleep(600)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        result, report = heal(spec, env)
        assert result.returncode == 2, show(result)
        conflict = by_rule(report)["port-conflict"]
        assert conflict["result"] == "reported" and conflict["attempts"] == 0
        assert f"port {port} is held by pid {holder.pid} (" in conflict["details"]
        assert "stop it, then run `reconcile heal`" in conflict["details"]
        blocked = by_rule(report)["container-exited"]
        assert blocked["result"] == "reported" and "not attempted" in blocked["details"]
        assert holder.poll() is None, "heal must never kill the holder"
        assert client.api.inspect_container(name)["State"]["Status"] == "exited"
    finally:
        holder.kill()
        holder.wait()
    converges(spec, env)


def test_an_oom_killed_container_is_reported_not_restarted(client, project, tmp_path, webhook):
    load = tmp_path / "load"
    load.mkdir()
    url, received = webhook
    spec, env = tmp_path / "hungry.yaml", lab_env(project, tmp_path, RECONCILE_HEAL_BACKOFF="0.1",
                                                  RECONCILE_WEBHOOK_URL=url, RECONCILE_WEBHOOK_FORMAT="json")
    spec.write_text(APP_SPEC.replace("    health:", f"    restart: \"no\"\n    mem_limit: 48m\n"
                                     f"    volumes: [\"{load}:/load:ro\"]\n"
                                     f"    command: {json.dumps(['python3', '-c', HUNGRY])}\n    health:"))
    assert (made := apply(spec, env)).returncode == 0, show(made)
    name = f"{project}-web"
    (load / "size").write_text("256")
    wait_for(lambda: client.api.inspect_container(name)["State"]["OOMKilled"], timeout=60)
    result, report = heal(spec, env)
    assert result.returncode == 2, show(result)
    oom = by_rule(report)["oom-killed"]
    assert oom["result"] == "reported" and "mem_limit" in oom["details"] and "memory" in oom["details"]
    assert client.api.inspect_container(name)["State"]["Status"] == "exited"  # not restarted
    assert heal(spec, env)[0].returncode == 2  # still broken: said once, not again
    assert [(m["event"], m["severity"]) for m in received] == [("critical_health", "critical")]
    assert "heal: 1 critical issue(s) remain: web" == received[0]["summary"]
    (load / "size").unlink()
    converges(spec, env)


def test_apply_heals_a_deleted_network_in_place(client, pg_stack):
    """Apply's "unhealthy, spec unchanged" row goes through the same heal: the network comes
    back and the database is reconnected, not recreated."""
    spec, env, name, rows = pg_stack
    before = client.api.inspect_container(name)["Id"]
    client.api.disconnect_container_from_network(name, f"{env['LAB_PROJECT']}_backend")
    client.api.remove_network(f"{env['LAB_PROJECT']}_backend")
    result = apply(spec, env)
    assert result.returncode == 0, show(result)
    assert "recreating its network" in result.stdout and "recreate:postgres" not in result.stdout
    assert client.api.inspect_container(name)["Id"] == before and checksum(client, name) == rows
    assert apply(spec, env).stdout.strip() == "No changes."


def test_a_database_that_refuses_the_password_is_reported_never_recreated(client, pg_stack):
    """The server runs fine; only the spec's password is not the one it has (rotated in the
    database, or POSTGRES_PASSWORD edited after the data folder was made, which the image
    ignores). A recreate would bring back the last backup over newer rows: never."""
    spec, env, name, _ = pg_stack
    assert (backup := cli(spec, env, "backup")).returncode == 0, show(backup)
    psql(client, name, "insert into users select g, 'after the backup' from generate_series(10001, 10050) g")
    rows = checksum(client, name)
    before = client.api.inspect_container(name)
    psql(client, name, "alter user postgres password 'rotated-by-the-dba'")
    found = diagnose(spec, env)  # what heal is about to report, said without doing anything
    assert found["credentials-refused"]["service"] == "postgres" and "password" in found[
        "credentials-refused"]["suggested_fix"], found
    result, report = heal(spec, env)
    assert result.returncode == 2, show(result)
    refused = by_rule(report)["credentials-refused"]
    assert refused["result"] != "fixed" and refused["action"] in ("none", "report"), refused
    assert "password" in refused["details"], refused
    applied = apply(spec, env)  # apply heals what it finds unhealthy: not this
    assert applied.returncode == 1 and "turns down the spec's credentials" in applied.stdout, show(applied)
    after = client.api.inspect_container(name)
    assert (after["Id"], after["State"]["StartedAt"]) == (before["Id"], before["State"]["StartedAt"])
    assert checksum(client, name) == rows


def test_a_cache_that_refuses_the_password_is_critical_in_diagnose_as_in_health_and_heal(client, project,
                                                                                          tmp_path):
    """``CONFIG SET requirepass``: the container runs and Docker sees nothing wrong, but the spec's
    (empty) password is turned down. health says ``refused``; diagnose must say so too (it
    probes like heal does), and neither diagnose nor heal touches the container."""
    spec, env = tmp_path / "cache.yaml", lab_env(project, tmp_path, RECONCILE_HEAL_BACKOFF="0.1")
    spec.write_text(CACHE_SPEC)
    assert (made := apply(spec, env)).returncode == 0, show(made)
    name = f"{project}-cache"
    assert diagnose(spec, env, expect=0) == {}
    sh(client, name, "redis-cli CONFIG SET requirepass other-password")
    before = client.api.inspect_container(name)
    health = cli(spec, env, "health", "--json")
    assert health.returncode == 2 and json.loads(health.stdout)["services"]["cache"]["status"] == "refused", \
        show(health)
    found = diagnose(spec, env)
    refused = found["credentials-refused"]
    assert (refused["service"], refused["severity"], refused["issue"]) == ("cache", "critical",
                                                                         "credentials refused"), refused
    assert "password" in refused["suggested_fix"] and set(found) == {"credentials-refused"}, found
    text = cli(spec, env, "diagnose")
    assert text.returncode == 2 and "credentials refused" in text.stdout, show(text)
    assert "No issues found" not in text.stdout, show(text)
    result, report = heal(spec, env)
    assert result.returncode == 2, show(result)
    healed = by_rule(report)["credentials-refused"]
    assert healed["result"] == "reported" and healed["issue"] == refused["issue"], healed
    after = client.api.inspect_container(name)
    assert (after["Id"], after["State"]["StartedAt"]) == (before["Id"], before["State"]["StartedAt"])


def test_a_paused_service_is_critical_is_drift_and_apply_and_heal_unpause_it(client, app_stack):
    """``docker pause``: "running" to the engine, frozen inside. Its own published port is no
    conflict; drift reports it; apply and heal unpause it (the same process, nothing restarted)."""
    spec, env, name = app_stack
    started = client.api.inspect_container(name)["State"]["StartedAt"]
    client.api.pause(name)
    health = cli(spec, env, "health", "--json")
    assert health.returncode == 2, show(health)
    assert json.loads(health.stdout)["services"]["web"]["status"] == "paused"
    found = diagnose(spec, env)
    assert set(found) == {"container-paused"}, found  # not a port conflict with its own docker-proxy
    assert f"docker unpause {name}" in found["container-paused"]["suggested_fix"]
    drift = cli(spec, env, "drift", "--json")
    assert drift.returncode == 2, show(drift)
    assert "container paused" in json.loads(drift.stdout)["drifted"][0]["reasons"][0]
    applied = apply(spec, env)
    assert applied.returncode == 0 and f"unpaused {name}" in applied.stdout, show(applied)
    state = client.api.inspect_container(name)["State"]
    assert (state["Status"], state["StartedAt"]) == ("running", started)
    client.api.pause(name)
    result, report = heal(spec, env)
    assert result.returncode == 0, show(result)
    fixed = by_rule(report)["container-paused"]
    assert (fixed["action"], fixed["result"]) == ("unpause", "fixed"), fixed
    state = client.api.inspect_container(name)["State"]
    assert (state["Status"], state["StartedAt"]) == ("running", started)
    assert cli(spec, env, "drift").returncode == 0
    converges(spec, env)


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
    deploy:
      strategy: blue-green
      proxy_image: reconcile-lab/nginx:latest
      drain: 1s
      health_timeout: 20s
"""


@pytest.fixture()
def bg_stack(project, tmp_path):
    spec, env = tmp_path / "bg.yaml", lab_env(project, tmp_path, RECONCILE_HEAL_BACKOFF="0.1")
    spec.write_text(BLUE_GREEN_SPEC)
    assert (made := apply(spec, env)).returncode == 0, show(made)
    return spec, env, f"{project}-api"


def answers(env: dict) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{env['LAB_API_PORT']}/health", timeout=3) as reply:
            return reply.status == 200
    except OSError:
        return False


def test_a_stopped_blue_green_service_is_started_its_proxy_on_the_port_is_no_conflict(client, bg_stack):
    """The host port of a blue-green service is published by the project's own proxy: not a
    port conflict that blocks the start."""
    spec, env, name = bg_stack
    client.api.stop(name, timeout=1)
    found = diagnose(spec, env)
    assert set(found) == {"container-exited"}, found
    result, report = heal(spec, env)
    assert result.returncode == 0, show(result)
    assert (by_rule(report)["container-exited"]["result"]) == "fixed", report
    assert wait_for(lambda: answers(env), timeout=30)
    converges(spec, env)


def test_a_stopped_or_detached_proxy_is_critical_and_heal_brings_it_back(client, bg_stack):
    """The app container runs and answers, but its proxy (which holds the host port) is
    stopped, then cut off the network: health, status and diagnose say so, heal fixes it."""
    spec, env, name = bg_stack
    proxy, network = f"{name}-proxy", f"{env['LAB_PROJECT']}_backend"
    client.api.stop(proxy, timeout=1)
    health = cli(spec, env, "health", "--json")
    assert health.returncode == 2, show(health)
    assert json.loads(health.stdout)["services"]["api"]["status"] == "proxy-stopped"
    rows = json.loads(cli(spec, env, "status", "--json").stdout)["services"]
    assert rows[0]["health"] == "proxy-stopped"
    found = diagnose(spec, env)
    assert set(found) == {"proxy-stopped"} and proxy in found["proxy-stopped"]["details"], found
    result, report = heal(spec, env)
    assert result.returncode == 0 and by_rule(report)["proxy-stopped"]["result"] == "fixed", show(result)
    assert client.api.inspect_container(proxy)["State"]["Running"]
    assert wait_for(lambda: answers(env), timeout=30)
    client.api.disconnect_container_from_network(proxy, network)
    assert not answers(env)
    found = diagnose(spec, env)
    assert set(found) == {"proxy-detached"} and network in found["proxy-detached"]["details"], found
    result, report = heal(spec, env)
    assert result.returncode == 0, show(result)
    assert f"reconnected {proxy} to {network}" in by_rule(report)["proxy-detached"]["details"], report
    assert wait_for(lambda: answers(env), timeout=30)
    assert cli(spec, env, "health").returncode == 0
    converges(spec, env)
