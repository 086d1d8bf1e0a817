"""`reconcile history`: the recreates heal runs through apply read as `heal`, and the table
fits an 80-column terminal without cutting an id or a result."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from reconciler.apply.journal import Journal, history

SPEC = "version: 1\nproject: shop\nservices:\n  api: { image: a }\n"


def journal(state_dir, apply_id: str, start: dict, result: str | None = "ok", actions: int = 1) -> None:
    log = Journal(state_dir, apply_id)
    log.write("start", project="shop", **start)
    for n in range(actions):
        log.write("action-end", action=f"recreate:api{n}", status="ok")
    if result is not None:
        log.write("finish", result=result, exit_code=0)
    log.close()


def runs(tmp_path) -> None:
    state = tmp_path / ".reconcile"
    journal(state, "20261129T200239Z-349084", {"profiles": [], "saved_plan": "", "actions": ["recreate:api"]})
    journal(state, "20261129T200304Z-4ff736", {"profiles": [], "saved_plan": "", "actions": ["recreate:api"],
                                               "reason": "heal api: restart loop (7 restarts, state restarting)"},
            result="warnings", actions=4)
    journal(state, "20261129T200330Z-55e912", {"command": "rollback", "actions": ["rollback:api"]})


def cli(tmp_path, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "reconcile.yaml").write_text(SPEC)
    return subprocess.run([sys.executable, "-m", "reconciler", "-f", str(tmp_path / "reconcile.yaml"), *args],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "NO_COLOR": "1", "COLUMNS": "80"})


def test_a_run_heal_started_is_listed_as_heal_in_text_and_json(tmp_path):
    runs(tmp_path)
    assert [r.command for r in history(tmp_path / ".reconcile")] == ["apply", "heal", "rollback"]
    found = cli(tmp_path, "history", "--json")
    assert found.returncode == 0, found.stderr
    assert [(r["apply_id"][-6:], r["command"]) for r in json.loads(found.stdout)] == [
        ("349084", "apply"), ("4ff736", "heal"), ("55e912", "rollback")]
    text = cli(tmp_path, "history").stdout.splitlines()
    assert text[2].split()[:2] == ["20261129T200304Z-4ff736", "heal"]


def test_the_table_fits_80_columns_with_two_spaces_between_columns(tmp_path):
    runs(tmp_path)
    found = cli(tmp_path, "history")
    lines = found.stdout.splitlines()
    assert found.returncode == 0 and len(lines) == 4, found.stdout
    assert max(len(line) for line in lines) <= 80, "\n".join(f"{len(x)}: {x}" for x in lines)
    assert lines[0].split() == ["APPLY", "COMMAND", "STARTED", "DURATION", "ACTIONS", "RESULT"]
    assert "DURATION  ACTIONS  RESULT" in lines[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", " ".join(lines[2].split()[2:4]))  # no T, no zone
    assert lines[2].endswith("  4  warnings")


def test_a_long_result_continues_on_indented_lines_within_the_width():
    from reconciler.operate.show import history_lines

    record = {"apply_id": "20261129T200239Z-349084", "command": "rollback", "started": "2026-11-29T20:02:39.622+00:00",
              "duration_s": None, "actions": 12, "result": "interrupted during recreate:healthcare-backend-api-blue"}
    lines = history_lines([record], 80)
    assert max(len(line) for line in lines) <= 80, lines
    assert lines[1].split() == ["20261129T200239Z-349084", "rollback", "2026-11-29", "20:02", "-", "12"]
    assert " ".join(line.strip() for line in lines[2:]) == record["result"]  # nothing cut
    assert all(line.startswith("    ") for line in lines[2:])
    assert history_lines([record], None)[1].endswith("12  " + record["result"])  # a pipe: one line
