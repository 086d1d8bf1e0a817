"""The record of an in-place restore: there while it runs, an interrupted one once its
process is gone, and a cause heal never starts, restarts or recreates past."""

from __future__ import annotations

import json
import subprocess
import sys

from reconciler.backup import restoring
from reconciler.operate import heal_rules
from reconciler.operate.issues import Issue, Severity


def test_a_running_restore_is_not_interrupted_a_dead_one_is_and_end_clears_it(tmp_path):
    path = restoring.begin(tmp_path, "cache", "2026-11-29-101010", running=True)
    assert path.stat().st_mode & 0o777 == 0o600 and (tmp_path / "restoring").stat().st_mode & 0o777 == 0o700
    assert restoring.interrupted(tmp_path, "cache") is None  # this process still runs it
    record = json.loads(path.read_text())
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    record["owner"]["pid"] = int(dead)
    path.write_text(json.dumps(record))
    found = restoring.interrupted(tmp_path, "cache")
    assert found is not None and found["backup_id"] == "2026-11-29-101010"
    assert "reconcile restore 2026-11-29-101010 cache --yes" in restoring.advice("cache", found)
    assert restoring.end(path) is True
    assert restoring.interrupted(tmp_path, "cache") is None


def _orphan(path) -> None:
    """Make the record's owner a process that is gone, as a killed restore leaves it."""
    record = json.loads(path.read_text())
    record["owner"]["pid"] = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                                                capture_output=True, text=True, check=True).stdout)
    path.write_text(json.dumps(record))


def test_the_state_before_the_first_attempt_is_what_the_last_one_restores(tmp_path):
    """An attempt that failed left the service stopped; the next sees it stopped, yet the one
    that succeeds must start it, since it ran before the first."""
    _orphan(restoring.begin(tmp_path, "files", "2026-11-29-101010", running=True))
    again = restoring.begin(tmp_path, "files", "2026-11-29-101010", running=False)
    assert restoring.end(again) is True
    never = restoring.begin(tmp_path, "files", "2026-11-29-101010", running=False)
    assert restoring.end(never) is False


def test_an_interrupted_restore_blocks_the_start_heal_would_make():
    assert heal_rules.RESTORE_RULE == restoring.RULE
    partial = Issue("files", Severity.CRITICAL, "restore interrupted", "partial", "restore again", restoring.RULE)
    stopped = Issue("files", Severity.CRITICAL, "container stopped", "exited", "start it", "container-stopped")
    fixes = heal_rules.plan_fixes([stopped, partial])
    assert {f.kind for f in fixes} == {heal_rules.FixKind.REPORT}
    assert any("never starts, restarts or recreates" in f.note for f in fixes)
