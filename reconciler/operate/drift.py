"""Drift: which services no longer match the spec, and why, read from a plan (pure).

A drift check is a read-only plan: every action a plan would take is a difference. Actions
are grouped by the service they are for; a missing network or volume counts against each
service that uses it. Backup, restore and verify are consequences, not causes, so they are
not listed. Hand edits made with ``docker update`` (restart policy, memory limit) or ``docker
network disconnect`` are in the plan as ``update`` actions (or a recreate, for a limit that
cannot be removed in place); their line also says the command that would undo the edit by hand.
A paused container (``docker pause``) is in no plan, but apply unpauses it: that is drift too.
A plan's blocking issue (a container reconcile did not make under a service's name) is said
with that service's reasons, one about a network (``plan.networks``) with those of each service
on it: apply would refuse, so a scheduled drift check must not only say "create it".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from reconciler.observe.models import Observed, State
from reconciler.plan.actions import Action, ActionKind, Plan
from reconciler.plan.display import SENSITIVE
from reconciler.plan.inplace import DELETED, memory_bytes, memory_text
from reconciler.spec.load import LoadedSpec
from reconciler.spec.normalise import container_name

_CONSEQUENCES = frozenset({ActionKind.BACKUP, ActionKind.RESTORE, ActionKind.VERIFY})
_VERBS = {ActionKind.CREATE: "create it", ActionKind.RECREATE: "recreate it",
          ActionKind.UPDATE: "update it in place", ActionKind.START: "start it",
          ActionKind.REMOVE: "remove it", ActionKind.SWITCH_TRAFFIC: "switch its proxy"}
_UPDATE_FLAGS = {"restart": "--restart", "mem_limit": "--memory"}


@dataclass(frozen=True)
class ServiceDrift:
    service: str
    reasons: tuple[str, ...]
    orphan: bool = False

    def to_dict(self) -> dict:
        return {"service": self.service, "reasons": list(self.reasons), "orphan": self.orphan}


def drift_of(loaded: LoadedSpec, plan: Plan, observed: Observed | None = None) -> list[ServiceDrift]:
    """Drifted services in plan order (then by name), each with its reasons; then the in-scope
    services whose container ``observed`` finds paused."""
    spec = loaded.spec
    reasons: dict[str, list[str]] = {}
    orphans: set[str] = set()
    for action in plan.actions:
        if action.kind in _CONSEQUENCES:
            continue
        if action.kind in (ActionKind.CREATE_NETWORK, ActionKind.CREATE_VOLUME):
            noun = "network" if action.kind is ActionKind.CREATE_NETWORK else "volume"
            for name in users_of(loaded, plan, action.resource, noun):
                reasons.setdefault(name, []).append(f"{noun} {action.resource} is missing "
                                                    "(apply would create it)")
            continue
        owner = owner_of(loaded, action.resource)
        if owner is None:
            owner = action.resource
            orphans.add(owner)
        reasons.setdefault(owner, []).append(_reason(loaded, action))
    for blocker in plan.blocking:  # apply would refuse the whole plan: the drift cannot be fixed until then
        what = blocker.message.removeprefix(f"{blocker.resource}: ")
        until = "that container is renamed or removed"
        blocked = [blocker.resource]
        if blocker.resource not in spec.services and blocker.resource in spec.networks:  # said by each user
            until, blocked = "that network is removed", users_of(loaded, plan, blocker.resource, "network")
        for name in blocked:
            reasons.setdefault(name, []).append(f"blocked: {what} (apply refuses until {until})")
    for name in _paused(loaded, plan, observed):
        reasons.setdefault(name, []).append(
            f"container paused: its processes are frozen (apply would unpause it; by hand: docker unpause "
            f"{container_name(spec, name)})")
    return [ServiceDrift(name, tuple(dict.fromkeys(why)), name in orphans and name not in spec.services)
            for name, why in reasons.items()]


def _paused(loaded: LoadedSpec, plan: Plan, observed: Observed | None) -> list[str]:
    if observed is None:
        return []
    return [name for name, service in sorted(loaded.spec.services.items())
            if (not plan.profiles or service.profile in plan.profiles)
            and (box := observed.current(name)) is not None and box.state is State.PAUSED]


def users_of(loaded: LoadedSpec, plan: Plan, resource: str, noun: str) -> list[str]:
    """In-scope services that use a network or volume."""
    out = []
    for name, service in sorted(loaded.spec.services.items()):
        if plan.profiles and service.profile not in plan.profiles:
            continue
        used = service.networks if noun == "network" else [m.source for m in service.volumes]
        if resource in used:
            out.append(name)
    return out


def owner_of(loaded: LoadedSpec, resource: str) -> str | None:
    """The spec service an action's resource belongs to: the service itself, or a leftover
    container named ``<project>-<service>-old|new|kept-<token>``, or its ``-proxy``; None
    for orphans."""
    spec = loaded.spec
    if resource in spec.services:
        return resource
    prefix = f"{spec.project}-"
    if resource.startswith(prefix):
        head = re.sub(r"-(?:(?:old|new|kept)-[0-9a-f]{6}|proxy)$", "", resource[len(prefix):])
        if head in spec.services:
            return head
    return None


def _reason(loaded: LoadedSpec, action: Action) -> str:
    what = f"apply would {_VERBS[action.kind]}"
    if action.kind is ActionKind.UPDATE and (undo := undo_command(loaded, action)):
        what += f"; by hand: {undo}"
    return f"{action.cause} ({what})"


def undo_command(loaded: LoadedSpec, action: Action) -> str | None:
    """The ``docker update`` and ``docker network connect`` that put an update's fields back
    as the spec says; None when a value is hidden (interpolated: a secret for display) or a
    network must be created first."""
    name = container_name(loaded.spec, action.resource)
    args, connects = [], []
    for change in action.changes:
        if change.field == "networks":
            if DELETED in change.before or loaded.spec.services[action.resource].proxied:
                return None  # a network to create first; a proxy's upstream alias to give too
            have = set(change.before.split(", "))
            connects += [f"docker network connect --alias {action.resource} {network} {name}"
                         for network in change.after.split(", ") if network not in have]
            continue
        flag = _UPDATE_FLAGS.get(change.field)
        if flag is None or SENSITIVE in change.after:
            return None
        args.append(f"{flag} {change.after}")
        if flag == "--memory":  # the engine refuses a limit above the swap limit: raise both
            size = memory_bytes(change.after)
            if size is None:
                return None
            args.append(f"--memory-swap {memory_text(2 * size)}")
    commands = ([f"docker update {' '.join(args)} {name}"] if args else []) + connects
    return " && ".join(commands) or None
