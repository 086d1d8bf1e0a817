"""Restore services from a backup: local copy first (checksum verified), S3 as the fallback.

A copy fetched from S3 is verified and kept locally, so the next restore is local again.
The engine verifies what it restored against the backup's own counts before reporting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from reconciler.backup import metadata
from reconciler.engines.base import BackupStats, RestoreStats
from reconciler.engines.compress import DecompressingReader
from reconciler.errors import ReconcileError, RestoreError, StorageError
from reconciler.session import Session
from reconciler.spec.models import Compression

Progress = Callable[[str], None]


class Source(StrEnum):
    AUTO = "auto"
    LOCAL = "local"
    S3 = "s3"


@dataclass
class RestoreRun:
    backup_id: str
    results: dict[str, RestoreStats] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        """The seed's shape: status, backup_id, restore_timestamp, then per service."""
        out: dict = {"status": "success", "backup_id": self.backup_id,
                     "restore_timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z")}
        for service, stats in self.results.items():
            entry = stats.as_dict()
            entry["source"] = self.sources.get(service)
            out[service] = entry
        if self.notes:
            out["notes"] = self.notes
        return out


def find_backup(session: Session, wanted: str, services: list[str], source: Source) -> dict:
    """The metadata document to restore from, looked up locally first, then on S3."""
    docs = [] if source is Source.S3 else metadata.load_all(session.local)
    try:
        return metadata.choose(docs, wanted, services)
    except RestoreError:
        if source is Source.LOCAL or session.s3 is None:
            raise
    return metadata.choose(metadata.load_all(session.s3), wanted, services)


def fetch(session: Session, entry: dict, source: Source, notes: list[str]) -> tuple[Path, str]:
    """A verified local file for one service's entry, downloading it from S3 when needed."""
    key, sha = entry["key"], entry["checksum"]
    if source is not Source.S3:
        try:
            return session.local.verify(key, sha), "local"
        except StorageError as exc:
            if source is Source.LOCAL or session.s3 is None:
                raise RestoreError(f"local copy of {key} is unusable: {exc.message}",
                                   ref="restore.local", hint="restore with --source s3 if S3 holds a copy") from None
            notes.append(f"local copy of {key} unusable ({exc.message}); using S3")
    if session.s3 is None:
        raise RestoreError(f"S3 is not enabled, cannot fetch {key}", ref="restore.no-s3",
                           hint="enable backup.s3 in the spec or restore with --source local")
    return session.s3.get(key, session.local.path_of(key), sha), "s3"


def restore_services(session: Session, wanted: str = "latest", services: list[str] | None = None, *,
                     source: Source = Source.AUTO, containers: dict[str, str] | None = None,
                     progress: Progress = lambda _: None) -> RestoreRun:
    containers = containers or {}
    doc = find_backup(session, wanted, services or [], source)
    held = doc.get("services") or {}
    chosen = services or [s for s in held if s in session.spec.services]
    missing = [s for s in chosen if s not in held]
    if missing:
        raise RestoreError(f"backup {doc['backup_id']} holds no {', '.join(missing)}",
                           ref="restore.not-in-backup", hint="pick another backup id")
    run = RestoreRun(doc["backup_id"])
    for service in chosen:
        entry = held[service]
        path, origin = fetch(session, entry, source, run.notes)
        progress(f"restoring {service} from {origin} copy of {entry['key']}")
        run.sources[service] = origin
        run.results[service] = _restore_one(session, service, entry, path, containers.get(service))
    return run


def _restore_one(session: Session, service: str, entry: dict, path: Path, container: str | None) -> RestoreStats:
    target = session.target(service, container)
    stats = BackupStats.from_dict(entry["stats"])
    with path.open("rb") as raw:
        reader = DecompressingReader(raw, Compression(entry["compression"]), entry["checksum"])
        try:
            result = session.engine(service).restore(target, reader, stats)
        except ReconcileError:
            raise
        except OSError as exc:
            raise RestoreError(f"reading {path.name} failed: {exc.strerror}", ref="restore.io",
                               hint="check the disk holding the backups") from None
    if result.verify is not None and not result.verify.ok:
        raise RestoreError(f"{service} restored but does not match the backup: {result.verify.summary()}",
                           ref="restore.verify", hint="the backup may be incomplete; try an older one")
    return result
