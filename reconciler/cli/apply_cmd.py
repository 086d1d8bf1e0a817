"""``reconcile apply`` and ``reconcile history``.

On a terminal each step shows under a spinner and every finished action prints one line;
in CI (no terminal) the same lines print plainly; with ``--json`` every event is one JSON
object per line on stdout (the journal's events plus ``plan``; ``finish`` carries the summary), and an error
is one last ``{"event": "error", …}`` line.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from reconciler.cli.app import STATE, JsonOpt, LockWaitOpt, ProfileOpt, app, lock_wait_seconds


@app.command()
def apply(
    plan_file: Annotated[Optional[Path], typer.Argument(
        metavar="[PLAN.json]", help="A plan saved with `reconcile plan --out`.")] = None,
    auto_approve: Annotated[bool, typer.Option("--auto-approve", help="Do not ask for confirmation.")] = False,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
    lock_wait: LockWaitOpt = "0s",
) -> None:
    """Make the stack match the spec: back up, recreate, restore, verify; roll back on failure.

    Exit 0 done, 1 warning (e.g. S3 copy failed) or refused before any change,
    2 failed and rolled back, 3 rollback failed (a person must act).
    """
    from reconciler.apply.runner import apply as run_apply
    from reconciler.errors import ReconcileError
    from reconciler.operate.hooks import deploy_run
    from reconciler.session import Session
    from reconciler.spec.load import load_spec

    STATE.json = as_json
    try:
        options = _options(plan_file, auto_approve, profile or (), lock_wait)
        ui = JsonUI() if as_json else TextUI()
        session = Session(load_spec(STATE.file))
        with deploy_run(session, ui.bind(options)) as bound:  # run log + notifications
            outcome = run_apply(options, bound, session)
    except (ReconcileError, KeyboardInterrupt) as error:
        if not as_json:
            raise
        if isinstance(error, KeyboardInterrupt):  # Ctrl-C, SIGTERM: its exit 130 is an event line too
            from reconciler.errors import Interrupted

            error = Interrupted.from_stop(error)
        json_line({"event": "error", **error.as_dict(), "exit_code": error.exit_code})
        raise typer.Exit(error.exit_code) from None
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)


def _options(plan_file, auto_approve: bool, profiles, lock_wait: str):
    from reconciler.apply.runner import Options
    from reconciler.errors import ReconcileError

    wait = lock_wait_seconds(lock_wait)
    if plan_file is None and not auto_approve and not sys.stdin.isatty():
        raise ReconcileError("apply needs a confirmation and there is no terminal to ask on",
                             ref="apply.no-terminal",
                             hint="pass --auto-approve, or apply a saved plan: "
                                  "reconcile plan --out plan.json && reconcile apply plan.json")
    if plan_file is not None and profiles:
        raise typer.BadParameter("a saved plan already fixes its profiles", param_hint="--profile")
    return Options(STATE.file, tuple(profiles), plan_file, auto_approve, wait)


def _stdout_gone() -> None:
    """A reader of stdout that went away (`| head`, `| grep -q`, a dropped log stream) must not
    stop an apply or a rollback midway: the rest of stdout goes to /dev/null and the command
    carries on (the journal and the run log keep every event; errors still reach stderr). Every
    write meets it: rich's ``on_broken_pipe`` for the text, ``json_line`` for JSON."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def json_line(data: dict) -> None:
    """One event line. A reader gone (``| head -1``) must not stop apply or rollback midway:
    the rest of the lines go to /dev/null (the journal and the run log keep every event)."""
    try:
        sys.stdout.write(json.dumps(data, default=str) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        _stdout_gone()


class JsonUI:
    def bind(self, options):
        from reconciler.apply.runner import UI

        return UI(emit=json_line, show_plan=self.show_plan)

    def show_plan(self, plan, sick) -> None:
        json_line({"event": "plan", **plan.to_dict(),
                    "unhealthy": {n: r.as_dict() for n, r in sick.items()}})


class TextUI:
    """Lines for people; a spinner shows the running step when stdout is a terminal."""

    def __init__(self) -> None:
        from reconciler.cli.output import stdout_console

        self.console = stdout_console()
        # rich's own answer to a closed stdout is SystemExit(1), which no rollback catches
        self.console.on_broken_pipe = _stdout_gone
        self.status = None
        self.total = 0
        self.index = 0

    def bind(self, options):
        from reconciler.apply.runner import UI

        return UI(emit=self.emit, show_plan=self.show_plan, confirm=self.confirm)

    def show_plan(self, plan, sick) -> None:
        from reconciler.cli.output import print_plan_text
        from reconciler.plan.render import render_text

        self.total = len(plan.actions)
        print_plan_text(render_text(plan), self.console)
        for name, result in sorted(sick.items()):
            self._line(f"  ! {sick_words(name, result)}", "yellow")

    def confirm(self, question: str) -> bool:
        self._stop_spinner()
        return typer.confirm(question, default=False)

    def emit(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "action-begin":
            self.index += 1
            self._spin(f"[{self.index}/{max(self.total, self.index)}] {event['kind']} {event['resource']}")
        elif kind == "step":
            self._spin(f"[{self.index}/{max(self.total, self.index)}] {event['message']}")
            if not self._live:
                self._line(f"    {event['message']}", None)
        elif kind == "action-end":
            ok = event.get("status") == "ok"
            extra = f" → {event['backup_id']}" if event.get("backup_id") else ""
            mark = f"{'ok' if ok else 'FAILED'}  "  # a long error continues under the action
            took = f"by {event['by']}" if event.get("by") else f"{event.get('seconds', 0)}s"  # heal did it first
            text = f"{mark}{event['action']}{extra} ({took})"
            self._line(text if ok else f"{text}: {event.get('error', '')}", None if ok else "red", len(mark))
        elif kind == "logs":
            self._line(f"last log lines of the new container ({event['action']}):", "red")
            for line in event.get("lines") or []:
                self._line(f"  | {line}", None)
        elif kind in ("warning", "notice", "heal", "replan", "rollback-begin", "rollback-end"):
            self._line(_event_text(event), "yellow" if kind != "notice" else None)
        elif kind == "no-changes":
            self._stop_spinner()
            self._line("No changes.", None)
        elif kind == "finish":
            self.summary(event)

    def summary(self, data: dict) -> None:
        self._stop_spinner()
        self.console.print()
        self._line(f"Apply {data['apply_id']}: {data['result']} in {data['duration_s']}s, "
                   f"{len(data['actions'])} action(s) done.", None)
        for backup in data.get("backups") or []:
            self._line(f"  backup {backup['backup_id']} of {backup['service']}: {backup['file']} "
                       f"(S3: {backup['s3']})", None)
        for volume in data.get("unused_volumes") or []:
            self._line(f"  volume {volume} is no longer used (kept; remove by hand: "
                       f"docker volume rm {volume})", None)
        for warning in data.get("warnings") or []:
            self._line(f"  warning: {warning}", "yellow")

    @property
    def _live(self) -> bool:
        """A terminal someone watches: a spinner there. A CI log (FORCE_COLOR too), and a TERM=dumb
        terminal, where rich draws no spinner, get each step's line instead."""
        from reconciler.cli.output import live_terminal

        return live_terminal(self.console) and not self.console.is_dumb_terminal

    def _spin(self, text: str) -> None:
        if not self._live:
            return
        if self.status is None:
            self.status = self.console.status(text)
            self.status.start()
        else:
            self.status.update(text)

    def _stop_spinner(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None

    def _line(self, text: str, style: str | None, indent: int | None = None) -> None:
        """One line, wrapped to a terminal's width (``output.print_line``), whole anywhere else."""
        from reconciler.cli.output import print_line

        print_line(self.console, text, style or "", indent)


def sick_words(name: str, result) -> str:
    """What apply will do about a critical service whose spec is unchanged."""
    from reconciler.backup import restoring

    if result.status == "refused":
        return (f"{name} turns down the spec's credentials or database: apply neither restarts nor "
                "recreates it for that")
    if result.status == restoring.RULE:
        return (f"{name}: a restore of it stopped halfway, its data is partial: apply neither starts, "
                f"restarts nor recreates it; {restoring.advice(name, result.details)}")
    error = str((result.details or {}).get("error", ""))
    if "writes are refused" in error or "too many clients" in error or "connection slots are reserved" in error:
        return f"{name} is at a limit ({error}): apply does not restart it for that (see the warning below)"
    if result.status == "paused":
        return f"{name} is paused: apply unpauses it (and restarts it if it stays unhealthy)"
    if result.status in ("proxy-stopped", "proxy-detached"):
        return (f"{name}: {result.details.get('error', result.status)}: apply reconnects and starts "
                "its proxy")
    return (f"{name} is {result.status}: apply restarts it once, and recreates it (with a backup) if "
            "that does not help")


def _event_text(event: dict) -> str:
    kind = event["event"]
    if kind == "rollback-begin":
        return f"rolling back {event['service']}: {event['reason']}"
    if kind == "rollback-end":
        return f"rollback of {event['service']}: {event['status']}" + (
            f" ({event['error']})" if event.get("error") else "")
    if kind == "replan":
        services = event["services"]
        verb = "stays" if len(services) == 1 else "stay"
        return f"re-planned: {', '.join(services)} {verb} unhealthy and will be recreated"
    if kind == "warning":  # said as one where colour does not (a CI log, NO_COLOR), as the summary does
        return f"warning: {event.get('message', '')}"
    return str(event.get("message", kind))


@app.command()
def history(as_json: JsonOpt = False) -> None:
    """List past applies, rollbacks and heal's recreates of this project: id, command, start,
    duration, actions, result."""
    from reconciler.apply.journal import history as read_history
    from reconciler.cli import output
    from reconciler.operate.show import history_lines
    from reconciler.spec.load import load_spec

    STATE.json = as_json
    records = [r.to_dict() for r in read_history(load_spec(STATE.file).state_dir())]
    if as_json:
        output.print_json(records)
        return
    if not records:
        typer.echo("No applies recorded yet.")
        return
    console = output.stdout_console()  # a terminal's width (COLUMNS too); a pipe or a CI log gets whole lines
    for line in history_lines(records, output.wrap_width(console)):
        typer.echo(line)
