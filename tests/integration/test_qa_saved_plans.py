"""QA of the CI flow (`plan --out`, then `apply plan.json`), of apply's summary, of `history` and of
what a failed apply leaves: what they count and say must be what happened."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys

import pytest

from tests.integration.apply_support import ROOT, apply, cli, containers, lab_env, show, wait_for
from tests.integration.conftest import purge

pytestmark = pytest.mark.engine


@pytest.fixture()
def project(client):
    """This file's own project names (``qasaved-…``), removed afterwards."""
    name = f"qasaved-{secrets.token_hex(3)}"
    yield name
    purge(client, name)


TWO_WEBS = """\
version: 1
project: "${env:LAB_PROJECT}"
state_dir: "${env:LAB_STATE_DIR}"
services:
  front:
    kind: http
    image: reconcile-lab/nginx:latest
    health: { http: { port: 80, path: /health }, timeout: 20s, interval: 1s }
  back:
    kind: http
    image: reconcile-lab/nginx:latest
    env: { MODE: "${env:QA_MODE:-a}" }
    health: { http: { port: 80, path: /health }, timeout: 20s, interval: 1s }
backup:
  local: { path: "${env:LAB_BACKUP_DIR}" }
"""


def test_a_start_heal_did_first_counts_as_done_in_the_summary_and_history(client, project, tmp_path):
    """The saved plan starts front (stopped by hand) and recreates back. apply's heal starts front
    before the plan runs, and the plan is trimmed of that start: the summary said "1 action(s)
    done" and history 1, of a reviewed plan of 2 that was carried out in full."""
    spec, env = tmp_path / "webs.yaml", lab_env(project, tmp_path)
    spec.write_text(TWO_WEBS)
    assert apply(spec, env).returncode == 0
    client.api.stop(containers(client, project)[f"{project}-front"]["Id"], timeout=5)
    saved, changed = tmp_path / "plan.json", {**env, "QA_MODE": "b"}
    made = cli(spec, changed, "plan", "--out", str(saved))
    assert made.returncode == 0, show(made)
    assert [a["id"] for a in json.loads(saved.read_text())["actions"]] == ["recreate:back", "start:front"]
    result = cli(spec, changed, "apply", str(saved))
    assert result.returncode == 0, show(result)
    assert "ok  start:front (by heal)" in result.stdout, show(result)
    assert "2 action(s) done." in result.stdout, show(result)
    assert containers(client, project)[f"{project}-front"]["State"]["Running"]
    listed = cli(spec, changed, "history", "--json")
    assert listed.returncode == 0, show(listed)
    last = json.loads(listed.stdout)[-1]
    assert last["result"] == "ok" and last["actions"] == 2, last


# The CLI with the journal patched to hold the apply, right after its step "wait until … is
# healthy", until the file named by argv[1] exists: the test acts on the engine meanwhile.
_HOLD_AT_WAIT = """
import os, sys, time
from reconciler.apply import journal
flag, write = sys.argv.pop(1), journal.Journal.write
def held(self, event, **fields):
    write(self, event, **fields)
    if event == "step" and str(fields.get("message", "")).startswith("wait until"):
        deadline = time.monotonic() + 60
        while not os.path.exists(flag) and time.monotonic() < deadline:
            time.sleep(0.05)
journal.Journal.write = held
from reconciler.cli.launch import main
main()
"""


def test_a_swap_whose_last_rename_fails_keeps_the_old_container_the_recovery_names(client, project, tmp_path):
    """QA: the end of a recreate removed the old container, then renamed the new one to the
    service's name; when that rename failed (the engine refused it), the rollback removed the new
    one too and told the operator to `docker rename` and `docker start` the old one, which was
    gone: no container left, and a recovery that could not be done. Here the name is taken
    (a container made by hand while apply waited), so the rename fails every time."""
    spec, env = tmp_path / "webs.yaml", lab_env(project, tmp_path)
    spec.write_text(TWO_WEBS)
    assert apply(spec, env).returncode == 0
    flag, state = tmp_path / "go", tmp_path / "state"
    before = set((state / "journal").glob("*.jsonl"))
    process = subprocess.Popen([sys.executable, "-c", _HOLD_AT_WAIT, str(flag), "-f", str(spec), "apply",
                                "--auto-approve", "--profile", "app"], cwd=ROOT, text=True,
                               env={**env, "QA_MODE": "b"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    intruder = None
    try:
        wait_for(lambda: any("wait until back" in p.read_text()
                             for p in set((state / "journal").glob("*.jsonl")) - before))
        intruder = client.api.create_container("reconcile-lab/debian:bookworm", ["true"], name=f"{project}-back")
        flag.touch()
        out, err = process.communicate(timeout=300)
    finally:
        process.kill() if process.poll() is None else None
        if intruder is not None:
            client.api.remove_container(intruder["Id"], force=True)
    assert process.returncode == 3, f"{out}\n{err}"
    old = next(line.split()[2] for line in err.splitlines() if line.strip().startswith("docker rename"))
    assert old.startswith(f"{project}-back-old-"), err
    assert client.api.inspect_container(old)["Name"] == f"/{old}"  # the container the hint names exists
