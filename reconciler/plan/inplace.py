"""Settings that ``docker update`` changes in place: a container's restart policy and memory
limit (pure; part of the planner).

Both are in the config label reconcile writes, but ``docker update`` changes the container
without touching its labels, so a hash comparison cannot see the edit. The planner
compares the live values (observed) with the spec too. A difference is converged in place
(an ``update``: the same container, not even restarted), except a memory limit the spec
does not have: the engine reads a limit of 0 as "unchanged", so removing one takes a
recreate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from reconciler.observe.models import ObservedContainer
from reconciler.plan.actions import Change
from reconciler.plan.display import Views
from reconciler.spec.models import Service

_UNITS = {"b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}
_HOW = "live container changed in place (docker update)"


@dataclass(frozen=True)
class InPlace:
    """How the live container's in-place settings differ from the spec."""

    changes: tuple[Change, ...] = ()
    blocked: str | None = None
    """Why the changes cannot be made in place (then the container is recreated)."""

    @property
    def cause(self) -> str:
        text = f"{_HOW}: " + "; ".join(str(c) for c in self.changes)
        return f"{text}; {self.blocked}" if self.blocked else text


def compare(views: Views, service: Service, live: ObservedContainer) -> InPlace:
    """The spec's restart policy and memory limit against the live container's.

    A restart policy the snapshot does not know (``None``) is not compared.
    """
    changes = []
    blocked = None
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
