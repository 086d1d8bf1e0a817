"""The append-only record of each apply: JSON lines, written before and after every action.

One file per apply under ``<state_dir>/journal/``. Each line is flushed and fsync'd, so a
killed apply leaves an exact record of what had started and what had finished; rollback
reads it, and ``reconcile history`` summarises the files.

The ``start`` line names the process that writes the journal (``reconciler.owner``, and when
that process started): a journal without a ``finish`` line is an apply still ``running``
while that process lives, and ``interrupted`` once it is gone (or cannot be asked: another
host or pid namespace), so ``status``, ``history`` and the metrics never call an apply in
progress interrupted or failed.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from reconciler.errors import StateError
from reconciler.owner import gone, owner

RUNNING = "running"
"""The result of an apply whose process still runs (no ``finish`` record yet)."""

KEEP_DAYS = 90
KEEP_LAST = 100
"""Journal rotation: a journal older than ``KEEP_DAYS`` is removed when an apply opens its own,
unless it is one of the newest ``KEEP_LAST`` (or its apply still runs). Without it the folder
grew by a file per apply forever, and ``history``, ``status`` and every ``drift`` read them all."""


def new_apply_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def unwritable(exc: OSError, what: str, path: Path) -> StateError:
    """A state dir that cannot be written (a full disk, a read-only mount): an error naming the
    file, with a hint, where a traceback was. Raised before an apply's first change, it changes
    nothing: no change starts without the journal line a rollback would read."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StateError(f"cannot write {what} {path}: the disk is full", ref="state.disk-full",
                          hint=f"free space on the disk holding {path.parent} (the spec's state_dir), "
                               "then run the command again")
    return StateError(f"cannot write {what} {path}: {exc.strerror or exc}", ref="state.unwritable",
                      hint=f"check that {path.parent} (the spec's state_dir) is writable by uid {os.geteuid()} "
                           "and its disk is not read-only")


class Journal:
    def __init__(self, state_dir: Path, apply_id: str) -> None:
        folder = state_dir / "journal"
        self.apply_id = apply_id
        self.path = folder / f"{apply_id}.jsonl"
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            prune(folder, datetime.now(UTC))
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            raise unwritable(exc, "the apply journal", self.path) from None

    def write(self, event: str, **fields: object) -> None:
        record = {"ts": _now(), "apply_id": self.apply_id, "event": event, **fields}
        if event == "start":
            record["owner"] = {**owner(), "since": process_start(os.getpid())}
        try:
            os.write(self._fd, (json.dumps(record, default=str) + "\n").encode())
            os.fsync(self._fd)
        except OSError as exc:
            raise unwritable(exc, "the apply journal", self.path) from None

    def close(self) -> None:
        os.close(self._fd)


@dataclass(frozen=True)
class ApplyRecord:
    apply_id: str
    started: str
    finished: str | None
    duration_s: float | None
    actions: int
    result: str
    exit_code: int | None = None
    command: str = "apply"  # or rollback, or heal: all change the stack under the lock, journalled alike
    profiles: tuple[str, ...] = ()  # the profiles it was limited to; () for the whole project

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def read_records(path: Path) -> list[dict]:
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            break  # a torn last line from a killed apply ends the readable record
        if not isinstance(record, dict):
            break  # not a journal line (a damaged or foreign file): what came before is the record
        records.append(record)
    return records


def summarise(path: Path) -> ApplyRecord | None:
    records = read_records(path)
    if not records or not {"apply_id", "ts"} <= records[0].keys():
        return None  # empty, or not a journal (history, status and the metrics crashed on one: QA)
    start, last = records[0], records[-1]
    finish = next((r for r in reversed(records) if r.get("event") == "finish"), None)
    duration = None
    if finish:
        duration = (datetime.fromisoformat(finish["ts"]) - datetime.fromisoformat(start["ts"])).total_seconds()
    done = sum(1 for r in records if r.get("event") == "action-end" and r.get("status", "ok") == "ok")
    if finish:
        result = finish.get("result", "unknown")
    else:
        result = RUNNING if running(start) else _interrupted(last)
    return ApplyRecord(apply_id=start["apply_id"], started=start["ts"],
                       finished=finish["ts"] if finish else None, duration_s=duration, actions=done,
                       result=result, exit_code=finish.get("exit_code") if finish else None,
                       command=command_of(start), profiles=tuple(start.get("profiles") or ()))


HEAL_REASON = "heal "
"""How the reason of a recreate ``reconcile heal`` runs through apply starts (``heal api: …``)."""


def command_of(start: dict) -> str:
    """The command that made the run: the one its ``start`` record names (rollback), else
    ``heal`` when heal ran it (its recreates go through apply's runner, and only their reason
    tells them apart), else ``apply``. An operator reading history must see that heal, not a
    person's apply, replaced a container."""
    if start.get("command"):
        return str(start["command"])
    return "heal" if str(start.get("reason") or "").startswith(HEAL_REASON) else "apply"


def _interrupted(last: dict) -> str:
    """``interrupted during recreate:postgres``: where a killed apply stopped."""
    where = last.get("action")
    return f"interrupted during {where}" if where else f"interrupted after {last.get('event')}"


def running(start: dict) -> bool:
    """The process that wrote this ``start`` record still runs: the same pid, started at the
    same moment (a pid the kernel gave to another process since is not the apply)."""
    holder = start.get("owner")
    if not isinstance(holder, dict) or gone(holder) is not False:
        return False
    since = holder.get("since")
    return since is None or since == process_start(holder["pid"])


def process_start(pid: int) -> str | None:
    """When ``pid`` started, in clock ticks after boot (/proc/PID/stat, field 22); None when
    it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # the command name may hold spaces and parentheses
    return fields[19] if len(fields) > 19 else None


def prune(folder: Path, now: datetime, keep_days: int = KEEP_DAYS, keep_last: int = KEEP_LAST) -> list[Path]:
    """Delete the journals older than ``keep_days`` (by the time in the apply id, else mtime)
    beyond the newest ``keep_last``; never the journal of an apply still running."""
    cutoff = now - timedelta(days=keep_days)
    paths = sorted(folder.glob("*.jsonl"))
    removed = []
    for path in paths[:max(len(paths) - keep_last, 0)]:
        try:
            if _written_at(path) < cutoff and not _still_running(path):
                path.unlink(missing_ok=True)
                removed.append(path)
        except OSError:  # gone meanwhile, or not a file: rotation never stops an apply
            continue
    return removed


def _written_at(path: Path) -> datetime:
    try:
        return datetime.strptime(path.name[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)


def _still_running(path: Path) -> bool:
    records = read_records(path)
    return bool(records) and running(records[0])


def history(state_dir: Path) -> list[ApplyRecord]:
    folder = state_dir / "journal"
    if not folder.is_dir():
        return []
    found = (summarise(p) for p in sorted(folder.glob("*.jsonl")))
    return [r for r in found if r is not None]
