"""``reconcile rollback``: switch blue-green services back to their previous version.

Output follows ``reconcile apply``: lines for people (a spinner on a terminal), or with
``--json`` one JSON object per event on stdout and a last ``{"event": "error", …}`` line on
failure.
"""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from reconciler.cli.app import STATE, JsonOpt, LockWaitOpt, app, lock_wait_seconds
from reconciler.cli.apply_cmd import TextUI, json_line


@app.command()
def rollback(
    services: Annotated[Optional[list[str]], typer.Argument(
        metavar="[SERVICE]...", help="Services to roll back (default: every blue-green service "
                                     "with a kept version).")] = None,
    auto_approve: Annotated[bool, typer.Option("--auto-approve", help="Do not ask for confirmation.")] = False,
    as_json: JsonOpt = False,
    lock_wait: LockWaitOpt = "0s",
) -> None:
    """Switch back to the previous version, with no downtime (blue-green services).

    Starts the newest kept container of each service, waits until it is healthy, points the
    proxy at it, drains and stops the current one (which is kept in turn, so a second
    rollback switches back again).

    The spec is not changed: after a rollback `reconcile plan` shows the service as changed
    (its image differs from the spec's) and the next `reconcile apply` deploys the spec's
    version again. Fix or revert the spec to stay on the old version.

    Exit 0 done, 1 refused before any change (or done with warnings), 2 failed and undone
    (the current version still serves), 3 undoing failed too (a person must act).
    """
    from reconciler.deploy.rollback import UI
    from reconciler.deploy.rollback import rollback as run_rollback
    from reconciler.errors import ReconcileError
    from reconciler.session import Session
    from reconciler.spec.load import load_spec

    STATE.json = as_json
    try:
        wait = lock_wait_seconds(lock_wait)
        if not auto_approve and not sys.stdin.isatty():
            raise ReconcileError("rollback needs a confirmation and there is no terminal to ask on",
                                 ref="rollback.no-terminal", hint="pass --auto-approve")
        ui = _json_ui(UI) if as_json else _text_ui(UI, auto_approve)
        result = run_rollback(Session(load_spec(STATE.file)), list(services or []), ui, wait)
    except ReconcileError as error:
        if not as_json:
            raise
        json_line({"event": "error", **error.as_dict(), "exit_code": error.exit_code})
        raise typer.Exit(error.exit_code) from None
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def _json_ui(ui_type):
    return ui_type(emit=json_line, show=lambda lines: json_line({"event": "rollback-plan", "changes": lines}))


def _text_ui(ui_type, auto_approve: bool):
    text = RollbackText()

    def confirm(question: str) -> bool:
        return auto_approve or text.confirm(question)

    return ui_type(emit=text.emit, show=text.show, confirm=confirm)


class RollbackText(TextUI):
    """``reconcile apply``'s lines, with a rollback's own preview and summary."""

    def show(self, lines: list[str]) -> None:
        self.total = len(lines)
        self._line("Rollback:", None)
        for line in lines:
            self._line(f"  = {line}", "cyan")
        self.console.print()

    def summary(self, data: dict) -> None:
        self._stop_spinner()
        self.console.print()
        self._line(f"Rollback {data['apply_id']}: {data['result']} in {data['duration_s']}s, "
                   f"{len(data['actions'])} service(s) switched back.", None)
        for warning in data.get("warnings") or []:
            self._line(f"  warning: {warning}", "yellow")
        if ahead := data.get("spec_differs"):
            self._line(f"  the spec still describes another version of {', '.join(ahead)}: `reconcile "
                       "plan` shows it, and the next apply deploys it again (revert the spec to stay)", None)
