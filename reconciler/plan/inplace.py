"""Settings changed by hand on a live container that apply puts back in place: its restart
policy and memory limit (``docker update``) and its networks (``docker network disconnect``)
(pure; part of the planner).

All are in the config label reconcile writes, but those commands change the container
without touching its labels, so a hash comparison cannot see the edit. The planner
compares the live values (observed) with the spec too. A difference is converged in place
(an ``update``: the same container, not even restarted), except a memory limit the spec
does not have: the engine reads a limit of 0 as "unchanged", so removing one takes a
recreate. A container is off a network of its spec when it has no endpoint on it, or its
endpoint is on a network that was deleted (the plan creates it again): either way the
services on that network cannot reach it by name, though it runs and looks healthy.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from reconciler.observe.models import ObservedContainer
from reconciler.plan.actions import Change
from reconciler.plan.display import NONE, Views
from reconciler.spec.models import Service

_UNITS = {"b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}
DELETED = "(deleted)"  # marks an endpoint on a network that no longer exists
_HOW = {"restart": "docker update", "mem_limit": "docker update", "networks": "docker network disconnect"}


@dataclass(frozen=True)
class InPlace:
    """How the live container's in-place settings differ from the spec."""

    changes: tuple[Change, ...] = ()
    blocked: str | None = None
    """Why the changes cannot be made in place (then the container is recreated)."""

    @property
    def cause(self) -> str:
        how = ", ".join(dict.fromkeys(_how(c) for c in self.changes))
        text = f"live container changed in place ({how}): " + "; ".join(str(c) for c in self.changes)
        return f"{text}; {self.blocked}" if self.blocked else text


def compare(views: Views, service: Service, live: ObservedContainer,
            networks_present: Collection[str] | None = None) -> InPlace:
    """The spec's restart policy, memory limit and networks against the live container's.

    A restart policy the snapshot does not know (``None``) is not compared; nor are deleted
    networks when ``networks_present`` (the engine's networks) is not given.
    """
    changes = []
    blocked = None
    if change := _networks_change(views, live, networks_present):
        changes.append(change)
    if live.restart_policy is not None and live.restart_policy != service.restart:
        changes.append(Change("restart", views.before_text("restart", live.restart_policy),
                              views.after_text("restart", views.config)))
    wanted = memory_bytes(service.mem_limit)
    if live.memory_limit != wanted:
        changes.append(Change("mem_limit", views.before_text("mem_limit", memory_text(live.memory_limit)),
                              views.after_text("mem_limit", views.config)))
        if wanted is None:
            blocked = "only a recreate removes a memory limit"
    return InPlace(tuple(changes), blocked)


def _how(change: Change) -> str:
    """The command that made the change by hand."""
    if change.field == "networks" and DELETED in change.before:
        return "docker network rm"
    return _HOW[change.field]


def _networks_change(views: Views, live: ObservedContainer,
                     present: Collection[str] | None) -> Change | None:
    """The networks of the spec the container is off: no endpoint, or one on a deleted network."""
    wanted = list(views.config["networks"])
    gone = set() if present is None else {n for n in wanted if n in live.networks and n not in present}
    if all(n in live.networks and n not in gone for n in wanted):
        return None
    before = ", ".join(f"{n} {DELETED}" if n in gone else n for n in live.networks) or NONE
    return Change("networks", before, views.after_text("networks", views.config))


def cause_of(changes: tuple[Change, ...]) -> str:
    """The cause of an ``update`` action that carries ``changes``."""
    return InPlace(changes).cause


def memory_bytes(text: str | None) -> int | None:
    """``8m`` → 8388608, as Docker reads ``mem_limit`` (binary units); None (no limit) for
    none, ``0`` or text Docker would not read."""
    if not text:
        return None
    match = re.fullmatch(r"(\d+)([bkmg]?)", text.strip().lower())
    if not match:
        return None
    return int(match[1]) * _UNITS[match[2] or "b"] or None


def memory_text(size: int | None) -> str | None:
    """Bytes as a spec writes them: the largest unit that divides exactly (``64m``)."""
    if not size:
        return None
    for unit in ("g", "m", "k"):
        if size % _UNITS[unit] == 0:
            return f"{size // _UNITS[unit]}{unit}"
    return str(size)
