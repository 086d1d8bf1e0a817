"""Drift: which services no longer match the spec, and why, read from a plan (pure).

A drift check is a read-only plan: every action a plan would take is a difference. Actions
are grouped by the service they are for; a missing network or volume counts against each
service that uses it. Backup, restore and verify are consequences, not causes, so they are
not listed.

Some hand edits never reach the plan: ``docker update --restart``/``--memory`` changes a
container in place but not the config label the planner compares, so ``hand_edits`` reads
those settings from the container itself and reports them as drift too.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from reconciler.plan.actions import ActionKind, Plan
from reconciler.spec.load import LoadedSpec
from reconciler.spec.normalise import LABEL_CONFIG, LABEL_SERVICE

_CONSEQUENCES = frozenset({ActionKind.BACKUP, ActionKind.RESTORE, ActionKind.VERIFY})
_VERBS = {ActionKind.CREATE: "create it", ActionKind.RECREATE: "recreate it",
          ActionKind.START: "start it", ActionKind.REMOVE: "remove it",
          ActionKind.SWITCH_TRAFFIC: "switch its proxy"}
_UNITS = {"b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}


@dataclass(frozen=True)
class ServiceDrift:
    service: str
    reasons: tuple[str, ...]
    orphan: bool = False

    def to_dict(self) -> dict:
        return {"service": self.service, "reasons": list(self.reasons), "orphan": self.orphan}


def drift_of(loaded: LoadedSpec, plan: Plan, edits: dict[str, list[str]] | None = None) -> list[ServiceDrift]:
    """Drifted services in plan order (then by name), each with its reasons."""
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
        reasons.setdefault(owner, []).append(f"{action.cause} (apply would {_VERBS[action.kind]})")
    for name, found in sorted((edits or {}).items()):
        reasons.setdefault(name, []).extend(found)
    return [ServiceDrift(name, tuple(dict.fromkeys(why)), name in orphans and name not in spec.services)
            for name, why in reasons.items()]


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


def hand_edits(doc: dict) -> list[str]:
    """Settings changed in place (``docker update``) since reconcile made the container."""
    labels = (doc.get("Config") or {}).get("Labels") or {}
    try:
        made = json.loads(labels.get(LABEL_CONFIG) or "")
    except ValueError:
        return []
    if not isinstance(made, dict) or not labels.get(LABEL_SERVICE):
        return []
    host = doc.get("HostConfig") or {}
    name = str(doc.get("Name", "")).lstrip("/")
    found = []
    live_restart = (host.get("RestartPolicy") or {}).get("Name") or "no"
    if "restart" in made and live_restart != (made.get("restart") or "no"):
        found.append(f"restart policy changed by hand: {made.get('restart')} → {live_restart} "
                     f"(undo: docker update --restart {made.get('restart') or 'no'} {name})")
    want = memory_bytes(made.get("mem_limit"))
    live_memory = int(host.get("Memory") or 0) or None
    if "mem_limit" in made and live_memory != want:
        found.append(f"memory limit changed by hand: {made.get('mem_limit') or 'none'} → "
                     f"{live_memory or 'none'} bytes (undo: docker update --memory "
                     f"{made.get('mem_limit') or '0'} {name}, or recreate it)")
    return found


def memory_bytes(text: str | None) -> int | None:
    """``8m`` → 8388608, as Docker reads ``mem_limit`` (binary units)."""
    if not text:
        return None
    match = re.fullmatch(r"(\d+)([bkmg]?)", text.strip().lower())
    if not match:
        return None
    return int(match[1]) * _UNITS[match[2] or "b"]
