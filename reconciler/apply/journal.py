"""The append-only record of each apply: JSON lines, written before and after every action.

One file per apply under ``<state_dir>/journal/``. Each line is flushed and fsync'd, so a
killed apply leaves an exact record of what had started and what had finished; rollback
reads it, and ``reconcile history`` summarises the files.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path


def new_apply_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Journal:
    def __init__(self, state_dir: Path, apply_id: str) -> None:
        folder = state_dir / "journal"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.apply_id = apply_id
        self.path = folder / f"{apply_id}.jsonl"
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def write(self, event: str, **fields: object) -> None:
        record = {"ts": _now(), "apply_id": self.apply_id, "event": event, **fields}
        os.write(self._fd, (json.dumps(record, default=str) + "\n").encode())
        os.fsync(self._fd)

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

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def read_records(path: Path) -> list[dict]:
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            break  # a torn last line from a killed apply ends the readable record
    return records


def summarise(path: Path) -> ApplyRecord | None:
    records = read_records(path)
    if not records:
        return None
    start, last = records[0], records[-1]
    finish = next((r for r in reversed(records) if r["event"] == "finish"), None)
    duration = None
    if finish:
        duration = (datetime.fromisoformat(finish["ts"]) - datetime.fromisoformat(start["ts"])).total_seconds()
    done = sum(1 for r in records if r["event"] == "action-end" and r.get("status", "ok") == "ok")
    return ApplyRecord(apply_id=start["apply_id"], started=start["ts"],
                       finished=finish["ts"] if finish else None, duration_s=duration, actions=done,
                       result=finish.get("result", "unknown") if finish else _interrupted(last),
                       exit_code=finish.get("exit_code") if finish else None)


def _interrupted(last: dict) -> str:
    """``interrupted during recreate:postgres``: where a killed apply stopped."""
    where = last.get("action")
    return f"interrupted during {where}" if where else f"interrupted after {last['event']}"


def history(state_dir: Path) -> list[ApplyRecord]:
    folder = state_dir / "journal"
    if not folder.is_dir():
        return []
    found = (summarise(p) for p in sorted(folder.glob("*.jsonl")))
    return [r for r in found if r is not None]
