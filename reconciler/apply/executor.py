"""Run a plan's actions in order, each between an ``action-begin`` and an ``action-end`` line.

Before each step the safety rules are checked again against what has actually completed
(``safety.check_step``): a destructive step never runs unless its backup finished in this
apply. When a step fails, the failing service's open swap or blue-green rollout (if any) is
rolled back from the executor's record of it; earlier, completed services are left as they
are (they are healthy and verified). No step is retried or re-planned here. The error raised
is redacted (``ApplyRun.redacted``): it quotes the engine and the failing step.
"""

from __future__ import annotations

import time

from reconciler.apply import gate, rollback, steps
from reconciler.apply.context import ApplyRun
from reconciler.errors import ApplyError, ReconcileError
from reconciler.plan import safety
from reconciler.plan.actions import Action, ActionKind


def execute(run: ApplyRun) -> None:
    safety.check_not_blocked(run.plan)  # also a plan made here (heal's, a re-plan): refused before its first step
    for action in run.plan.actions:
        safety.check_step(run.plan, action, run.done)
        run.record("action-begin", action=action.id, kind=action.kind.value, resource=action.resource,
                   cause=action.cause)
        began = time.monotonic()
        try:
            details = steps.dispatch(run, action)
        except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - every failure is handled alike
            run.record("action-end", action=action.id, status="failed", error=_text(exc),
                       seconds=round(time.monotonic() - began, 2))
            raise run.redacted(_with_kept(run, action, failure(run, action, exc))) from None
        run.done.append(action.id)
        run.record("action-end", action=action.id, status="ok",
                   seconds=round(time.monotonic() - began, 2), **_clean(details))


def failure(run: ApplyRun, action: Action, exc: BaseException) -> ApplyError:
    """The error to raise: after rolling back the service's open swap, if there is one."""
    if isinstance(exc, gate.NotReady) and exc.logs:
        run.record("logs", action=action.id, lines=exc.logs.splitlines()[-gate.LOG_LINES:])
    rollout = run.rollouts.get(action.resource)
    if rollout is not None and not rollout.finished:
        from reconciler.deploy import bluegreen

        return bluegreen.undo(run, rollout, action.id, exc)
    opened = run.swaps.get(action.resource)
    if opened is not None and not opened.finished:
        return rollback.rollback(run, opened, action.id, exc)
    if isinstance(exc, ApplyError):
        return exc
    hint = getattr(exc, "hint", "") or "see the error above; then run apply again"
    if action.kind is ActionKind.BACKUP:
        hint = f"nothing was stopped or removed; {hint}"
    return ApplyError(f"{action.id} failed: {_text(exc)}", ref=_ref(exc), hint=hint)


_CHANGES = frozenset({ActionKind.CREATE, ActionKind.RECREATE, ActionKind.UPDATE, ActionKind.START,
                      ActionKind.REMOVE, ActionKind.SWITCH_TRAFFIC, ActionKind.RESTORE})
"""Done actions that change what runs or serves (backups and checks change nothing)."""


def _with_kept(run: ApplyRun, failed: Action, error: ApplyError) -> ApplyError:
    """``error`` saying which services this apply already changed, and that they stay so:
    only the failing step is undone, and "rolled back" alone read as the whole deploy (QA:
    the API served its new version while the worker was rolled back to the old one)."""
    by_id = {a.id: a for a in run.plan.actions}
    changed = [by_id[i] for i in run.done if i in by_id and by_id[i].kind in _CHANGES
               and by_id[i].resource != failed.resource]
    kept = sorted({a.resource for a in changed if a.kind is not ActionKind.REMOVE})
    removed = sorted({a.resource for a in changed if a.kind is ActionKind.REMOVE})  # gone: not "kept" (QA)
    switched = sorted({a.resource for a in changed if a.kind is ActionKind.SWITCH_TRAFFIC})
    notes = []
    if kept:
        notes.append(f"already changed by this apply, and kept (only the failed step is undone): {', '.join(kept)}"
                     + (f"; {', '.join(switched)} serve{'s' if len(switched) == 1 else ''} the new version "
                        f"(`reconcile rollback {' '.join(switched)}` puts the previous one back)" if switched else ""))
    if removed:
        notes.append(f"already removed by this apply: {', '.join(removed)}")
    if not notes:
        return error
    note = "; ".join(notes)
    error.hint = f"{error.hint}; {note}" if error.hint else note
    return error


def _ref(exc: BaseException) -> str:
    return f"apply.{exc.ref}" if isinstance(exc, ReconcileError) else "apply.step"


def _text(exc: BaseException) -> str:
    if isinstance(exc, ReconcileError):
        return exc.message
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return f"{type(exc).__name__}: {exc}"


def _clean(details: dict) -> dict:
    return {k: v for k, v in (details or {}).items() if v is not None}
