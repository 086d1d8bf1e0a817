"""CI commands: ``reconcile changes`` tells a pipeline which kinds of change a push holds.

It exits 0 whether or not anything changed (the answer is in the outputs, not the exit code),
and 1 when it cannot answer, so a workflow never mistakes "could not tell" for "nothing to do".
``--missing-base all`` is the one way to turn "could not tell" into "everything changed", and it
says so on stderr.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from reconciler.changes import GONE, ChangeReport, ChangesError, MissingBase, changes_between
from reconciler.cli.app import STATE, JsonOpt, app

SHOWN_NAMES = 5
#: The C escapes of the characters git escapes in a quoted name (others: `_escaped`).
_GIT_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


@app.command()
def changes(
    base: Annotated[str, typer.Option("--base", help="Compare from this ref (merge-base semantics).")],
    head: Annotated[str, typer.Option("--head", help="Compare to this ref.")] = "HEAD",
    missing_base: Annotated[str, typer.Option(
        "--missing-base", help="fail | all: a base commit this clone lacks (after a force-push) "
                               "is an error, or counts every file as changed.")] = "fail",
    as_json: JsonOpt = False,
) -> None:
    """Classify files changed between two commits into infra, app… (the spec's `changes:` globs).

    Writes <class>-changed=true|false and changed-files=N to $GITHUB_OUTPUT when it is set.
    """
    from reconciler.cli.output import echo, print_json

    STATE.json = as_json
    if missing_base not in {m.value for m in MissingBase}:
        raise typer.BadParameter("fail or all", param_hint="--missing-base")
    report = changes_between(STATE.file, base, head, MissingBase(missing_base))
    if report.base_missing:
        warn_base_missing(report, as_json)
    target = os.environ.get("GITHUB_OUTPUT")
    if target:  # first: when it fails, stdout holds the error alone (one JSON document)
        write_outputs(Path(target), report)
    if as_json:
        print_json(report.to_dict())
    else:
        echo(summary(report))


def warn_base_missing(report: ChangeReport, as_json: bool) -> None:
    """On stderr, so a log shows why a push counted as changing everything."""
    from rich.text import Text

    from reconciler.cli.output import print_json_warnings, print_line, stderr_console

    message = (f"base {report.base!r} is not in this repository's history ({GONE}): "
               f"every file of {report.head} counts as changed (--missing-base all)")
    if as_json:
        print_json_warnings([message])
    else:
        print_line(stderr_console(), Text.assemble(("warning", "bold yellow"), "[changes.missing-base] ", message))


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
    shown = ", ".join(shown_name(name) for name in files[:SHOWN_NAMES])
    more = f", … and {len(files) - SHOWN_NAMES} more" if len(files) > SHOWN_NAMES else ""
    return f"{len(files)} {_files(len(files))} ({shown}{more})"


def _files(count: int) -> str:
    return "file" if count == 1 else "files"


def shown_name(name: str) -> str:
    """A name with a newline or another control character would split or garble a CI log
    line: such names are quoted with C escapes (``"a\\nb"``), as git quotes them. Only the text
    output does this; the JSON carries the real names."""
    if name.isprintable() and '"' not in name and "\\" not in name:
        return name
    return '"' + "".join(_GIT_ESCAPES.get(c) or _escaped(c) for c in name) + '"'


def _escaped(char: str) -> str:
    """Other control characters as Python writes them (``\\x1b``, ``\\u2028``)."""
    return char if char.isprintable() else repr(char)[1:-1]


def output_lines(report: ChangeReport) -> list[str]:
    """Step outputs: one ``<class>-changed`` per class, and the total count."""
    lines = [f"{name}-changed={'true' if files else 'false'}"
             for name, files in report.result.classes.items()]
    return lines + [f"changed-files={len(report.result.files)}"]


def write_outputs(target: Path, report: ChangeReport) -> None:
    """Append, never truncate: earlier commands in the same step may have written there too.
    A path that cannot be written is an error (exit 1), never a traceback nor a silent skip:
    the workflow would read missing outputs as "nothing changed"."""
    try:
        with target.open("a", encoding="utf-8") as out:
            out.write("\n".join(output_lines(report)) + "\n")
    except OSError as exc:
        raise ChangesError(f"cannot write the step outputs to {target}: {exc.strerror or exc}",
                           ref="changes.output",
                           hint="GITHUB_OUTPUT must name a file in a folder that exists and is writable "
                                "(GitHub Actions sets it; unset it to run outside a workflow)") from None
