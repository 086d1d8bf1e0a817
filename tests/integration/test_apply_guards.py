"""What stops an apply before it destroys anything: failed backups, the lock, a stale plan."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.conftest_s3 import S3Endpoint, closed_port
from tests.integration.apply_support import (
    ROOT,
    apply,
    checksum,
    cli,
    containers,
    lab_env,
    pg_spec,
    pg_stack,
    show,
)

pytestmark = pytest.mark.engine
CREDENTIALS = S3Endpoint("unused").environ  # S3 is down: any credentials will do


@pytest.fixture()
def stack(client, project, tmp_path):
    return pg_stack(client, project, tmp_path, rows=200)


def untouched(client, project, name, before_id, rows):
    now = containers(client, project)
    assert list(now) == [name] and now[name]["Id"] == before_id and now[name]["State"]["Running"]
    assert checksum(client, name) == rows


def test_s3_down_and_required_stops_before_anything_is_stopped(client, project, stack):
    spec, env, name, rows = stack
    before = containers(client, project)[name]["Id"]
    down = {**env, **CREDENTIALS, "S3_ENABLED": "true", "S3_REQUIRED": "true",
            "S3_ENDPOINT": f"http://127.0.0.1:{closed_port()}", "PG_TUNING": "b"}
    result = apply(spec, down)
    assert result.returncode == 2, show(result)
    assert "nothing was stopped or removed" in result.stderr
    untouched(client, project, name, before, rows)


def test_s3_down_but_not_required_proceeds_with_a_warning(client, project, stack):
    spec, env, name, rows = stack
    down = {**env, **CREDENTIALS, "S3_ENABLED": "true", "S3_REQUIRED": "false",
            "S3_ENDPOINT": f"http://127.0.0.1:{closed_port()}", "PG_TUNING": "b"}
    result = apply(spec, down)
    assert result.returncode == 1, show(result)
    assert "warning: S3 copy failed" in result.stdout and "ok  verify:postgres" in result.stdout
    assert checksum(client, name) == rows


def test_unwritable_backup_folder_stops_before_anything_is_stopped(client, project, stack, tmp_path):
    spec, env, name, rows = stack
    before = containers(client, project)[name]["Id"]
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a regular file where the backup folder's parent should be\n")
    result = apply(spec, {**env, "LAB_BACKUP_DIR": str(blocker / "backups"), "PG_TUNING": "b"})
    assert result.returncode == 2, show(result)
    assert "nothing was stopped or removed" in result.stderr
    untouched(client, project, name, before, rows)


HOLD = """
import sys, time
from pathlib import Path
from reconciler.apply.lock import ApplyLock
with ApplyLock(Path(sys.argv[1]), "held-by-test", project=sys.argv[3] if len(sys.argv) > 3 else ""):
    print("held", flush=True)
    if sys.argv[2] == "-":  # until the test says (a line on stdin): however slow the machine is
        sys.stdin.readline()
    else:
        time.sleep(float(sys.argv[2]))
"""


def test_a_second_apply_stops_or_waits_for_the_lock(project, tmp_path, client):
    spec, env = pg_spec(tmp_path), lab_env(project, tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "state"), "6"],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        busy = apply(spec, env)
        assert busy.returncode == 1, show(busy)
        assert "another apply holds the lock" in busy.stderr and "--lock-wait" in busy.stderr
        assert containers(client, project) == {}
        started = time.monotonic()
        waited = apply(spec, env, "--lock-wait", "2m")
        assert waited.returncode == 0, show(waited)
        assert time.monotonic() - started >= 2
    finally:
        holder.kill()
        holder.wait()


def test_an_apply_of_the_project_from_another_state_dir_holds_it_off(project, tmp_path, client):
    """Two checkouts of one stack, each with its own state dir: still one apply at a time, a
    plan says an apply is running, and a queued apply says what it waits for."""
    spec, env = pg_spec(tmp_path), lab_env(project, tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "other-checkout"), "-", project],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        busy = apply(spec, env)
        assert busy.returncode == 1, show(busy)
        assert f"another apply of project {project} on this engine holds the lock" in busy.stderr
        planned = cli(spec, env, "plan")
        assert planned.returncode == 0 and "an apply is running" in planned.stdout, show(planned)
        restore = cli(spec, env, "restore", "latest", "--yes")  # restores take turns with applies too
        assert restore.returncode == 1 and "another apply of project" in restore.stderr, show(restore)
        healed = cli(spec, env, "heal", "--lock-wait", "1s")  # heal too, and it has the option its hint names
        assert healed.returncode == 1 and "(waited 1s)" in healed.stderr, show(healed)
        assert "waiting up to 1s for another apply to finish" in healed.stdout, show(healed)
        # released only once the queued apply says it waits (a fixed hold ran out first under load)
        waited = subprocess.Popen([sys.executable, "-m", "reconciler", "-f", str(spec), "apply", "--auto-approve",
                                   "--lock-wait", "2m"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, cwd=ROOT, env=env)
        seen = []
        for line in waited.stdout:
            seen.append(line)
            if "waiting up to 120s for another apply to finish" in line:
                holder.stdin.write("release\n")
                holder.stdin.flush()
                break
        seen.append(waited.stdout.read())
        assert waited.wait(timeout=300) == 0, "".join(seen)
        assert any("waiting up to 120s" in line for line in seen), "".join(seen)
        assert containers(client, project)
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_saved_plan_is_refused(client, project, stack, tmp_path):
    spec, env, name, _ = stack
    saved = tmp_path / "plan.json"
    result = cli(spec, {**env, "PG_TUNING": "b"}, "plan", "--out", str(saved))
    assert result.returncode == 0, show(result)
    client.api.restart(name, timeout=5)  # same container, but the engine moved: new start
    client.api.stop(name, timeout=5)
    stale = cli(spec, {**env, "PG_TUNING": "b"}, "apply", str(saved))
    assert stale.returncode == 1, show(stale)
    assert "plan is stale: run plan again" in stale.stderr
    assert not containers(client, project)[name]["State"]["Running"]


def test_without_a_terminal_apply_asks_for_auto_approve(project, tmp_path):
    spec, env = pg_spec(tmp_path), lab_env(project, tmp_path)
    result = cli(spec, env, "apply")  # stdin is not a terminal under subprocess
    assert result.returncode == 1 and "--auto-approve" in result.stderr, show(result)


def test_json_mode_prints_one_event_per_line(client, project, stack, tmp_path):
    spec, env, name, _ = stack
    result = cli(spec, {**env, "PG_TUNING": "b"}, "apply", "--auto-approve", "--json")
    assert result.returncode == 0, show(result)
    events = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "plan" and kinds[1] == "start" and kinds[-1] == "finish"
    assert events[-1]["result"] == "ok" and events[-1]["backups"][0]["service"] == "postgres"
    stale = cli(spec, env, "apply", "--json", str(tmp_path / "missing.json"))
    assert json.loads(stale.stdout.splitlines()[-1])["event"] == "error" and stale.returncode == 1
