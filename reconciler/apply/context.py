"""The state of one apply while it runs: what is done, which swaps are open, what to report.

Every event goes through ``ApplyRun.record``: it is redacted, appended to the journal
(fsync'd) and shown to the operator, so the screen and the record cannot disagree and neither
holds a secret (the engine's errors quote env values, a failing container logs its own). A
``Swap`` is the executor's memory of a recreate in flight; rollback reads it (and it mirrors
the journal's ``step`` lines, which a person reads when a rollback failed).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

from reconciler.apply.journal import Journal
from reconciler.errors import ReconcileError
from reconciler.operate.redact import Redactor
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

    @cached_property
    def redactor(self) -> Redactor:
        """Every service's secrets, not the acting one's: a container logs what it was given."""
        return Redactor.for_spec(self.session.loaded)

    def record(self, event: str, **fields: object) -> None:
        """Journal first (the record must survive a kill right after), then the screen."""
        clean = self.redactor.redact_data(fields)
        self.journal.write(event, **clean)
        self.emit({"event": event, **clean})

    def redacted(self, error: ReconcileError) -> ReconcileError:
        """``error`` with its message and hint redacted, in place: the CLI prints it (or sends
        it as JSON) as it is, and it is built from the engine's text and the steps' errors."""
        error.message, error.hint = self.redactor.redact(error.message), self.redactor.redact(error.hint)
        error.args = (error.message, *error.args[1:])
        return error

    def step(self, action_id: str, message: str, **fields: object) -> None:
        """A sub-step of an action (rename, stop, start…): what rollback and a person need."""
        self.record("step", action=action_id, message=message, **fields)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.record("warning", message=message)

    def backup_id(self, service: str) -> str | None:
        run = self.backups.get(service)
        return getattr(run, "backup_id", None)
