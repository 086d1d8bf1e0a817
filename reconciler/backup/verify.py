"""Check live data against a backup's record: row counts, critical tables, keys, foreign keys."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from reconciler.backup import metadata
from reconciler.backup.restore import Source, newest_id, pick_backups
from reconciler.engines.base import BackupStats, VerifyReport
from reconciler.session import Session


def verify_services(session: Session, wanted: str = "latest", services: list[str] | None = None,
                    containers: dict[str, str] | None = None) -> tuple[str, dict[str, VerifyReport]]:
    """Each service against its backup (``latest``: its own newest; see ``pick_backups``).
    Returns the newest backup id used and a report per service, each naming its backup."""
    containers = containers or {}
    picks = pick_backups(session, wanted, services, Source.AUTO)
    reports = {}
    for pick in picks:
        target = session.target(pick.service, containers.get(pick.service))
        expected = BackupStats.from_dict(pick.entry["stats"])
        report = session.engine(pick.service).verify(target, expected)
        reports[pick.service] = replace(report, backup_id=pick.backup_id)
    return newest_id(picks), reports


def as_seed_dict(backup_id: str, reports: dict[str, VerifyReport]) -> dict:
    ok = all(r.ok for r in reports.values())
    return {"status": "success" if ok else "failed", "backup_id": backup_id,
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "services": {s: r.as_dict() for s, r in reports.items()}}


__all__ = ["as_seed_dict", "metadata", "verify_services"]
