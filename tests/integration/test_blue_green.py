"""Blue-green on the real engine: app 1 → 2 under steady HTTP load through the proxy, a new
version that never gets healthy, a service with no health signal, and kept versions."""

from __future__ import annotations

import json
import textwrap
import urllib.request
from pathlib import Path

import pytest

from bench.zero_downtime import HttpLoad
from reconciler.deploy import nginx
from tests.integration.apply_support import (
    apply,
    cli,
    containers,
    journal_events,
    lab_env,
    show,
)

pytestmark = pytest.mark.engine

SPEC = """\
version: 1
project: "${env:LAB_PROJECT}"
state_dir: "${env:LAB_STATE_DIR}"
networks: { backend: {} }
services:
  api:
    profile: web
    image: "reconcile-lab/app:${env:APP:-1}"
    env: { DATABASE_URL: "${env:DB:-}", RELEASE: "${env:RELEASE:-a}" }
    health: { http: { port: 8000, path: /health }, interval: 500ms }
    deploy:
      strategy: "${env:STRATEGY:-blue-green}"
      proxy_image: "reconcile-lab/nginx:latest"
      drain: 1s
      health_timeout: 8s
    networks: [backend]
    ports: ["127.0.0.1:${env:LAB_API_PORT}:8000"]
  worker:
    profile: jobs
    image: "reconcile-lab/app:${env:APP:-1}"
    command: ["python3", "/app/worker.py"]
    env: { WORKER_INTERVAL: "1" }
    health: { interval: 500ms }
    deploy: { strategy: blue-green, stop_grace: 5s }
    networks: [backend]
  ticker:
    profile: plain
    image: "reconcile-lab/debian:bookworm"
    command: ["sh", "-c", "${env:TICK:-exec sleep 3600}"]
    deploy: { strategy: blue-green, readiness_delay: 1500ms, stop_grace: 1s }
    networks: [backend]
backup: { local: { path: "${env:LAB_BACKUP_DIR}" } }
"""


def stack(tmp_path: Path, project: str) -> tuple[Path, dict]:
    path = tmp_path / "bg.yaml"
    path.write_text(textwrap.dedent(SPEC))
    return path, lab_env(project, tmp_path)


def version_of(env: dict) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{env['LAB_API_PORT']}/", timeout=5) as answer:
        return json.load(answer)["version"]


def done(result) -> list[str]:
    return [line.split()[1] for line in result.stdout.splitlines() if line.startswith("ok  ")]


def served_by(tmp_path: Path) -> str:
    text = (tmp_path / "state" / "proxy" / "api" / nginx.CONF_FILE).read_text()
    return nginx.parse_upstream(text).container_id


def test_deploy_under_load_drops_no_request_and_keeps_the_old_version(client, project, tmp_path):
    spec, env = stack(tmp_path, project)
    first = apply(spec, env, "-p", "web", "-p", "jobs")
    assert first.returncode == 0, show(first)
    assert version_of(env) == "1"
    load = HttpLoad(int(env["LAB_API_PORT"]), rate=150, threads=4, max_seconds=120).start()
    try:
        result = apply(spec, {**env, "APP": "2"}, "-p", "web", "-p", "jobs")
    finally:
        seen = load.stop()
    assert result.returncode == 0, show(result)
    assert done(result) == ["recreate:api", "switch-traffic:api", "recreate:worker"], result.stdout
    assert seen.failed == 0, (seen.errors, seen.sent)
    assert seen.versions["1"] and seen.versions["2"] and seen.rate > 100, seen.versions
    assert version_of(env) == "2"

    boxes = containers(client, project)
    names = {n.rsplit("-", 1)[0] if "-kept-" in n else n for n in boxes}
    assert names == {f"{project}-{s}" for s in ("api", "api-proxy", "api-kept", "worker", "worker-kept")}
    for name, doc in boxes.items():
        if "-kept-" in name:
            assert not doc["State"]["Running"] and doc["Config"]["Image"] == "reconcile-lab/app:1"
            assert doc["HostConfig"]["RestartPolicy"]["Name"] == "no"
    assert boxes[f"{project}-worker"]["Config"]["Image"] == "reconcile-lab/app:2"
    assert boxes[f"{project}-api"]["HostConfig"]["PortBindings"] in ({}, None)
    assert served_by(tmp_path) == boxes[f"{project}-api"]["Id"]
    again = cli(spec, {**env, "APP": "2"}, "plan", "--detailed-exitcode", "-p", "web", "-p", "jobs")
    assert again.returncode == 0, show(again)


def test_a_new_version_that_never_gets_healthy_is_removed_and_traffic_stays(client, project, tmp_path):
    spec, env = stack(tmp_path, project)
    assert apply(spec, env, "-p", "web").returncode == 0
    before = containers(client, project)
    state = tmp_path / "state"
    journals = set((state / "journal").glob("*.jsonl"))
    broken = {**env, "APP": "2", "DB": "postgresql://app:x@127.0.0.1:1/none"}
    load = HttpLoad(int(env["LAB_API_PORT"]), rate=100, threads=2, max_seconds=120).start()
    try:
        result = apply(spec, broken, "-p", "web")
    finally:
        seen = load.stop()
    assert result.returncode == 2, show(result)
    assert "traffic never moved" in result.stderr, show(result)
    assert seen.failed == 0 and set(seen.versions) == {"1"}, (seen.errors, seen.versions)
    after = containers(client, project)
    assert {n: d["Id"] for n, d in after.items()} == {n: d["Id"] for n, d in before.items()}
    assert version_of(env) == "1" and served_by(tmp_path) == after[f"{project}-api"]["Id"]
    events = journal_events(state, journals)
    assert any(e["event"] == "rollback-end" and e["status"] == "ok" for e in events)


def test_without_a_health_signal_the_new_container_must_keep_running(client, project, tmp_path):
    spec, env = stack(tmp_path, project)
    assert apply(spec, env, "-p", "plain").returncode == 0
    live = containers(client, project)[f"{project}-ticker"]["Id"]
    crashing = apply(spec, {**env, "TICK": "sleep 0.3; exit 3"}, "-p", "plain")
    assert crashing.returncode == 2, show(crashing)
    assert {n: d["Id"] for n, d in containers(client, project).items()} == {f"{project}-ticker": live}
    steady = apply(spec, {**env, "TICK": "exec sleep 3601"}, "-p", "plain")
    assert steady.returncode == 0, show(steady)
    assert "must keep running for 1.5s" in steady.stdout
    boxes = containers(client, project)
    assert boxes[f"{project}-ticker"]["State"]["Running"] and boxes[f"{project}-ticker"]["Id"] != live
    assert [d["Id"] for n, d in boxes.items() if "-kept-" in n] == [live]


def test_only_the_last_two_versions_are_kept(client, project, tmp_path):
    spec, env = stack(tmp_path, project)
    live = {}
    for release in "abcd":
        result = apply(spec, {**env, "RELEASE": release}, "-p", "web")
        assert result.returncode == 0, show(result)
        live[release] = containers(client, project)[f"{project}-api"]["Id"]
    assert "older version of api" in result.stdout, result.stdout
    kept = {d["Id"] for n, d in containers(client, project).items() if "-kept-" in n}
    assert kept == {live["b"], live["c"]}
    plan = cli(spec, {**env, "RELEASE": "d"}, "plan", "--detailed-exitcode", "-p", "web")
    assert plan.returncode == 0, show(plan)


def test_switching_strategy_moves_the_host_port_between_the_app_and_its_proxy(client, project, tmp_path):
    spec, env = stack(tmp_path, project)
    plain = {**env, "STRATEGY": "recreate"}
    assert apply(spec, plain, "-p", "web").returncode == 0
    assert set(containers(client, project)) == {f"{project}-api"} and version_of(env) == "1"
    to_green = apply(spec, env, "-p", "web")
    assert to_green.returncode == 0, show(to_green)
    assert "first blue-green deploy" in to_green.stdout
    boxes = containers(client, project)
    assert sorted(n.rsplit("-", 1)[0] if "-kept-" in n else n for n in boxes) == \
        [f"{project}-api", f"{project}-api-kept", f"{project}-api-proxy"]
    assert version_of(env) == "1" and served_by(tmp_path) == boxes[f"{project}-api"]["Id"]
    back = apply(spec, plain, "-p", "web")
    assert back.returncode == 0, show(back)
    assert set(containers(client, project)) == {f"{project}-api"} and version_of(env) == "1"


def test_a_later_failure_says_which_deploys_stay_done(client, project, tmp_path):
    """Only the failed step is undone: exit 2 with "rolled back" alone read as the whole deploy
    undone, while the API served its new version (QA). The error says what stays, and how to
    put it back."""
    spec, env = stack(tmp_path, project)
    assert apply(spec, env, "-p", "web", "-p", "plain").returncode == 0
    result = apply(spec, {**env, "APP": "2", "TICK": "exit 4"}, "-p", "web", "-p", "plain")
    assert result.returncode == 2, show(result)
    assert done(result) == ["recreate:api", "switch-traffic:api"], result.stdout
    assert "already changed by this apply, and kept (only the failed step is undone): api" in result.stderr
    assert "`reconcile rollback api` puts the previous one back" in result.stderr, show(result)
    assert version_of(env) == "2"
