"""`plan --markdown` shows every value as it is: a reviewer reads the same command the spec
has, backticks and Markdown punctuation included. Checked by rendering it as GitHub would
(markdown-it's CommonMark with GFM tables)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from reconciler.plan.actions import Action, ActionKind, Change, Plan
from reconciler.plan.render import render_markdown

ROOT = Path(__file__).resolve().parents[2]
VALUES = [
    "echo `x` && nginx -g 'daemon off;'",
    "a `` b ``` c",
    "`starts and ends with a backtick`",
    "``",
    "  spaces at both ends  ",
    "*bold* _em_ [link](x) <b>html</b> ~~del~~ &amp; a | b \\ back\\slash",
    "",
]


def rendered_cells(markdown: str) -> list[list[str]]:
    """The text of each table body cell, as a GFM renderer shows it (code spans unwrapped)."""
    tokens = MarkdownIt("commonmark").enable("table").parse(markdown)
    rows, row = [], None
    for token in tokens:
        if token.type == "tr_open":
            row = []
        elif token.type == "tr_close":
            rows.append(row)
            row = None
        elif token.type == "inline" and row is not None:
            row.append("".join(child.content for child in token.children
                               if child.type in ("text", "code_inline", "html_inline")))
    return rows


def plan_with(*changes: Change, cause: str = "command changed") -> Plan:
    action = Action(ActionKind.RECREATE, "api", cause=cause, changes=changes)
    return Plan(project="p", actions=(action,), fingerprint="sha256:0")


@pytest.mark.parametrize("value", VALUES)
def test_a_field_value_reads_exactly_as_in_the_spec(value):
    markdown = render_markdown(plan_with(Change("command", "old", value)))
    field_rows = [row for row in rendered_cells(markdown) if len(row) == 4 and row[1] == "command"]
    assert field_rows == [["api", "command", "old", value]], markdown


def test_backticks_are_not_turned_into_quotes():
    markdown = render_markdown(plan_with(Change("command", "echo 'x'", "echo `x`")))
    assert "| `echo 'x'` | `` echo `x` `` |" in markdown  # a space pads a backtick at an end


@pytest.mark.parametrize("cause", [
    "command sh -c \"echo `x` *bold* <b>html</b>\" → nginx",
    "label a_b_ _c_ [x] ~~y~~ \\ | z",
])
def test_a_cause_reads_exactly_as_in_the_text_plan(cause):
    markdown = render_markdown(plan_with(cause=cause))
    action_rows = [row for row in rendered_cells(markdown) if len(row) == 4 and row[1] == "recreate"]
    assert action_rows == [["~", "recreate", "api", cause]], markdown
    assert "<b>" not in markdown


def test_a_value_with_a_newline_stays_in_its_row():
    markdown = render_markdown(plan_with(Change("command", "a\nb", "c")))
    assert ["api", "command", "a b", "c"] in rendered_cells(markdown)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reconciler", "-f", "specs/lab.yaml", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "DOCKER_HOST": "unix:///nonexistent.sock"})


@pytest.mark.parametrize("args", [("plan", "--json", "--markdown"), ("plan", "--markdown", "--json")])
def test_json_and_markdown_together_is_a_usage_error_as_json(args):
    result = run(*args)
    assert result.returncode == 1, result  # never 2, which CI reads as "changes"
    error = json.loads(result.stdout)
    assert error["error"] == "usage" and "--json and --markdown" in error["message"]


def test_json_and_markdown_together_is_a_usage_error_before_any_work(tmp_path):
    out = tmp_path / "plan.json"
    result = subprocess.run([sys.executable, "-m", "reconciler", "-f", "specs/lab.yaml", "plan", "--markdown",
                             "--detailed-exitcode", "--out", str(out), "--json"], capture_output=True, text=True,
                            cwd=ROOT, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 1 and not out.exists()
    assert "cannot be used together" in result.stdout

