"""Restores that replace live data in place, recorded while they run.

A cache restore flushes the server first and a volume restore wipes the folders first: one
that stops halfway (killed, the machine lost, an error) leaves the live data partial, and
nothing about the container says so. ``begin`` writes ``<state_dir>/restoring/<service>.json``
(who runs it, from which backup) before the live data is touched, ``end`` removes it once the
restore is done and verified. A record whose process is gone is an interrupted restore:
``health`` calls the service critical and ``diagnose``/``heal`` report it and start, restart
or recreate nothing until a restore of it succeeds. A PostgreSQL restore needs none: it loads
a staging database and swaps it in whole.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from reconciler.owner import gone, owner
from reconciler.spec.models import Kind
from reconciler.storage.files import atomic_write

FOLDER = "restoring"
IN_PLACE = frozenset({Kind.REDIS, Kind.GENERIC})
RULE = "restore-interrupted"


def begin(state_dir: Path, service: str, backup_id: str, running: bool) -> Path:
    """Record the restore about to replace ``service``'s data, and whether it was ``running``:
    a restore that fails or is cut off leaves a generic service stopped, and the one that
    finally succeeds starts it again if it ran before the first attempt."""
    folder = state_dir / FOLDER
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{service}.json"
    earlier = interrupted(state_dir, service) or {}
    record = {"owner": owner(), "backup_id": backup_id,
              "started": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
              "was_running": bool(earlier.get("was_running")) or running}
    with atomic_write(path) as handle:  # whole or absent: a torn record would read as none
        handle.write(json.dumps(record).encode())
    return path


def end(path: Path) -> bool:
    """The restore succeeded: forget it. True when the service ran before the first attempt."""
    try:
        was_running = bool(json.loads(path.read_text(encoding="utf-8")).get("was_running"))
    except (OSError, ValueError, AttributeError):
        was_running = False
    path.unlink(missing_ok=True)
    return was_running


def interrupted(state_dir: Path, service: str) -> dict | None:
    """The record of ``service``'s restore if it stopped before finishing (its process is
    gone, or cannot be asked: another host or pid namespace); None when there is none or it
    is still running."""
    try:
        record = json.loads((state_dir / FOLDER / f"{service}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or gone(record.get("owner") or {}) is False:
        return None
    return record


def open_records(state_dir: Path) -> dict[str, dict]:
    """Every restore on record, running or interrupted, by service: the data of each is
    partial until it ends. A backup must not take it, and retention must keep the backup it
    was loading (QA: a nightly backup of a half-refilled cache, then its retention deleted
    the one full backup)."""
    found = {}
    for path in sorted((state_dir / FOLDER).glob("*.json")) if (state_dir / FOLDER).is_dir() else ():
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict):
            found[path.stem] = record
    return found


def advice(service: str, record: dict) -> str:
    return (f"run `reconcile restore {record.get('backup_id') or 'latest'} {service} --yes` again; "
            "until a restore of it succeeds its data is partial")
