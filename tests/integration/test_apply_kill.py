"""``kill -9`` of apply at each step of a stateful recreate (PostgreSQL 15 → 17): the next
apply converges and every row is still there.

The kill points are the journal's progress lines of that apply, in order: each
``action-begin`` (backup, recreate, restore, verify) and each ``step`` inside them (rename the
old container, stop it, create the fresh volume, create/start the new one, wait, restore,
remove the old one, rename the new one). Case ``k`` holds the apply right after it wrote
its ``k``-th progress line (apply_support.spawn_apply patches the journal in the child), then
kills it with SIGKILL. Lines are written just BEFORE the engine call they announce, so each
case kills exactly between two steps, however fast the steps around it are.
"""

from __future__ import annotations

import os
import signal

import pytest

from tests.integration.apply_support import (
    apply,
    checksum,
    cli,
    containers,
    journal_events,
    lab_env,
    pg_spec,
    psql,
    seed_rows,
    show,
    spawn_apply,
    wait_for,
)

pytestmark = pytest.mark.engine
KILL_POINTS = 15  # progress lines of a 15 → 17 apply (checked below)


def progress(events: list[dict]) -> list[dict]:
    return [e for e in events if e["event"] in ("action-begin", "step")]


@pytest.mark.parametrize("point", range(KILL_POINTS))
def test_kill_at_each_step_then_converge(client, project, tmp_path, point):
    spec, env = pg_spec(tmp_path), lab_env(project, tmp_path)
    assert apply(spec, env).returncode == 0
    name = f"{project}-postgres"
    rows = seed_rows(client, name, rows=2000)
    upgrade = {**env, "LAB_PG_VERSION": "17"}
    state = tmp_path / "state"
    before = set((state / "journal").glob("*.jsonl"))
    process = spawn_apply(spec, upgrade, hold_after=point)
    try:
        reached = wait_for(lambda: len(progress(journal_events(state, before))) > point or process.poll() is not None)
        assert reached and process.poll() is None, f"apply ended before kill point {point}"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    killed_events = journal_events(state, before)
    killed_at = progress(killed_events)[point]
    assert not any(e.get("event") == "finish" for e in killed_events)
    print(f"killed at {killed_at.get('action')}: {killed_at.get('message', 'begin')}")
    result = apply(spec, upgrade)
    assert result.returncode == 0, f"after a kill at {killed_at}:\n{show(result)}"
    assert list(containers(client, project)) == [name]
    assert psql(client, name, "show server_version_num").startswith("17")
    assert checksum(client, name) == rows
    assert cli(spec, upgrade, "plan", "--detailed-exitcode").returncode == 0
    history = cli(spec, upgrade, "history").stdout
    assert "interrupted during" in history, history


def test_the_kill_points_cover_the_whole_recreate(client, project, tmp_path):
    """A full run has exactly ``KILL_POINTS`` progress lines (keeps the loop above honest)."""
    spec, env = pg_spec(tmp_path), lab_env(project, tmp_path)
    assert apply(spec, env).returncode == 0
    seed_rows(client, f"{project}-postgres", rows=10)
    state = tmp_path / "state"
    before = set((state / "journal").glob("*.jsonl"))
    result = apply(spec, {**env, "LAB_PG_VERSION": "17"})
    assert result.returncode == 0, show(result)
    lines = progress(journal_events(state, before))
    assert len(lines) == KILL_POINTS, [(e.get("action"), e.get("message")) for e in lines]


WAIT_HEALTHY = 8  # progress line "wait until postgres is healthy" of the 15 → 17 recreate


def test_sigterm_during_a_recreate_rolls_back_like_ctrl_c(client, project, tmp_path):
    """systemd's stop, a cancelled CI job, `timeout`: SIGTERM. The swap is undone and the old
    server runs on its old data, as after Ctrl-C; never left stopped beside a candidate."""
    spec, env = pg_spec(tmp_path), lab_env(project, tmp_path)
    assert apply(spec, env).returncode == 0
    name = f"{project}-postgres"
    rows = seed_rows(client, name, rows=500)
    old = containers(client, project)[name]["Id"]
    state = tmp_path / "state"
    before = set((state / "journal").glob("*.jsonl"))
    process = spawn_apply(spec, {**env, "LAB_PG_VERSION": "17"}, hold_after=WAIT_HEALTHY)
    try:
        assert wait_for(lambda: len(progress(journal_events(state, before))) > WAIT_HEALTHY)
        held = progress(journal_events(state, before))[WAIT_HEALTHY]
        assert held.get("message", "").startswith("wait until postgres is healthy"), held
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 2
    events = journal_events(state, before)
    [begin] = [e for e in events if e["event"] == "rollback-begin"]
    [end] = [e for e in events if e["event"] == "rollback-end"]
    assert begin["reason"] == "interrupted" and end["status"] == "ok", events[-3:]
    now = containers(client, project)
    assert list(now) == [name] and now[name]["Id"] == old and now[name]["State"]["Running"]
    assert psql(client, name, "show server_version_num").startswith("15")
    assert checksum(client, name) == rows
