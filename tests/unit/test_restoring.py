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


def test_the_only_fix_said_for_a_service_whose_restore_stopped_is_the_restore_again(tmp_path):
    """diagnose must not tell to start it (`reconcile apply` starts it again / docker start),
    which heal and apply rightly refuse; other services keep their own fixes."""
    from reconciler.operate import diagnose, rules
    from reconciler.operate.facts import ContainerFacts, Facts, ServiceFacts

    path = restoring.begin(tmp_path, "files", "2026-11-29-101010", running=True)
    _orphan(path)
    box = ContainerFacts("c1", "shop-files", "exited", exit_code=0, finished_at="2026-01-05T09:59:00Z")
    other = ContainerFacts("c2", "shop-web", "exited", exit_code=0, finished_at="2026-01-05T09:59:00Z")
    facts = Facts("shop", "2026-01-05T10:00:00Z", services=(
        ServiceFacts("files", "generic", "shop-files", "x", container=box),
        ServiceFacts("web", "generic", "shop-web", "x", container=other)))
    issues = rules.diagnose(facts) + diagnose.interrupted_restores(tmp_path, ["files", "web"])
    found = diagnose.restore_first(issues)
    files = [i for i in found if i.service == "files"]
    assert {i.rule for i in files} == {"container-exited", restoring.RULE}
    for issue in files:
        assert "reconcile restore 2026-11-29-101010 files --yes" in issue.suggested_fix
        assert "docker start" not in issue.suggested_fix and "reconcile apply" not in issue.suggested_fix
    [web] = [i for i in found if i.service == "web"]
    assert "docker start shop-web" in web.suggested_fix


def test_apply_names_only_the_restore_for_a_service_whose_restore_stopped():
    from reconciler.cli.apply_cmd import sick_words
    from reconciler.health import Level, ServiceHealth

    result = ServiceHealth("store", restoring.RULE, Level.CRITICAL, {"backup_id": "2026-11-29-101010"})
    words = sick_words("store", result)
    assert "reconcile restore 2026-11-29-101010 store --yes" in words
    assert "apply neither starts, restarts nor recreates it" in words and "apply restarts it" not in words
    paused = sick_words("worker", ServiceHealth("worker", "paused", Level.CRITICAL, {}))
    assert "unpauses" in paused
