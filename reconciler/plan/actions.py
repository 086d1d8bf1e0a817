"""The plan is data: typed, frozen actions, each with its resource, cause and dependencies.

The same ``Plan`` is rendered for people, written as JSON for machines, saved with ``--out``
and applied later; ``fingerprint`` ties a saved plan to the observed state it was made from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

PLAN_FORMAT = 1


class ActionKind(StrEnum):
    CREATE_NETWORK = "create-network"
    CREATE_VOLUME = "create-volume"
    CREATE = "create"
    RECREATE = "recreate"
    UPDATE = "update"  # change a live container in place (docker update): restart policy, memory
    START = "start"
    REMOVE = "remove"
    BACKUP = "backup"
    RESTORE = "restore"
    VERIFY = "verify"
    SWITCH_TRAFFIC = "switch-traffic"  # blue-green: point the proxy at the new container, drain


DESTRUCTIVE = frozenset({ActionKind.RECREATE, ActionKind.REMOVE})


@dataclass(frozen=True)
class Change:
    """One field-level difference, already safe to display (secrets read ``(sensitive)``)."""

    field: str
    before: str
    after: str

    def __str__(self) -> str:
        return f"{self.field}: {self.before} → {self.after}"


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    resource: str
    cause: str
    changes: tuple[Change, ...] = ()
    depends_on: tuple[str, ...] = ()
    profile: str | None = None
    stateful: bool = False
    protected: bool = False
    fresh_volume: bool = False
    container_id: str | None = None
    fallback: bool = False
    """On a backup: if the service cannot run, so cannot be read, apply restores the latest
    verified backup instead (``reconciler.apply.fallback``); only planned for a stateful
    service that heal found unable to run, whose recreate restores onto a fresh volume."""

    @property
    def id(self) -> str:
        return f"{self.kind.value}:{self.resource}"

    @property
    def destructive(self) -> bool:
        return self.kind in DESTRUCTIVE

    def to_dict(self) -> dict:
        return {
            "id": self.id, "kind": self.kind.value, "resource": self.resource,
            "cause": self.cause, "changes": [vars(c) for c in self.changes],
            "depends_on": list(self.depends_on), "profile": self.profile,
            "stateful": self.stateful, "protected": self.protected,
            "fresh_volume": self.fresh_volume, "container_id": self.container_id,
            **({"fallback": True} if self.fallback else {}),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Action:
        return cls(
            kind=ActionKind(data["kind"]), resource=data["resource"], cause=data["cause"],
            changes=tuple(Change(**c) for c in data.get("changes", ())),
            depends_on=tuple(data.get("depends_on", ())), profile=data.get("profile"),
            stateful=bool(data.get("stateful")), protected=bool(data.get("protected")),
            fresh_volume=bool(data.get("fresh_volume")), container_id=data.get("container_id"),
            fallback=bool(data.get("fallback")),
        )


@dataclass(frozen=True)
class Blocker:
    """Something in the engine that would make an action of ``resource`` (a service) fail, seen
    when the plan is made: a container reconcile did not make under the name the service's
    container is created with. Carried by the plan rather than raised, so a reviewer sees the
    whole plan and what stands in its way; apply refuses a plan that has one for any of its
    actions before it changes anything (``safety.check_not_blocked``)."""

    resource: str
    ref: str
    message: str
    hint: str

    def to_dict(self) -> dict:
        return {"resource": self.resource, "ref": self.ref, "message": self.message, "hint": self.hint}

    @classmethod
    def from_dict(cls, data: dict) -> Blocker:
        return cls(resource=str(data["resource"]), ref=str(data.get("ref") or "plan.blocked"),
                   message=str(data.get("message") or ""), hint=str(data.get("hint") or ""))


@dataclass(frozen=True)
class Plan:
    project: str
    actions: tuple[Action, ...]
    fingerprint: str
    profiles: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    spec_hash: str = ""
    meta: dict = field(default_factory=dict, compare=False, hash=False)
    blocking: tuple[Blocker, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.actions

    def blocked(self, resource: str) -> bool:
        return any(b.resource == resource for b in self.blocking)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for action in self.actions:
            out[action.kind.value] = out.get(action.kind.value, 0) + 1
        return out

    def action(self, action_id: str) -> Action | None:
        return next((a for a in self.actions if a.id == action_id), None)

    def to_dict(self) -> dict:
        return {
            "format": PLAN_FORMAT, "project": self.project, "fingerprint": self.fingerprint,
            "spec_hash": self.spec_hash, "profiles": list(self.profiles),
            "summary": self.counts(), "changes": not self.empty,
            "warnings": list(self.warnings), "blocking": [b.to_dict() for b in self.blocking],
            "actions": [a.to_dict() for a in self.actions],
            **({"meta": self.meta} if self.meta else {}),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Plan:
        if data.get("format") != PLAN_FORMAT:
            raise ValueError(f"unsupported plan format {data.get('format')!r}")
        return cls(
            project=data["project"], fingerprint=data["fingerprint"],
            actions=tuple(Action.from_dict(a) for a in data["actions"]),
            profiles=tuple(data.get("profiles", ())), warnings=tuple(data.get("warnings", ())),
            spec_hash=data.get("spec_hash", ""), meta=data.get("meta", {}),
            blocking=tuple(Blocker.from_dict(b) for b in data.get("blocking") or ()),
        )
