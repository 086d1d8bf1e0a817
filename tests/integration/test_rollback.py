"""`reconcile rollback` on the real engine: back to the kept version under load, with the
drift it leaves shown by plan; refusals when there is nothing to go back to."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.zero_downtime import HttpLoad
from tests.integration.apply_support import ROOT, apply, cli, containers, show
from tests.integration.test_blue_green import stack, version_of

pytestmark = pytest.mark.engine
APP = ("-p", "web", "-p", "jobs")


def images(client, project) -> dict[str, str]:
    return {n: d["Config"]["Image"] for n, d in containers(client, project).items() if "-kept-" not in n}


def test_rollback_under_load_switches_back_then_plan_shows_the_drift(client, project, tmp_path):
    spec, env = stack(tmp_path, project)
    new = {**env, "APP": "2"}
    assert apply(spec, env, *APP).returncode == 0
    assert apply(spec, new, *APP).returncode == 0
    load = HttpLoad(int(env["LAB_API_PORT"]), rate=150, threads=4, max_seconds=120).start()
    try:
        result = cli(spec, new, "rollback", "--auto-approve", "--json")
    finally:
        seen = load.stop()
    assert result.returncode == 0, show(result)
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["action"] for e in events if e["event"] == "action-end"] == ["rollback:api", "rollback:worker"]
    assert events[-1]["event"] == "finish" and events[-1]["result"] == "ok"
    assert events[-1]["spec_differs"] == ["api", "worker"]  # the spec still says app:2
    assert seen.failed == 0 and seen.versions["2"] and seen.versions["1"], (seen.errors, seen.versions)
    assert version_of(env) == "1"
    assert images(client, project) == {f"{project}-api": "reconcile-lab/app:1",
                                       f"{project}-api-proxy": "reconcile-lab/nginx:latest",
                                       f"{project}-worker": "reconcile-lab/app:1"}

    plan = cli(spec, new, "plan", "--detailed-exitcode", *APP)
    assert plan.returncode == 2, show(plan)
    lines = [line.split()[:3] for line in plan.stdout.splitlines() if line.startswith("  ")]
    assert [w for w in lines if w and w[0] in "~=-+"] == [
        ["~", "recreate", "api"], ["=", "switch-traffic", "api"], ["~", "recreate", "worker"]], plan.stdout
    again = cli(spec, new, "rollback", "api", "--auto-approve")
    assert again.returncode == 0, show(again)
    assert version_of(env) == "2" and "switched back" in again.stdout
    assert "the spec still describes" not in again.stdout  # back on app:2, which the spec says (QA)
    history = cli(spec, new, "history")
    assert history.stdout.count(" ok") >= 4, history.stdout


def test_rollback_refuses_when_there_is_nothing_to_go_back_to(client, project, tmp_path):
    spec, env = stack(tmp_path, project)
    assert apply(spec, env, "-p", "web").returncode == 0
    nothing = cli(spec, env, "rollback", "api", "--auto-approve")
    assert nothing.returncode == 1 and "no kept version" in nothing.stderr, show(nothing)
    unknown = cli(spec, env, "rollback", "nope", "--auto-approve", "--json")
    assert unknown.returncode == 1 and json.loads(unknown.stdout)["error"] == "rollback.unknown-service"
    no_terminal = cli(spec, env, "rollback")
    assert no_terminal.returncode == 1 and "--auto-approve" in no_terminal.stderr, show(no_terminal)


@pytest.mark.parametrize("as_json", [True, False])
def test_rollback_whose_stdout_reader_goes_away_still_switches_back(client, project, tmp_path, as_json):
    """`rollback … | head -1`: the first write to the closed pipe raised midway through the
    switch (BrokenPipeError with --json, rich's SystemExit without), and the switch was undone
    or cut short. It finishes now; the lines no one reads go nowhere."""
    spec, env = stack(tmp_path, project)
    new = {**env, "APP": "2"}
    assert apply(spec, env, "-p", "web").returncode == 0
    assert apply(spec, new, "-p", "web").returncode == 0
    process = subprocess.Popen([sys.executable, "-m", "reconciler", "-f", str(spec), "rollback", "api",
                                "--auto-approve", *(["--json"] if as_json else [])], cwd=ROOT,
                               env={**new, "NO_COLOR": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = process.stdout.readline()
    process.stdout.close()
    errors = process.stderr.read().decode()
    assert process.wait(timeout=300) == 0, (first, errors)
    assert version_of(env) == "1"
    history = json.loads(cli(spec, new, "history", "--json").stdout)
    assert [r["result"] for r in history] == ["ok", "ok", "ok"], history
