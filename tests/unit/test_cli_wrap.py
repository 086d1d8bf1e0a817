"""Long lines for people: on a terminal wrapped at its width under a hanging indent (the
terminal would break them at column 0, through the plan's symbol column); in a pipe, a file
or a CI log printed whole, one logical line per line, for grep and golden files."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.cells import cell_len
from rich.console import Console
from rich.text import Text

from reconciler.cli import output
from reconciler.cli.wrap import wrap_line, wrap_text
from reconciler.errors import ReconcileError
from reconciler.plan.actions import Action, ActionKind, Change, Plan
from reconciler.plan.render import render_text

ROOT = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;]*m")

RECREATE = ("  ~ recreate  postgres  image reconcile-lab/postgres:15 → reconcile-lab/postgres:17 "
            "(the data directory is kept on volume postgres_data; a backup is taken first)")
FIELD = ("                command: postgres -c max_connections=100 → postgres -c max_connections=200 "
         "-c shared_buffers=256MB")
WARNING = ("  ! postgres is unhealthy (connection refused on 127.0.0.1:5432): apply restarts it once, "
           "and recreates it (with a backup) if that does not help")
LABELLED = "warning: the S3 store answered slowly, so the newest S3 backups may be missing from this list"
HINT = "  hint: pass --auto-approve, or apply a saved plan: reconcile plan --out plan.json && reconcile apply"
ERROR = ("error[spec.unknown-service] reconcile.yaml:5:5: service api depends on unknown service "
         "'payments', which no profile declares")


@pytest.mark.parametrize("line, under", [(RECREATE, "recreate"), (FIELD, "command"), (WARNING, "postgres"),
                                         (LABELLED, "the"), (HINT, "pass"), ("  | " + LABELLED, "warning")])
def test_a_long_line_wraps_under_its_text_and_keeps_every_word(line, under):
    lines = wrap_text(line, 60).splitlines()
    margin = line.index(under)
    assert len(lines) > 1 and all(cell_len(row) <= 60 for row in lines), lines
    assert lines[0].startswith(line[:margin + len(under)])  # its indent and symbol stay as they were
    for row in lines[1:]:
        assert row[:margin] == " " * margin and row[margin] != " ", lines
    assert " ".join(lines).split() == line.split()  # nothing lost, nothing added


def test_an_errors_long_reference_hangs_under_the_message_only_when_there_is_room():
    wide = wrap_text(ERROR, 100).splitlines()
    assert len(wide) > 1 and all(row[:28] == " " * 28 and row[28] != " " for row in wide[1:]), wide
    narrow = wrap_text(ERROR, 60).splitlines()  # under the message would leave 32 columns: 4 instead
    assert narrow[0].startswith("error[spec.unknown-service] reconcile.yaml:5:5:")
    assert all(row.startswith("    ") and row[4] != " " for row in narrow[1:]), narrow
    assert " ".join(narrow).split() == ERROR.split()


def test_a_word_longer_than_the_width_is_folded_never_cut():
    digest = "sha256:" + "0123456789abcdef" * 8
    line = f"  | pulled {digest} for api"
    lines = wrap_text(line, 40).splitlines()
    assert all(cell_len(row) <= 40 for row in lines) and all(row.startswith("    ") for row in lines[1:])
    assert "".join("".join(lines).split()) == "".join(line.split())
    assert digest in "".join(row[4:] for row in lines[1:])


@given(st.text(st.sampled_from("ab →|!~-:[]x  \t\u00a0\u00e9\u4e2d"), max_size=200), st.integers(6, 90),
       st.one_of(st.none(), st.integers(0, 40)))
def test_any_line_fits_its_width_and_keeps_every_character_in_order(line, width, indent):
    rows = wrap_text(line, width, indent).splitlines() or [""]
    assert all(cell_len(row) <= width for row in rows)  # room for a wide character from 6 columns on
    assert "".join("".join(rows).split()) == "".join(line.split())


def test_short_lines_blank_lines_and_several_lines_are_kept():
    assert wrap_text("  + create  api  new service", 60) == "  + create  api  new service"
    assert wrap_text("Plan:\n\n  - remove  old\n", 60) == "Plan:\n\n  - remove  old\n"
    assert wrap_text(f"{WARNING}\n{RECREATE}", 60).splitlines()[0].startswith("  ! postgres")
    assert wrap_text("a\tb", 60) == "a       b"  # a tab is counted as the terminal shows it


def test_styles_carry_over_and_the_first_rows_styles_stay_whole():
    line = Text.assemble(("error", "bold red"), "[spec.unknown-service] ", ERROR[28:])
    rows = wrap_line(line, 60)
    assert [span for span in rows[0].spans if span.style == "bold red"] == [rows[0].spans[0]]
    assert rows[0].spans[0].start == 0 and rows[0].spans[0].end == 5
    coloured = wrap_line(Text(WARNING, style="yellow"), 60)
    assert len(coloured) > 1 and all(row.get_style_at_offset(_console(), len(row.plain) - 1) == _yellow()
                                     for row in coloured)


def _console(width: int = 60) -> Console:
    """A terminal as the CLI's consoles see one (colour, no markup, soft wrap)."""
    return Console(force_terminal=True, width=width, file=io.StringIO(), color_system="standard",
                   highlight=False, markup=False, soft_wrap=True, record=True)


def _yellow():
    from rich.style import Style

    return Style.parse("yellow")


def _plan() -> Plan:
    backup = Action(ActionKind.BACKUP, "postgres", cause="before the recreate (data on volume postgres_data)")
    recreate = Action(ActionKind.RECREATE, "postgres", cause=RECREATE.split("postgres  ", 1)[1],
                      changes=(Change("command", "postgres -c max_connections=100",
                                      "postgres -c max_connections=200 -c shared_buffers=256MB"),))
    return Plan(project="healthcare", actions=(backup, recreate), fingerprint="sha256:0",
                warnings=(WARNING[4:],))


def test_plan_on_a_terminal_fits_its_width_keeps_its_columns_and_colours():
    text = render_text(_plan())
    console = _console()
    output.print_plan_text(text, console)
    shown = console.export_text(clear=False).splitlines()
    assert all(cell_len(row) <= 60 for row in shown) and len(shown) > len(text.splitlines())
    recreate = next(i for i, row in enumerate(shown) if row.startswith("  ~ recreate"))
    assert shown[recreate + 1].startswith("    ") and shown[recreate + 1][4] != " "
    field = next(i for i, row in enumerate(shown) if row.lstrip().startswith("command:"))
    margin = shown[field].index("command:")
    assert shown[field + 1][:margin] == " " * margin and shown[field + 1][margin] != " "
    assert " ".join(shown).split() == text.split()
    styled = console.export_text(styles=True).splitlines()
    assert styled[recreate].startswith("\x1b[33m") and "\x1b[33m" in styled[recreate + 1]  # still yellow
    assert "\x1b[34m" in styled[recreate - 1]  # the backup line keeps its blue


def test_every_plan_symbol_has_the_colour_the_plan_gives_it():
    """Update (^) and switch-traffic (=) lines came out uncoloured, verify (?) grey."""
    console = _console()
    output.print_plan_text("  ^ update  web  restart\n  = switch-traffic  api  x\n  ? verify  db  y", console)
    styled = console.export_text(styles=True).splitlines()
    assert [row[:5] for row in styled] == ["\x1b[33m", "\x1b[36m", "\x1b[34m"]


def test_plan_off_a_terminal_is_byte_for_byte_the_rendered_text(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    text = render_text(_plan())
    output.print_plan_text(text)
    assert capsys.readouterr().out == text
    piped = Console(file=io.StringIO(), highlight=False, markup=False, soft_wrap=True)  # apply's, in CI
    output.print_plan_text(text, piped)
    assert piped.file.getvalue() == text


def test_a_ci_log_that_forces_colour_still_gets_whole_lines(capsys, monkeypatch):
    """FORCE_COLOR makes rich call a pipe a terminal: colour, but a log has no width."""
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "60")
    output.print_line(output.stdout_console(), RECREATE)
    output.print_lines([(WARNING, "yellow")])
    output.echo(LABELLED)
    assert ANSI.sub("", capsys.readouterr().out).splitlines() == [RECREATE, WARNING, LABELLED]


def test_apply_progress_on_a_terminal_wraps_a_failure_under_its_action():
    from reconciler.cli.apply_cmd import TextUI

    ui = TextUI()
    ui.console = _console()
    error = "the new container did not become healthy in 60s: connection refused on 127.0.0.1:5432 (3 tries)"
    ui.emit({"event": "action-end", "status": "failed", "action": "recreate:postgres", "seconds": 61.2,
             "error": error})
    ui.summary({"apply_id": "20261129T041209Z-4fe217", "result": "rolled back", "duration_s": 70.1,
                "actions": [], "warnings": ["the S3 copy of backup 2026-11-29-041210 failed: endpoint unreachable"]})
    shown = ui.console.export_text().splitlines()
    assert shown[0].startswith("FAILED  recreate:postgres (61.2s): the")
    assert all(cell_len(row) <= 60 for row in shown)
    assert shown[1].startswith("        ") and shown[1][8] != " "
    warning = next(i for i, row in enumerate(shown) if row.startswith("  warning: "))
    assert shown[warning + 1].startswith(" " * 11) and shown[warning + 1][11] != " "


def test_apply_progress_off_a_terminal_is_one_line_per_event():
    from reconciler.cli.apply_cmd import TextUI

    ui = TextUI()
    ui.console = Console(file=io.StringIO(), highlight=False, markup=False, soft_wrap=True, width=60)
    ui.emit({"event": "action-end", "status": "failed", "action": "recreate:postgres", "seconds": 1,
             "error": "x " * 60})
    assert ui.console.file.getvalue() == f"FAILED  recreate:postgres (1s): {'x ' * 60}\n"


def test_drift_and_errors_on_a_terminal_wrap_under_their_text(monkeypatch):
    from reconciler.operate import show

    console, errors = _console(), _console()
    monkeypatch.setattr(show, "stdout_console", lambda: console)
    monkeypatch.setattr(output, "stderr_console", lambda: errors)
    reason = "image reconcile-lab/app:1 → reconcile-lab/app:2 (the container runs an image the spec no longer names)"
    show.print_drift({"drifted": [{"service": "api", "reasons": [reason]}], "warnings": [LABELLED[9:]]})
    output.report_error(ReconcileError("apply needs a confirmation and there is no terminal to ask on",
                                       ref="apply.no-terminal", hint=HINT[8:]), as_json=False)
    drift, error = console.export_text().splitlines(), errors.export_text().splitlines()
    assert all(cell_len(row) <= 60 for row in drift + error)
    assert drift[1].startswith("       image") and drift[2].startswith("       ") and drift[2][7] != " "
    assert drift[-1].startswith("         ") and drift[-1][9] != " "  # under the warning's text
    hint = next(i for i, row in enumerate(error) if row.startswith("  hint: "))
    assert error[hint + 1].startswith(" " * 8) and error[hint + 1][8] != " "


def _bad_spec(tmp_path: Path) -> Path:
    spec = tmp_path / "reconcile.yaml"
    spec.write_text("version: 1\nproject: demo\nservices:\n  api:\n    image: app:1\n"
                    "    depends_on: [payments-service-that-no-profile-of-this-spec-declares]\n")
    return spec


def test_the_cli_on_a_real_terminal_wraps_its_error_to_the_width(tmp_path):
    pty = pytest.importorskip("pty")
    env = {**os.environ, "COLUMNS": "60", "NO_COLOR": "1"}
    env.pop("FORCE_COLOR", None)
    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "reconciler", "-f", str(_bad_spec(tmp_path)), "validate"],
                               stdin=follower, stdout=follower, stderr=follower, cwd=ROOT, env=env)
    os.close(follower)
    shown = ANSI.sub("", _read_all(leader).decode()).replace("\r\n", "\n").splitlines()
    assert process.wait(timeout=60) == 1
    assert shown[0].startswith("error[spec.unknown-service]") and len(shown) > 2, shown
    assert all(cell_len(row) <= 60 for row in shown), shown
    assert "payments-service" in "".join(shown)


def test_the_cli_in_a_pipe_prints_its_error_on_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "reconciler", "-f", str(_bad_spec(tmp_path)), "validate"],
                            capture_output=True, text=True, cwd=ROOT, timeout=60,
                            env={**os.environ, "COLUMNS": "60"})
    assert result.returncode == 1
    first, hint = result.stderr.splitlines()
    assert first.startswith("error[spec.unknown-service]") and len(first) > 100
    assert first.endswith("'payments-service-that-no-profile-of-this-spec-declares'") and hint.startswith("  hint:")


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the other side closed (Linux reports EIO)
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)
