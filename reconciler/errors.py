"""One root error, a family per stage, each carrying a reference, a message and a hint.

The CLI catches ``ReconcileError`` in one place and maps ``exit_code`` to the process exit
code, so every stage reports failures the same way (pip's diagnostic errors are the model).
Messages are built by us from names and positions, never from user values, so a secret
cannot leak through an exception.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    """Where in a spec file something is: ``file:line:col`` (1-based) and the field path."""

    file: str
    line: int | None = None
    col: int | None = None
    path: str = ""

    def __str__(self) -> str:
        place = self.file
        if self.line is not None:
            place += f":{self.line}"
            if self.col is not None:
                place += f":{self.col}"
        return f"{place} ({self.path})" if self.path else place


class ReconcileError(Exception):
    """Root of every error the tool reports on purpose."""

    ref = "reconcile"
    exit_code = 1

    def __init__(self, message: str, *, hint: str = "", location: Location | None = None,
                 ref: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.location = location
        if ref:
            self.ref = ref

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}" if self.location else self.message
        return f"{text}\n  hint: {self.hint}" if self.hint else text

    def as_dict(self) -> dict[str, object]:
        return {"error": self.ref, "message": self.message, "hint": self.hint,
                "location": str(self.location) if self.location else None}


class SpecError(ReconcileError):
    """The spec file cannot be read, parsed, interpolated or validated."""

    ref = "spec"


class SpecErrors(SpecError):
    """Several spec problems at once: operators fix them all in one pass, not one per run."""

    def __init__(self, errors: list[SpecError]) -> None:
        first = errors[0]
        super().__init__(first.message, hint=first.hint, location=first.location, ref=first.ref)
        self.errors = errors

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)

    def as_dict(self) -> dict[str, object]:
        """The one error shape every --json error has (docs/ci.md: message, hint, location, the
        first problem's), so a CI step reading ``.message`` never gets null; ``errors`` lists all."""
        more = len(self.errors) - 1
        message = self.message + (f" (and {more} more problem{'s' if more > 1 else ''}: see errors)"
                                  if more else "")
        return {"error": "spec", "message": message, "hint": self.hint,
                "location": str(self.location) if self.location else None,
                "errors": [e.as_dict() for e in self.errors]}


class EngineError(ReconcileError):
    """The Docker engine cannot be reached or refused an operation."""

    ref = "engine"


class PlanError(ReconcileError):
    """A plan cannot be made or loaded."""

    ref = "plan"


class SafetyError(PlanError):
    """A plan breaks a safety rule (backup before destroy, protect)."""

    ref = "safety"


class BackupError(ReconcileError):
    """A backup could not be made or verified."""

    ref = "backup"


class RestoreError(ReconcileError):
    """A restore could not be made or verified."""

    ref = "restore"


class StorageError(ReconcileError):
    """A backup store (local folder or S3) failed."""

    ref = "storage"


class StateError(ReconcileError):
    """The state dir (apply journal, run logs) cannot be written: a full disk, a read-only mount."""

    ref = "state"


class ApplyError(ReconcileError):
    """An apply failed; state was rolled back and nothing was lost."""

    ref = "apply"
    exit_code = 2


class CriticalError(ApplyError):
    """An apply failed and its rollback failed too: a person must act."""

    ref = "critical"
    exit_code = 3


class Interrupted(ReconcileError):
    """Ctrl-C or SIGTERM stopped a command (the CLI turns the ``KeyboardInterrupt`` into this).
    What the stages noted on the interrupt on its way out (PEP 678 notes) says what they left,
    so an exit 130 is never silent: "no backup was kept", "the live database is unchanged"."""

    ref = "interrupted"
    exit_code = 130

    @classmethod
    def from_stop(cls, stop: BaseException, silent_means_unchanged: bool = False) -> Interrupted:
        """``silent_means_unchanged``: the command's stages note every change they leave (or it
        changes nothing), so no note means nothing was changed, and the message says so."""
        cause = "stopped by SIGTERM" if stop.args == ("SIGTERM",) else "interrupted"
        notes = [note for note in getattr(stop, "__notes__", ()) if note]
        if not notes and silent_means_unchanged:
            notes = ["nothing was changed"]
        return cls(f"{cause}: {'; '.join(notes)}" if notes else cause)
