"""Check live data against a backup's record: row counts, critical tables, keys, foreign keys."""

from __future__ import annotations

from datetime import UTC, datetime

from reconciler.backup import metadata
from reconciler.backup.restore import Source, find_backup
from reconciler.engines.base import BackupStats, VerifyReport
from reconciler.session import Session


def verify_services(session: Session, wanted: str = "latest", services: list[str] | None = None,
                    containers: dict[str, str] | None = None) -> tuple[str, dict[str, VerifyReport]]:
    containers = containers or {}
    doc = find_backup(session, wanted, services or [], Source.AUTO)
    held = doc.get("services") or {}
    chosen = services or [s for s in held if s in session.spec.services]
    reports = {}
    for service in chosen:
        target = session.target(service, containers.get(service))
        expected = BackupStats.from_dict(held[service]["stats"])
        reports[service] = session.engine(service).verify(target, expected)
    return doc["backup_id"], reports


def as_seed_dict(backup_id: str, reports: dict[str, VerifyReport]) -> dict:
    ok = all(r.ok for r in reports.values())
    return {"status": "success" if ok else "failed", "backup_id": backup_id,
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "services": {s: r.as_dict() for s, r in reports.items()}}


__all__ = ["as_seed_dict", "metadata", "verify_services"]
