"""The safety invariant (DESIGN.md principle 4), as one function that judges a whole plan.

A plan is data and can be saved, edited and loaded, so the rules are checked on the plan
itself rather than trusted to the planner: ``check`` runs when a plan is made and when a
saved one is loaded; ``check_step`` runs in the executor right before each step, so a
destructive step never runs unless its backup has actually completed.

The rules:

* a ``recreate`` or ``remove`` of a stateful resource depends on ``backup:<resource>``,
  which comes earlier in the plan;
* a ``restore`` likewise depends on the backup it restores;
* a ``remove`` of a protected resource is refused outright;
* every ``depends_on`` names an action earlier in the plan, and action ids are unique.

Beside the rules, a plan may carry blocking issues (``Plan.blocking``): what the engine holds
that would make one of its actions fail midway (a container reconcile did not make under the
name a service's container is created with). The plan is still made and shown, with them;
``check_not_blocked`` is apply's refusal of such a plan, before it changes anything.
"""

from __future__ import annotations

from collections.abc import Collection

from reconciler.errors import SafetyError
from reconciler.plan.actions import Action, ActionKind, Plan
from reconciler.plan.networks import WHOLE_PLAN


def check(plan: Plan) -> None:
    """Raise ``SafetyError`` (naming the service and what to do) for the first broken rule."""
    earlier: set[str] = set()
    for action in plan.actions:
        if action.id in earlier:
            raise SafetyError(f"action {action.id} appears twice in the plan", ref="safety.duplicate",
                              hint="make a new plan with `reconcile plan`; do not edit saved plans")
        _check_action(action, earlier)
        earlier.add(action.id)


def check_step(plan: Plan, action: Action, done_ids: Collection[str]) -> None:
    """Before one step runs: the plan's rules for it hold and its backup has completed."""
    position = next((i for i, a in enumerate(plan.actions) if a == action), None)
    if position is None:
        raise SafetyError(f"action {action.id} is not part of this plan", ref="safety.foreign",
                          hint="the executor runs only the actions of the plan it was given")
    _check_action(action, {a.id for a in plan.actions[:position]})
    backup = backup_id(action)
    if needs_backup(action) and backup not in done_ids:
        raise SafetyError(
            f"{_what(action)} must wait for {backup}, which has not completed",
            ref="safety.backup-pending",
            hint="nothing was destroyed; fix the backup's error shown above and run apply again")


def check_not_blocked(plan: Plan) -> None:
    """Raise ``SafetyError`` (exit 1: refused, nothing changed) when a blocking issue of the plan
    concerns one of its actions. An issue of a service the plan no longer acts on (heal's plan
    for one service, taken from a whole plan) does not stop it; a network not as the spec says
    stops any plan, even one with no action (``plan`` exits 1 on it: apply must not say "No changes")."""
    blockers = [b for b in plan.blocking
                if b.ref in WHOLE_PLAN or any(a.resource == b.resource for a in plan.actions)]
    if not blockers:
        return
    hints = list(dict.fromkeys(b.hint for b in blockers if b.hint))
    raise SafetyError("apply refuses this plan: " + "; ".join(b.message for b in blockers),
                      ref=blockers[0].ref, hint="; ".join([*hints, "nothing was changed"]))


def needs_backup(action: Action) -> bool:
    """Whether the action may only run after a backup of the same resource."""
    return (action.destructive and action.stateful) or action.kind is ActionKind.RESTORE


def backup_id(action: Action) -> str:
    return f"{ActionKind.BACKUP.value}:{action.resource}"


def _check_action(action: Action, earlier: set[str]) -> None:
    for dependency in action.depends_on:
        if dependency not in earlier:
            raise SafetyError(
                f"{_what(action)} depends on {dependency}, which does not come earlier in the plan",
                ref="safety.order",
                hint="make a new plan with `reconcile plan`; do not edit saved plans")
    if action.kind is ActionKind.REMOVE and action.protected:
        raise SafetyError(
            f"service {action.resource} is protected (protect: true): apply never removes it",
            ref="safety.protect",
            hint=f"put {action.resource} back in the spec to keep it; to retire it on purpose, take "
                 "a backup and remove its container by hand (protect is a container label, so "
                 "only a container made with protect: false can be removed by apply)")
    if needs_backup(action) and backup_id(action) not in earlier:
        raise SafetyError(f"{_what(action)} has no backup before it", ref="safety.backup",
                          hint=f"plan {backup_id(action)} before it and make it depend on that "
                               "(`reconcile plan` does this; was the plan edited?)")
    if needs_backup(action) and backup_id(action) not in action.depends_on:
        raise SafetyError(f"{_what(action)} does not depend on {backup_id(action)}", ref="safety.backup",
                          hint="a destructive step must wait for its backup; make a new plan "
                               "with `reconcile plan`")


def _what(action: Action) -> str:
    """``recreate of stateful service postgres``: the step, in words an operator knows."""
    stateful = "stateful " if action.stateful else ""
    return f"{action.kind.value} of {stateful}service {action.resource}"
