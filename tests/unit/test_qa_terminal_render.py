"""What reaches a terminal or a CI log: no escape codes a value or a container's log carried
in, and none at all when NO_COLOR asks for plain text."""

from __future__ import annotations

import re

from reconciler.cli import output
from reconciler.errors import ReconcileError
from reconciler.operate.logscan import readable_logs
from reconciler.plan.actions import Action, ActionKind, Change, Plan
from reconciler.plan.render import render_markdown, render_text

ESCAPE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # any control character but a tab or line break
LABEL = "red \x1b[31mALERT\x1b[0m \x1b]0;pwned\x07 up\x1b[1A\x1b[2K\nsecond"


def _plan() -> Plan:
    change = Change("labels.note", "old", LABEL)
    action = Action(ActionKind.RECREATE, "web", "labels.note changed", (change,))
    return Plan(project="p", actions=(action,), fingerprint="sha256:0", warnings=(f"odd label {LABEL}",))


def test_a_label_with_terminal_codes_is_shown_escaped_on_its_own_line_in_the_plan():
    text = render_text(_plan())
    assert not ESCAPE.search(text), repr(text)  # was: the codes reached the terminal (a cursor-up hid a line)
    change = next(line for line in text.splitlines() if "labels.note:" in line)
    assert change.endswith(r"red \x1b[31mALERT\x1b[0m \x1b]0;pwned\x07 up\x1b[1A\x1b[2K\nsecond"), change
    assert r"odd label red \x1b[31mALERT" in text


def test_a_label_with_terminal_codes_is_shown_escaped_in_the_markdown_plan():
    markdown = render_markdown(_plan())
    assert not ESCAPE.search(markdown), repr(markdown)
    assert r"\x1b[31mALERT" in markdown


def test_container_log_text_loses_its_terminal_codes_and_keeps_its_words():
    raw = ("\x1b[31mERROR\x1b[0m boom \x1b]0;pwned\x07done\r\n\x1b(Bplain\x1bc\ttab \x1b]8;;http://x\x1b\\link"
           "\x1b]8;;\x1b\\ \x00\x9b6n end\x1b")
    text = readable_logs(raw)
    assert text == "ERROR boom done\r\nplain\ttab link \\x00\\x9b6n end", repr(text)
    assert readable_logs("Grüße 東京 🎉\nnext") == "Grüße 東京 🎉\nnext"


def test_no_color_gives_no_escape_codes_even_where_force_color_makes_a_pipe_a_terminal(capsys, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("FORCE_COLOR", "1")
    output.report_error(ReconcileError("unknown service nosuch", ref="health.unknown-service",
                                       hint="services: web"), as_json=False)
    errors = capsys.readouterr().err
    assert "\x1b" not in errors, repr(errors)  # was: the escape codes of a bold "error"
    assert errors.startswith("error[health.unknown-service] unknown service nosuch\n  hint: services: web")


def test_diagnose_shows_no_log_lines_for_a_service_that_has_no_container():
    from pathlib import Path

    from ruamel.yaml import YAML

    from reconciler.operate import rules
    from reconciler.operate.diagnose import failing_logs
    from reconciler.operate.facts import Facts

    case = YAML(typ="safe").load((Path(__file__).parents[1] / "cases_diagnose" / "image-missing" / "case.yaml")
                                 .read_text())
    facts = Facts.from_dict(case["facts"])
    logs = failing_logs(facts, rules.diagnose(facts))
    assert "api" not in logs, logs  # was: "last log lines of api: (no output)" for a container never made


def test_a_running_apply_whose_lock_names_nobody_yet_reads_holder_unknown(tmp_path):
    import fcntl

    from reconciler.apply.lock import held_by

    with open(tmp_path / "apply.lock", "w") as held:  # taken, its holder not written yet
        fcntl.flock(held, fcntl.LOCK_EX)
        holder = held_by(tmp_path)
    assert holder is not None and holder.describe() == "holder unknown"  # was: "?@? pid 0 since ?"


WARNED = {"event": "warning", "message": "S3 copy failed (local backup 2026-11-30-054330 is fine): endpoint down"}


def test_a_warning_during_apply_says_it_is_one_in_a_log_without_colour():
    import io

    from rich.console import Console

    from reconciler.cli.apply_cmd import TextUI

    ui = TextUI()
    ui.console = Console(file=io.StringIO(), highlight=False, markup=False, soft_wrap=True, no_color=True)
    ui.emit(WARNED)
    assert ui.console.file.getvalue() == f"warning: {WARNED['message']}\n"  # was: the bare message, like a step


def test_a_warning_during_heal_says_it_is_one():
    import io

    from reconciler.cli.operate_cmd import _HealPrinter

    stream = io.StringIO()
    _HealPrinter(stream).event(WARNED)
    assert stream.getvalue() == f"    warning: {WARNED['message']}\n"


def test_validate_counts_one_service_in_the_singular(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    spec = tmp_path / "reconcile.yaml"
    spec.write_text("version: 1\nproject: demo\nservices:\n  web:\n    image: app:1\n")
    done = subprocess.run([sys.executable, "-m", "reconciler", "-f", str(spec), "validate"], capture_output=True,
                          text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{spec}: valid (1 service, project demo).\n"  # was: "1 services"


def _bar_line(label: str, width: int) -> str:
    import io

    from rich.console import Console
    from rich.progress import Progress

    from reconciler.cli.progress import bar_columns

    clock = [0.0]
    console = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    progress = Progress(*bar_columns(width), console=console, get_time=lambda: clock[0])
    task = progress.add_task(label, total=3_000_000_000)
    for step in range(1, 6):
        clock[0] = step
        progress.update(task, completed=step * 123_400_000)
    console.print(progress.make_tasks_table(progress.tasks))
    return console.file.getvalue()


def test_a_progress_bar_of_a_long_service_name_keeps_its_numbers_on_one_line():
    long = "restoring cache-for-the-appointments-reminder-service-in-the-eu-region"
    for width in (60, 80):
        shown = _bar_line(long, width)
        assert shown.count("\n") == 1, shown  # was: the numbers folded to "1…", "?" on a second line
        assert shown.startswith("restoring cache-for") and "…" in shown, shown
        assert shown.rstrip().endswith("0.6/3.0 GB 123.4 MB/s 0:00:20"), shown
    assert _bar_line(long, 120).startswith(long + " ")  # room enough: whole
    assert _bar_line("backing up postgres", 60).startswith("backing up postgres ")


def test_a_health_probe_output_loses_its_terminal_codes():
    from reconciler.operate.collect import container_facts
    from reconciler.operate.redact import Redactor

    doc = {"Id": "c1", "Name": "/p-web", "State": {"Status": "running", "Running": True, "Health": {
        "Status": "unhealthy", "FailingStreak": 3,
        "Log": [{"ExitCode": 1, "Output": "\x1b[31mcurl: (7) refused\x1b[0m\x1b]0;t\x07\n", "End": ""}]}}}
    facts = container_facts(doc, Redactor([]))
    assert facts.health_log[-1].output == "curl: (7) refused"  # was: the colour codes, shown by diagnose
