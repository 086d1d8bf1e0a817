"""The state of one apply while it runs: what is done, which swaps are open, what to report.

Every event goes through ``ApplyRun.record``: it is appended to the journal (fsync'd) and
shown to the operator, so the screen and the record cannot disagree. A ``Swap`` is the
executor's memory of a recreate in flight; rollback reads it (and it mirrors the journal's
``step`` lines, which a person reads when a rollback failed).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from reconciler.apply.journal import Journal
from reconciler.plan.actions import Plan
from reconciler.session import Session

Emit = Callable[[dict], None]


@dataclass
class Swap:
    """A recreate in flight: the old container (renamed ``previous``) and its candidate."""

    service: str
    token: str
    canonical: str
    old_id: str | None
    old_name: str
    previous_name: str
    old_running: bool
    old_volumes: dict[str, str] = field(default_factory=dict)
    old_config: dict | None = field(default=None, repr=False)
    renamed: bool = False
    stopped: bool = False
    new_id: str | None = None
    new_name: str = ""
    fresh: dict[str, str] = field(default_factory=dict)
    fresh_folders: list[str] = field(default_factory=list)
    finished: bool = False

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()
                if v not in (None, "", [], {}) and k != "old_config"}


@dataclass
class ApplyRun:
    session: Session
    plan: Plan
    journal: Journal
    emit: Emit
    done: list[str] = field(default_factory=list)
    swaps: dict[str, Swap] = field(default_factory=dict)
    rollouts: dict[str, object] = field(default_factory=dict)  # blue-green (reconciler.deploy)
    backups: dict[str, object] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    kept_volumes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    @property
    def apply_id(self) -> str:
        return self.journal.apply_id

    def record(self, event: str, **fields: object) -> None:
        """Journal first (the record must survive a kill right after), then the screen."""
        self.journal.write(event, **fields)
        self.emit({"event": event, **fields})

    def step(self, action_id: str, message: str, **fields: object) -> None:
        """A sub-step of an action (rename, stop, start…): what rollback and a person need."""
        self.record("step", action=action_id, message=message, **fields)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.record("warning", message=message)

    def backup_id(self, service: str) -> str | None:
        run = self.backups.get(service)
        return getattr(run, "backup_id", None)
