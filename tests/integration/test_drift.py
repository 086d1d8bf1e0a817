"""`reconcile drift` against the real engine: hand changes are drift, and the metric names the
service; `reconcile status` shows the same stack on one screen."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest_s3 import free_port
from tests.integration.conftest import materialise

pytestmark = pytest.mark.engine

SPEC = """\
version: 1
project: {project}
networks:
  backend: {}
services:
  cache:
    profile: infrastructure
    kind: redis
    image: reconcile-lab/redis:7
    networks: [backend]
  worker:
    profile: app
    image: reconcile-lab/app:1
    command: ["python3", "/app/worker.py"]
    env: { WORKER_INTERVAL: "5" }
    networks: [backend]
"""


def drift(loaded, *args, env=None):
    metrics = loaded.file.parent / "textfile" / "reconcile.prom"
    result = subprocess.run(
        [sys.executable, "-m", "reconciler", "-f", str(loaded.file), "drift", "--json",
         "--metrics-file", str(metrics), *args],
        capture_output=True, text=True, timeout=120, env={**os.environ, "NO_COLOR": "1", **(env or {})})
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout), metrics.read_text() if metrics.exists() else ""


def metric(text: str, name: str, service: str) -> float:
    match = re.search(rf'^{name}{{project="[^"]+",service="{service}"}} (\S+)$', text, re.M)
    assert match, f"no {name} for {service} in:\n{text}"
    return float(match[1])


def reasons(data: dict, service: str) -> str:
    return " | ".join(next(d["reasons"] for d in data["drifted"] if d["service"] == service))


def test_matching_stack_has_no_drift_and_metrics_say_so(client, write_spec):
    loaded = write_spec(SPEC)
    materialise(client, loaded)
    code, data, text = drift(loaded)
    assert code == 0 and data["drift"] is False and data["drifted"] == []
    assert metric(text, "reconcile_drift", "cache") == 0 and metric(text, "reconcile_drift", "worker") == 0
    assert metric(text, "reconcile_service_health", "cache") == 0


def test_a_metrics_file_that_cannot_be_written_is_an_error_not_a_traceback(client, write_spec):
    loaded = write_spec(SPEC)
    materialise(client, loaded)
    folder = loaded.file.parent / "textfile" / "reconcile.prom"
    folder.mkdir(parents=True)  # a folder where the file should be
    result = subprocess.run([sys.executable, "-m", "reconciler", "-f", str(loaded.file), "drift",
                             "--metrics-file", str(folder)], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "NO_COLOR": "1"})
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "cannot write the metrics to" in result.stderr and "it is a folder" in result.stderr


def test_docker_update_restart_is_drift_of_that_service(client, write_spec, project):
    loaded = write_spec(SPEC)
    materialise(client, loaded)
    client.api.update_container(f"{project}-worker", restart_policy={"Name": "no"})
    code, data, text = drift(loaded)
    assert code == 2 and [d["service"] for d in data["drifted"]] == ["worker"]
    (reason,) = data["drifted"][0]["reasons"]  # once: through the plan's update, not twice
    assert reason == ("live container changed in place (docker update): restart: no → unless-stopped "
                      f"(apply would update it in place; by hand: docker update --restart unless-stopped "
                      f"{project}-worker)")
    assert metric(text, "reconcile_drift", "worker") == 1 and metric(text, "reconcile_drift", "cache") == 0


def test_stopped_and_removed_containers_are_drift(client, write_spec, project):
    loaded = write_spec(SPEC)
    ids = materialise(client, loaded)
    client.api.stop(ids["cache"], timeout=2)
    client.api.remove_container(ids["worker"], force=True)
    code, data, text = drift(loaded)
    assert code == 2
    assert "stopped" in reasons(data, "cache") and "start it" in reasons(data, "cache")
    assert "new service" in reasons(data, "worker") and "create it" in reasons(data, "worker")
    assert metric(text, "reconcile_drift", "cache") == 1 and metric(text, "reconcile_drift", "worker") == 1
    assert metric(text, "reconcile_service_health", "cache") == 2
    assert metric(text, "reconcile_service_health", "worker") == 3


def test_profile_limits_drift_and_metrics(client, write_spec):
    loaded = write_spec(SPEC)
    ids = materialise(client, loaded)
    client.api.stop(ids["worker"], timeout=2)
    code, data, text = drift(loaded, "--profile", "infrastructure")
    assert code == 0 and "worker" not in text


def test_drift_is_notified_once(client, write_spec):
    received = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        loaded = write_spec(SPEC)
        ids = materialise(client, loaded)
        client.api.stop(ids["cache"], timeout=2)
        env = {"RECONCILE_WEBHOOK_URL": f"http://127.0.0.1:{server.server_address[1]}/hook"}
        assert drift(loaded, env=env)[0] == 2
        assert drift(loaded, env=env)[0] == 2
    finally:
        server.shutdown()
        server.server_close()
    assert len(received) == 1
    assert received[0]["event"] == "drift" and "cache" in received[0]["summary"]


def test_engine_down_is_an_error_exit_1(write_spec, tmp_path):
    loaded = write_spec(SPEC)
    result = subprocess.run(
        [sys.executable, "-m", "reconciler", "-f", str(loaded.file), "drift"], capture_output=True,
        text=True, timeout=60, env={**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/none.sock"})
    assert result.returncode == 1 and "cannot reach the Docker engine" in result.stderr


def test_status_shows_each_service_on_one_screen(client, write_spec):
    loaded = write_spec(SPEC)
    ids = materialise(client, loaded)
    client.api.stop(ids["worker"], timeout=2)
    run = [sys.executable, "-m", "reconciler", "-f", str(loaded.file), "status"]
    env = {**os.environ, "NO_COLOR": "1"}
    data = json.loads(subprocess.run([*run, "--json"], capture_output=True, text=True, env=env,
                                     timeout=60, check=True).stdout)
    rows = {r["service"]: r for r in data["services"]}
    assert [r["service"] for r in data["services"]] == ["cache", "worker"]  # infrastructure first
    assert rows["cache"]["state"] == "running" and rows["cache"]["health"] == "healthy"
    assert rows["cache"]["uptime"] and rows["cache"]["restarts"] == 0
    assert rows["worker"]["state"] == "exited" and rows["worker"]["uptime"] is None
    assert rows["cache"]["last_backup"] == {"local": None, "s3": None}
    text = subprocess.run(run, capture_output=True, text=True, env=env, timeout=60, check=True).stdout
    header = text.splitlines()[1]
    for column in ("service", "profile", "image", "state", "health", "uptime", "restarts",
                   "backup local", "backup S3", "last apply"):
        assert column in header
    assert len(text.splitlines()) <= 5


RUNNING_SPEC = """\
version: 1
project: "${env:LAB_PROJECT}"
state_dir: "${env:LAB_STATE_DIR}"
services:
  worker:
    image: reconcile-lab/app:1
    command: ["python3", "/app/worker.py"]
    env: { WORKER_INTERVAL: "1", RELEASE: "${env:RELEASE:-a}" }
    health: { interval: 500ms }
"""


def test_an_apply_in_progress_reads_as_running_not_interrupted_nor_failed(client, project, tmp_path):
    """While an apply holds the lock (its process alive, no finish record yet), status and
    history call it running, and the metrics keep the last apply that ended; once its
    process is gone (killed), it is interrupted."""
    from tests.integration.apply_support import (
        apply,
        cli,
        journal_events,
        lab_env,
        show,
        spawn_apply,
        wait_for,
    )

    spec, env = tmp_path / "worker.yaml", lab_env(project, tmp_path)
    spec.write_text(RUNNING_SPEC)
    assert (first := apply(spec, env)).returncode == 0, show(first)
    state = tmp_path / "state"
    before = set((state / "journal").glob("*.jsonl"))
    process = spawn_apply(spec, {**env, "RELEASE": "b"}, hold_after=0)  # held in recreate:worker
    try:
        wait_for(lambda: any(e["event"] == "action-begin" for e in journal_events(state, before)), timeout=60)
        status = json.loads((found := cli(spec, env, "status", "--json")).stdout or "null")
        assert status["last_apply"]["result"] == "running", show(found)
        assert status["last_apply"]["success"] is None
        history = json.loads(cli(spec, env, "history", "--json").stdout)
        assert [r["result"] for r in history] == ["ok", "running"]
        metrics = tmp_path / "reconcile.prom"
        drift = cli(spec, env, "drift", "--metrics-file", str(metrics), "--json")
        assert drift.returncode == 0, show(drift)  # its candidate is no leftover of an interrupted apply
        report = json.loads(drift.stdout)
        assert report["drifted"] == [] and report["apply_running"] and "an apply is running" in report["warnings"][-1]
        text = metrics.read_text()  # the last apply that ended (the one before) succeeded
        assert re.search(r'^reconcile_last_apply_success\{project="[^"]+"\} 1$', text, re.MULTILINE), text
    finally:
        process.kill()
        process.wait()
    history = json.loads(cli(spec, env, "history", "--json").stdout)
    assert history[-1]["result"].startswith("interrupted during recreate:worker"), history


def test_a_cache_re_run_by_hand_on_every_interface_is_drift(client, write_spec, project):
    """QA: the labels copied (a docker inspect copy, runlike), published on 0.0.0.0 where the
    spec says 127.0.0.1: drift said "No drift"."""
    port = free_port()
    loaded = write_spec(SPEC.replace("    networks: [backend]\n  worker:",
                                     f'    networks: [backend]\n    ports: ["127.0.0.1:{port}:6379"]\n  worker:'))
    ids = materialise(client, loaded)
    assert drift(loaded)[0] == 0  # as made: no drift
    doc = client.api.inspect_container(ids["cache"])
    client.api.remove_container(ids["cache"], force=True)
    again = client.api.create_container(
        doc["Config"]["Image"], labels=doc["Config"]["Labels"], name=doc["Name"].lstrip("/"), ports=[6379],
        host_config=client.api.create_host_config(port_bindings={6379: port}),  # every interface
        networking_config=client.api.create_networking_config(
            {f"{project}_backend": client.api.create_endpoint_config(aliases=["cache"])}))
    client.api.start(again["Id"])
    code, data, _ = drift(loaded)
    assert code == 2 and [d["service"] for d in data["drifted"]] == ["cache"], data
    assert f"published {port}:6379/tcp; not published 127.0.0.1:{port}:6379/tcp" in reasons(data, "cache")
