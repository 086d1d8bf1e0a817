"""CI commands: ``reconcile changes`` tells a pipeline which kinds of change a push holds.

It exits 0 whether or not anything changed (the answer is in the outputs, not the exit code),
and 1 when it cannot answer, so a workflow never mistakes "could not tell" for "nothing to do".
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from reconciler.changes import ChangeReport, changes_between
from reconciler.cli.app import STATE, JsonOpt, app

SHOWN_NAMES = 5


@app.command()
def changes(
    base: Annotated[str, typer.Option("--base", help="Compare from this ref (merge-base semantics).")],
    head: Annotated[str, typer.Option("--head", help="Compare to this ref.")] = "HEAD",
    as_json: JsonOpt = False,
) -> None:
    """Classify files changed between two commits into infra, app… (the spec's `changes:` globs).

    Writes <class>-changed=true|false and changed-files=N to $GITHUB_OUTPUT when it is set.
    """
    from reconciler.cli.output import print_json

    STATE.json = as_json
    report = changes_between(STATE.file, base, head)
    if as_json:
        print_json(report.to_dict())
    else:
        typer.echo(summary(report))
    target = os.environ.get("GITHUB_OUTPUT")
    if target:
        write_outputs(Path(target), report)


def summary(report: ChangeReport) -> str:
    """A few lines for a CI log: each class with its count and the first few names."""
    result = report.result
    lines = [f"{len(result.files)} {_files(len(result.files))} changed ({report.base}...{report.head})"]
    for name, files in result.classes.items():
        lines.append(f"  {name}: {_counted(files)}")
    if result.unclassified:
        lines.append(f"  other: {_counted(result.unclassified)}")
    return "\n".join(lines)


def _counted(files: tuple[str, ...]) -> str:
    if not files:
        return "no changes"
    shown = ", ".join(files[:SHOWN_NAMES])
    more = f", … and {len(files) - SHOWN_NAMES} more" if len(files) > SHOWN_NAMES else ""
    return f"{len(files)} {_files(len(files))} ({shown}{more})"


def _files(count: int) -> str:
    return "file" if count == 1 else "files"


def output_lines(report: ChangeReport) -> list[str]:
    """Step outputs: one ``<class>-changed`` per class, and the total count."""
    lines = [f"{name}-changed={'true' if files else 'false'}"
             for name, files in report.result.classes.items()]
    return lines + [f"changed-files={len(report.result.files)}"]


def write_outputs(target: Path, report: ChangeReport) -> None:
    """Append, never truncate: earlier commands in the same step may have written there too."""
    with target.open("a", encoding="utf-8") as out:
        out.write("\n".join(output_lines(report)) + "\n")
