"""A JSON-lines log per run of deploy, backup and restore, in ``<state_dir>/logs/``.

The apply journal records what apply did for rollback; these logs record what any run said,
for people after the fact ("what did last night's backup do?"). One file per run,
``<kind>-<UTC time>.jsonl``, mode 0600 in a 0700 folder; every string value passes the
spec's ``Redactor`` first; files older than 30 days are removed when a run opens, so the
folder needs no cron of its own.

    with runlog.open_run(session, "backup") as log:
        run = backup_services(session, names, progress=log.progress(say))
        log.event("result", backup_id=run.backup_id)

The first line is ``run-start``; leaving the ``with`` writes ``run-finish``: ``ok``, or
``failed`` with the error. (Named apart from apply's own ``start``/``finish`` events, which a
deploy log also holds.)
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from reconciler.apply.journal import unwritable
from reconciler.operate.redact import Redactor

KINDS = frozenset({"deploy", "backup", "restore", "drift", "diagnose", "heal"})
KEEP_DAYS = 30
FOLDER = "logs"
_STAMP = "%Y%m%dT%H%M%SZ"
_NAME = re.compile(r"^(?P<kind>[a-z]+)-(?P<stamp>\d{8}T\d{6}Z)(?:-\d+)?\.jsonl$")


class RunLog:
    def __init__(self, path: Path, kind: str, redactor: Redactor) -> None:
        self.path = path
        self.kind = kind
        self.redactor = redactor
        self.started = time.monotonic()
        self.failed: OSError | None = None  # the write that stopped the log (its disk full)
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)

    def event(self, name: str, **fields: object) -> None:
        """One line: time, run kind, event, then the fields (redacted; a field named like one of
        the first three gets a leading ``_``); a closed log ignores it."""
        if self._fd is None:
            return
        record = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds"), "run": self.kind,
                  "event": name}
        record.update({(f"_{k}" if k in record else k): v for k, v in fields.items()})
        line = json.dumps(self.redactor.redact_data(json.loads(json.dumps(record, default=str))))
        try:
            os.write(self._fd, (line + "\n").encode())
        except OSError as exc:  # its disk filled mid-run: the log stops there, the run goes on
            self.failed = exc   # (apply's journal, which a rollback reads, raises for itself)
            self._drop()

    def _drop(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def progress(self, also: Callable[[str], object] | None = None) -> Callable[[str], None]:
        """A progress callback that logs each message and passes it on to ``also``."""
        def report(message: str) -> None:
            self.event("progress", message=message)
            if also is not None:
                also(message)
        return report

    def close(self, result: str = "ok", **fields: object) -> None:
        if self._fd is None:
            return
        self.event("run-finish", result=result, seconds=round(time.monotonic() - self.started, 2), **fields)
        self._drop()

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, kind, error, tb) -> None:
        if error is None:
            self.close("ok")
            return
        details = getattr(error, "as_dict", None)
        self.close("failed", error=details() if callable(details) else
                   {"error": type(error).__name__, "message": str(error)})


def open_run(session, kind: str, now: datetime | None = None) -> RunLog:
    """A new log for a run of ``kind`` (deploy, backup, restore…); prunes old logs first."""
    if kind not in KINDS:
        raise ValueError(f"unknown run kind {kind!r}")
    now = now or datetime.now(UTC)
    folder = session.state_dir() / FOLDER
    path = folder / f"{kind}-{now.astimezone(UTC).strftime(_STAMP)}.jsonl"
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        prune(folder, now)
        path = _free_name(folder, kind, now)
        log = RunLog(path, kind, Redactor.for_spec(session.loaded))
        log.event("run-start", project=session.spec.project, spec_file=str(session.loaded.file), pid=os.getpid())
        if log.failed is not None:  # not even its first line fits: no empty log left behind
            path.unlink(missing_ok=True)
            raise log.failed
    except OSError as exc:  # a full state dir: said before the run changes anything, not a traceback
        raise unwritable(exc, "the run log", path) from None
    return log


def _free_name(folder: Path, kind: str, now: datetime) -> Path:
    """``kind-<stamp>.jsonl``, or ``kind-<stamp>-2.jsonl`` for a second run in the same second."""
    stamp = now.astimezone(UTC).strftime(_STAMP)
    path = folder / f"{kind}-{stamp}.jsonl"
    count = 1
    while path.exists():
        count += 1
        path = folder / f"{kind}-{stamp}-{count}.jsonl"
    return path


def prune(folder: Path, now: datetime, keep_days: int = KEEP_DAYS) -> list[Path]:
    """Delete run logs older than ``keep_days`` (by the time in the name; else mtime)."""
    cutoff = now - timedelta(days=keep_days)
    removed = []
    for path in sorted(folder.glob("*.jsonl")):
        if _written_at(path) < cutoff:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _written_at(path: Path) -> datetime:
    match = _NAME.match(path.name)
    if match:
        return datetime.strptime(match["stamp"], _STAMP).replace(tzinfo=UTC)
    return datetime.fromtimestamp(path.stat().st_mtime, UTC)
