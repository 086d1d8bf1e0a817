"""The ``reconcile`` command line: one typer app, errors caught in one place (``main``)."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Optional

import typer
import typer.core

# Help is plain text (rich_markup_mode=None below), but typer 0.19 still escapes the brackets
# of "[default: …]" for rich whenever rich is importable, printing "\[default: …]". Telling
# typer.core that rich is absent changes only that: every other use is already off here.
typer.core.HAS_RICH = False

# pydantic scans every installed distribution for plugins on first model build; we use none,
# and on a plan of 50 services that scan was a visible share of the run.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from reconciler import __version__  # noqa: E402
from reconciler.errors import Interrupted, ReconcileError  # noqa: E402


class _Group(typer.core.TyperGroup):
    """Ctrl-C or SIGTERM inside a command is reported like an error, exit 130, with what the
    command's stages noted it left (typer would exit 130 without a word)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as stop:
            raise Interrupted.from_stop(stop, ctx.invoked_subcommand in NOTED_COMMANDS) from None


NOTED_COMMANDS = frozenset({"backup", "restore", "verify", "plan", "validate", "schema", "health", "diagnose",
                            "drift", "status", "history", "changes"})
"""Commands that change nothing, or whose every stage notes on an interrupt what it left
(backup, restore): interrupted without a note, they changed nothing."""


app = typer.Typer(
    name="reconcile", cls=_Group, no_args_is_help=True, add_completion=False,
    pretty_exceptions_enable=False, rich_markup_mode=None,
    help="Converge a Docker stack that holds data: plan, back up, apply, restore, verify.",
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
LockWaitOpt = Annotated[str, typer.Option(
    "--lock-wait", help="How long to wait for a running apply, restore, rollback or heal of the project, "
                        "e.g. 10m.")]


def lock_wait_seconds(text: str) -> float:
    """``--lock-wait``'s value in seconds; a bad one is a usage error (exit 1)."""
    from reconciler.spec.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError:
        raise typer.BadParameter("a duration such as 30s or 10m", param_hint="--lock-wait") from None
ProfileOpt = Annotated[Optional[list[str]], typer.Option(
    "--profile", "-p", help="Limit to a profile (repeatable), e.g. infrastructure, app.")]


class State:
    """Per-invocation options shared by every command."""

    file: Path = Path("reconcile.yaml")
    json: bool = False
    markdown: bool = False  # plan --markdown: an error is a comment too (render_error_markdown)


STATE = State()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"reconcile {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    file: Annotated[Path, typer.Option("--file", "-f", envvar="RECONCILE_FILE",
                                       help="Spec file (default: reconcile.yaml here).")] = Path(
        "reconcile.yaml"),
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    STATE.file = file


@app.command()
def validate(as_json: JsonOpt = False) -> None:
    """Check the spec: syntax, types, references, cycles, ports. Exit 0 valid, 1 not."""
    from reconciler.spec.load import load_spec

    STATE.json = as_json
    loaded = load_spec(STATE.file)
    spec = loaded.spec
    if as_json:
        from reconciler.cli.output import print_json

        print_json({"valid": True, "file": str(loaded.file), "project": spec.project,
                    "services": sorted(spec.services)})
        return
    from reconciler.cli.output import echo

    count = len(spec.services)
    echo(f"{STATE.file}: valid ({count} service{'' if count == 1 else 's'}, project {spec.project}).")


@app.command()
def schema() -> None:
    """Print the spec's JSON Schema (schemas/reconcile.schema.json is this output)."""
    from reconciler.spec.schema import schema_text

    sys.stdout.write(schema_text())


@app.command()
def plan(
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Markdown for a pull-request comment.")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", help="Save the plan to apply later.")] = None,
    detailed_exitcode: Annotated[bool, typer.Option(
        "--detailed-exitcode",
        help="Exit 0 no changes, 2 changes, 1 error or a plan apply would refuse.")] = False,
) -> None:
    """Show what apply would change, without changing anything. A plan apply would refuse
    (a blocking issue, such as a container not made by reconcile under a service's name) exits 1."""
    from reconciler.cli import output
    from reconciler.pipeline import snapshot
    from reconciler.plan import render

    STATE.json, STATE.markdown = as_json, markdown and not as_json
    if as_json and markdown:
        import click

        raise click.UsageError("--json and --markdown cannot be used together: choose one output format",
                               ctx=click.get_current_context())
    snap = _with_running_apply(snapshot(STATE.file, profile or ()))
    if out is not None:
        save_plan(snap, out)
    if as_json:
        output.print_json(render.render_json(snap.plan))
    elif markdown:
        sys.stdout.write(render.render_markdown(snap.plan))
    else:
        output.print_plan_text(render.render_text(snap.plan))
        if out is not None:
            default = os.environ.get("RECONCILE_FILE") or STATE.file == Path("reconcile.yaml")
            given = "" if default else f" -f {STATE.file}"  # the spec it was made from, as given
            then = ("apply refuses it until what is Blocked above is fixed; then plan again" if snap.plan.blocking
                    else f"Apply it with: reconcile{given} apply {out}")
            output.echo(f"\nSaved to {out}. {then}")
    if snap.plan.blocking:
        print_refused(snap.plan, as_json or markdown)
    if detailed_exitcode and not snap.plan.empty:
        raise typer.Exit(2)


def print_refused(plan, quiet_stdout: bool) -> None:
    """A plan apply would refuse (``Plan.blocking``) exits 1, whatever ``--detailed-exitcode``
    says: CI must not read it as changes ready to apply. The plan itself says why; with --json
    or --markdown, stdout is the document, and stderr says it for the log."""
    if quiet_stdout:
        for blocker in plan.blocking:
            sys.stderr.write(f"error[{blocker.ref}] apply refuses this plan: {blocker.message}\n"
                             f"  hint: {blocker.hint}\n")
    raise typer.Exit(1)


def _with_running_apply(snap):
    """A plan taken while an apply changes the stack shows it midway (its new containers look
    like leftovers of an interrupted one): it says so, as drift does."""
    from dataclasses import replace

    from reconciler.apply.lock import held_by

    holder = held_by(snap.loaded.state_dir(), snap.loaded.spec.project)
    if holder is None:
        return snap
    warning = (f"{holder.running} is running ({holder.describe()}): this plan shows the stack midway, and the "
               "containers it is starting are not leftovers; plan again once it has finished")
    return replace(snap, plan=replace(snap.plan, warnings=(warning, *snap.plan.warnings)))


def save_plan(snap, out: Path) -> None:
    """A saved plan: the plan, its fingerprint, and where it came from (no secrets)."""
    from reconciler.plan.planner import engine_tag

    data = snap.plan.to_dict()
    data["meta"] = {"spec_file": str(snap.loaded.file), "created_at": datetime.now(UTC).isoformat(),
                    "reconcile_version": __version__, "engine": engine_tag(snap.observed)}
    write_output(out, (json.dumps(data, indent=2) + "\n").encode(), "the plan", ref="plan.write")


def write_output(path: Path, data: bytes, what: str, ref: str) -> None:
    """A file the user asked for (a saved plan, diagnose's facts): whole or not at all, 0600
    also over an existing file; a path that cannot be written is an error, not a traceback."""
    from reconciler.storage.files import atomic_write

    if path.is_dir():
        raise ReconcileError(f"cannot write {what} to {path}: it is a folder", ref=ref,
                             hint="give a file name, e.g. " + str(path / "out.json"))
    try:
        with atomic_write(path) as handle:
            handle.write(data)
    except (OSError, ReconcileError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "message", None) or str(exc)
        raise ReconcileError(f"cannot write {what} to {path}: {reason}", ref=ref,
                             hint="choose a path in a folder that exists and you can write to") from None


# Commands defined in this module; any other (or none, for --help) needs cli.commands.
OWN_COMMANDS = frozenset({"validate", "schema", "plan"})


def main(command: str | None = None) -> None:
    """Run the app and map every ``ReconcileError`` to its exit code.

    ``command`` is the launcher's guess at the subcommand: when it is one of this module's
    own, registering the others (and importing what they need) is skipped.
    """
    if command not in OWN_COMMANDS:
        from reconciler.cli import commands  # noqa: F401  (registers the other commands)

    import click

    try:
        code = app(standalone_mode=False)
    except ReconcileError as error:
        from reconciler.cli.output import report_error

        if STATE.markdown:
            from reconciler.plan.render import render_error_markdown

            sys.stdout.write(render_error_markdown(getattr(error, "errors", None) or [error]))
        report_error(error, STATE.json)
        sys.exit(error.exit_code)
    except click.ClickException as error:
        _usage_error(error)
    except (KeyboardInterrupt, click.exceptions.Abort) as stop:
        if isinstance(stop, KeyboardInterrupt) or isinstance(stop.__cause__, KeyboardInterrupt):
            sys.stderr.write("interrupted\n")
            sys.exit(130)
        sys.stderr.write("Aborted!\n")
        sys.exit(1)
    if code == 130:  # typer's answer to a Ctrl-C outside a command (while it parsed the line)
        sys.stderr.write("interrupted\n")
    if isinstance(code, int) and code:
        sys.exit(code)


def _usage_error(error) -> None:
    """A mistyped option or a bad value exits 1, an error like any other: click's own 2 is
    what CI reads as "changes" from `plan --detailed-exitcode` and as "drift" from `drift`."""
    if "--json" in sys.argv[1:]:
        from reconciler.cli.output import print_json

        print_json({"error": "usage", "message": error.format_message(),
                    "hint": "see `reconcile COMMAND --help`", "location": None})  # every error's shape
    else:
        error.show()
    sys.exit(1)
