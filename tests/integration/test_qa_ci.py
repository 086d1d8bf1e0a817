"""reconcile as CI and cron run it: logs that FORCE_COLOR or TERM=dumb make look like terminals
still get one plain line per step, never a spinner, and whole lines at any COLUMNS."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.integration.apply_support import ROOT, cli, show, wait_for

SPEC = """\
version: 1
project: "{project}"
state_dir: "{state}"
services:
  web:
    image: reconcile-lab/nginx:latest
"""
CURSOR = re.compile(r"\x1b\[(?:\?25[lh]|2K|1A)|\r")  # what a spinner draws with


def _spec(tmp_path: Path, project: str) -> Path:
    path = tmp_path / "reconcile.yaml"
    path.write_text(SPEC.format(project=project, state=tmp_path / "state"))
    return path


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE")}
    return env | extra


def test_apply_in_a_ci_log_that_forces_colour_prints_each_step_and_no_spinner(project, tmp_path):
    spec = _spec(tmp_path, project)
    done = cli(spec, _env(FORCE_COLOR="1", COLUMNS="40"), "apply", "--auto-approve")
    assert done.returncode == 0, show(done)
    assert not CURSOR.search(done.stdout), show(done)
    assert f"    create {project}-web\n" in done.stdout, show(done)
    assert "    start web\n" in done.stdout, show(done)
    history = cli(spec, _env(FORCE_COLOR="1", COLUMNS="40"), "history")
    assert history.returncode == 0, show(history)
    rows = [row for row in history.stdout.splitlines() if row.strip()]
    assert len(rows) == 2 and rows[1].rstrip().endswith("  ok"), show(history)  # one whole line per apply


def test_apply_on_a_dumb_terminal_prints_each_step(project, tmp_path):
    """rich draws no spinner on TERM=dumb, so the step lines are the only progress shown."""
    spec = _spec(tmp_path, project)
    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "reconciler", "-f", str(spec), "apply", "--auto-approve"],
                               stdin=follower, stdout=follower, stderr=follower, cwd=ROOT,
                               env=_env(TERM="dumb", NO_COLOR="1"))
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    shown = b"".join(chunks).decode().replace("\r\n", "\n")
    assert process.wait(timeout=300) == 0, shown
    assert f"    create {project}-web\n" in shown, shown


def test_drift_of_a_plan_apply_would_refuse_exits_1_as_plan_does(client, project, tmp_path):
    """README's exit codes: `plan --detailed-exitcode` and `drift` exit 1 for a plan apply would
    refuse (blocked); 2 would tell cron or CI that an apply fixes it, and apply refuses."""
    spec = _spec(tmp_path, project)
    other = client.containers.run("reconcile-lab/debian:bookworm", ["sleep", "600"], name=f"{project}-web",
                                  detach=True)
    try:
        plan = cli(spec, _env(NO_COLOR="1"), "plan", "--detailed-exitcode")
        assert plan.returncode == 1, show(plan)
        text = cli(spec, _env(NO_COLOR="1"), "drift")
        assert text.returncode == 1, show(text)
        assert "blocked: the name" in text.stdout, show(text)
        as_json = cli(spec, _env(NO_COLOR="1"), "drift", "--json")
        assert as_json.returncode == 1, show(as_json)
        assert json.loads(as_json.stdout)["drift"] is True, show(as_json)
        assert "error[plan.name-taken]" in as_json.stderr, show(as_json)
    finally:
        other.remove(force=True)


# Runs the CLI with heal.diagnose (apply's last read before it changes anything) held: it
# touches the file named first, then sleeps, so a test can stop apply exactly there.
_HOLD_IN_DIAGNOSE = """
import sys, time
from pathlib import Path
from reconciler.apply import heal
marker = Path(sys.argv.pop(1))
def held(session, services):
    marker.touch()
    time.sleep(60)
heal.diagnose = held
from reconciler.cli.launch import main
main()
"""


def _stopped_in_diagnose(spec: Path, marker: Path, *args: str) -> tuple[int, str, str]:
    process = subprocess.Popen([sys.executable, "-c", _HOLD_IN_DIAGNOSE, str(marker), "-f", str(spec), "apply",
                                "--auto-approve", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, cwd=ROOT, env=_env(NO_COLOR="1"))
    wait_for(marker.exists)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def test_apply_stopped_by_a_cancelled_ci_job_before_any_change_says_nothing_was_changed(project, tmp_path):
    spec = _spec(tmp_path, project)
    code, out, err = _stopped_in_diagnose(spec, tmp_path / "diagnosing")
    assert code == 130, (out, err)
    assert "error[interrupted] stopped by SIGTERM: nothing was changed" in err, (out, err)
    code, out, err = _stopped_in_diagnose(spec, tmp_path / "diagnosing-json", "--json")
    assert code == 130, (out, err)
    last = json.loads(out.splitlines()[-1])  # --json: one object per line, the error an event too
    assert (last["event"], last["error"], last["exit_code"]) == ("error", "interrupted", 130), out
    assert last["message"] == "stopped by SIGTERM: nothing was changed", out
    assert cli(spec, _env(NO_COLOR="1"), "plan", "--detailed-exitcode").returncode == 2  # still to create


APP_SPEC = """\
version: 1
project: "{project}"
state_dir: "{state}"
services:
  api:
    image: "reconcile-lab/app:${{env:QAC_APP_VERSION:-1}}"
"""


def _apply_read_one_line(spec: Path, version: str, *args: str) -> tuple[int, str]:
    """apply with a stdout reader that stops after the first line (`| head -1`, a dropped stream)."""
    process = subprocess.Popen([sys.executable, "-m", "reconciler", "-f", str(spec), "apply", "--auto-approve",
                                *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                               env=_env(NO_COLOR="1", QAC_APP_VERSION=version))
    first = process.stdout.readline()
    process.stdout.close()
    err = process.stderr.read()
    return process.wait(timeout=300), first + err


def test_apply_whose_stdout_reader_goes_away_carries_on_and_converges(project, tmp_path):
    """rich raised SystemExit(1) on the first write to the closed pipe, midway through a
    recreate: no rollback caught it, and the service was left stopped with exit 1 and no word."""
    spec = tmp_path / "reconcile.yaml"
    spec.write_text(APP_SPEC.format(project=project, state=tmp_path / "state"))
    first = cli(spec, _env(NO_COLOR="1"), "apply", "--auto-approve")
    assert first.returncode == 0, show(first)
    for version, args in (("2", ()), ("1", ("--json",))):
        code, shown = _apply_read_one_line(spec, version, *args)
        assert code == 0, shown
        plan = cli(spec, _env(NO_COLOR="1", QAC_APP_VERSION=version), "plan", "--detailed-exitcode")
        assert plan.returncode == 0, show(plan)
    history = json.loads(cli(spec, _env(), "history", "--json").stdout)
    assert [record["result"] for record in history] == ["ok", "ok", "ok"], history
