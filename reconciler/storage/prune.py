"""Applying retention to one store: decide per service, delete what the decision removes.

Each store (local folder, S3 bucket) is pruned on its own, from the metadata it holds and
the files it actually has, so a backup that never reached S3 does not count towards S3's
retention, and a local copy removed by hand does not shift local decisions. Timestamps
come from the metadata, never from file mtimes (a copy or restore changes mtimes).

Deletion keeps the metadata true at every step. A backup's metadata first moves the services
whose files go from ``services`` to ``pruned`` (so a backup that keeps other files never names
a deleted one: ``backups verify`` and restore would call it lost), then the data files are
deleted, then the metadata of a backup that has no file left in this store. A prune cut short
leaves files its metadata names under ``pruned``: the next prune deletes them and finishes.
Metadata that cannot be read, and files no metadata names, are reported and left alone.
Metadata that is listed but gone when read was deleted meanwhile by another prune: it is
skipped, not reported.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timezone
from pathlib import PurePosixPath

from reconciler.errors import StorageError
from reconciler.spec.models import Retention
from reconciler.storage.base import METADATA_FOLDER, CorruptObject, Store, StoreUnavailable, metadata_key
from reconciler.storage.retention import Decision, Snapshot, decide


@dataclass(frozen=True)
class BackupRecord:
    """What prune needs from one backup's metadata: id, time, verified, files per service.

    ``files`` maps a service name to its key in the store (``postgres/postgres-….sql.zst``).
    """

    backup_id: str
    timestamp: datetime
    files: Mapping[str, str]
    verified: bool = False
    pruned: Mapping[str, str] = field(default_factory=dict)  # service: key retention removes
    project: str | None = None  # None: the seed's metadata, which names no project

    @property
    def metadata_key(self) -> str:
        return metadata_key(self.backup_id)

    @classmethod
    def from_metadata(cls, doc: Mapping[str, object]) -> BackupRecord:
        """Read the seed's metadata JSON (see module doc of ``reconciler.storage``).

        Services are the entries of ``services`` if present, else every top-level object
        that has a ``file`` field (the seed's ``postgres: {file: …}`` shape). The key is
        always ``<service>/<file name>``: the layout names folders by service.
        """
        backup_id = doc.get("backup_id")
        if not isinstance(backup_id, str) or not backup_id:
            raise ValueError("metadata has no backup_id")
        entries = doc.get("services")
        if not isinstance(entries, Mapping):
            entries = {name: value for name, value in doc.items()
                       if isinstance(value, Mapping) and "file" in value}
        pruned = doc.get(PRUNED)
        project = doc.get("project")
        return cls(backup_id, parse_timestamp(doc.get("timestamp")), _keys(entries),
                   doc.get("verified") is True, _keys(pruned if isinstance(pruned, Mapping) else {}),
                   project if isinstance(project, str) and project else None)


PRUNED = "pruned"  # metadata field: entries of services whose files retention deleted


def _keys(entries: Mapping) -> dict[str, str]:
    return {str(name): f"{name}/{PurePosixPath(str(entry['file'])).name}"
            for name, entry in entries.items() if isinstance(entry, Mapping) and entry.get("file")}


def parse_timestamp(value: object) -> datetime:
    """ISO 8601 from metadata; a timestamp without offset is UTC (the seed writes UTC)."""
    if not isinstance(value, str):
        raise ValueError("metadata has no timestamp")
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Unreadable:
    key: str
    reason: str


@dataclass(frozen=True)
class PruneReport:
    """What prune decided and did (or, with ``dry_run``, would do) in one store."""

    store: str
    dry_run: bool
    decisions: dict[str, Decision] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    deleted_metadata: list[str] = field(default_factory=list)
    updated_metadata: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)
    others: dict[str, int] = field(default_factory=dict)  # other projects' backups here, left alone


CORRUPT = "its bytes are not the ones written (SHA-256 mismatch): corrupt or changed"
"""Why a metadata file that failed its checksum is skipped (an ``unreadable`` reason)."""


def load_records(store: Store) -> tuple[list[BackupRecord], list[Unreadable]]:
    """Every backup's metadata in ``store``; unreadable ones are returned, not raised.

    A store that fails to read (unreachable, permission denied) still raises.
    """
    records: list[BackupRecord] = []
    unreadable: list[Unreadable] = []
    for item in store.list(f"{METADATA_FOLDER}/"):
        if not item.key.endswith(".json"):
            continue
        try:
            raw = read_unless_vanished(store, item.key)
        except CorruptObject:
            unreadable.append(Unreadable(item.key, CORRUPT))
            continue
        if raw is None:
            continue
        try:
            doc = json.loads(raw)
            if not isinstance(doc, Mapping):
                raise ValueError("not a JSON object")
            records.append(BackupRecord.from_metadata(doc))
        except (ValueError, KeyError, TypeError) as exc:
            unreadable.append(Unreadable(item.key, str(exc)))
    return records, unreadable


def read_unless_vanished(store: Store, key: str) -> bytes | None:
    """The file's bytes, or None when it was listed but is gone now: a prune running at the
    same time deleted it, which is no reason to abort this one. Stores report a missing key
    as a plain StorageError, so "gone" is asked of the store again rather than read from the
    message; any other failure (or a store that cannot answer) is raised as it was. A store
    that could not be used (``StoreUnavailable``: stuck, down, refusing us) is not asked again:
    against a stuck server that doubled the wait, and its answer would prove nothing."""
    try:
        return store.read_bytes(key)
    except StoreUnavailable:
        raise
    except StorageError:
        if _still_there(store, key):
            raise
        return None


def _still_there(store: Store, key: str) -> bool:
    try:
        return store.exists(key)
    except (StorageError, OSError):
        return True  # cannot tell: treat the read failure as the real error


def snapshots_by_service(records: Sequence[BackupRecord],
                         present: set[str]) -> dict[str, list[Snapshot]]:
    """Per service, the backups whose file for that service is in this store."""
    grouped: dict[str, list[Snapshot]] = defaultdict(list)
    for record in records:
        for service, key in record.files.items():
            if key in present:
                grouped[service].append(Snapshot(record.backup_id, record.timestamp,
                                                 record.verified))
    return dict(grouped)


@dataclass(frozen=True)
class PrunePlan:
    """What one prune does, in this order: ``marks`` (per backup id, the services whose
    metadata entries move to ``pruned``), delete ``doomed`` data keys, delete ``emptied``
    metadata keys."""

    decisions: dict[str, Decision]
    doomed: list[str]
    marks: dict[str, list[str]]
    emptied: list[str]


def plan_prune(records: Sequence[BackupRecord], present: set[str], retention: Retention,
               protected: Collection[str] = frozenset()) -> PrunePlan:
    """Pure part of prune. A key some decision keeps is never deleted, whichever service
    removes it; a key an interrupted prune marked is deleted unless a backup names it again;
    a ``protected`` key (another project's, in a shared store) never is."""
    by_id = {record.backup_id: record for record in records}
    decisions = {service: decide(snaps, retention)
                 for service, snaps in sorted(snapshots_by_service(records, present).items())}
    doomed: set[str] = set()
    kept: set[str] = set()
    for service, decision in decisions.items():
        doomed.update(by_id[i].files[service] for i in decision.remove)
        kept.update(by_id[i].files[service] for i in decision.keep)
    doomed -= kept
    named = {key for record in records for key in record.files.values()}
    doomed |= {key for record in records for key in record.pruned.values()
               if key in present and key not in named}
    doomed -= set(protected)
    marks = {record.backup_id: sorted(s for s, key in record.files.items() if key in doomed)
             for record in records}
    emptied = [record.metadata_key for record in records
               if (marks[record.backup_id] or any(key in doomed for key in record.pruned.values())
                   or (record.pruned and not record.files))
               and not any(key in present and key not in doomed for key in record.files.values())]
    return PrunePlan(decisions, sorted(doomed), {i: s for i, s in marks.items() if s},
                     sorted(key for key in emptied if key in present))


def prune(store: Store, records: Sequence[BackupRecord], retention: Retention,
          dry_run: bool = False, unreadable: Sequence[Unreadable] = (),
          others: Sequence[BackupRecord] = (), keep_ids: Collection[str] = ()) -> PruneReport:
    """Apply ``retention`` to ``store``. With ``dry_run`` nothing is deleted.

    ``records`` should be this store's own metadata (``load_records(store)``); ``others``,
    other projects' backups in it, whose files are never deleted; ``keep_ids``, backups that
    must stay whatever retention decides (one a restore is loading, or stopped halfway in).
    """
    present = {item.key for item in store.list()}
    theirs = {key for record in others for key in (*record.files.values(), *record.pruned.values())}
    held = {key for record in records if record.backup_id in keep_ids for key in record.files.values()}
    plan = plan_prune(records, present, retention, protected=theirs | held)
    report = PruneReport(store.describe(), dry_run, plan.decisions, [], [], [],
                         _kept_keys(records, plan.decisions), list(unreadable),
                         dict(Counter(record.project or "" for record in others)))
    if dry_run:
        report.deleted.extend(plan.doomed)
        report.deleted_metadata.extend(plan.emptied)
        return report
    planned = len(plan.doomed) + len(plan.emptied)
    try:
        for backup_id, services in plan.marks.items():
            if _mark_pruned(store, metadata_key(backup_id), services):
                report.updated_metadata.append(metadata_key(backup_id))
        for keys, done in ((plan.doomed, report.deleted), (plan.emptied, report.deleted_metadata)):
            for key in keys:
                store.delete(key)
                done.append(key)
    except StorageError as exc:
        raise PrunePartlyDone(exc, report, planned) from exc
    return report


def _mark_pruned(store: Store, key: str, services: Sequence[str]) -> bool:
    """Move ``services`` from the metadata's ``services`` to ``pruned``, before their files
    go; False when the metadata went meanwhile (another prune finished this backup)."""
    raw = read_unless_vanished(store, key)
    if raw is None:
        return False
    doc = json.loads(raw)
    entries = doc.get("services") if isinstance(doc.get("services"), dict) else doc  # the seed's shape
    pruned = doc.setdefault(PRUNED, {})
    when = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    for service in services:
        if isinstance(entries.get(service), dict):
            pruned[service] = {**entries.pop(service), "pruned_at": when}
    store.write_bytes(key, (json.dumps(doc, indent=2) + "\n").encode())
    return True


class PrunePartlyDone(StorageError):
    """A delete failed halfway: ``report`` says what was deleted before it, so the caller
    can tell the operator (and a re-run finishes the job: deleting is idempotent)."""

    def __init__(self, cause: StorageError, report: PruneReport, planned: int) -> None:
        done = len(report.deleted) + len(report.deleted_metadata)
        super().__init__(f"{cause.message} (after deleting {done} of {planned} files)",
                         hint=f"{cause.hint}; then run `reconcile backups prune` again"
                         if cause.hint else "run `reconcile backups prune` again",
                         location=cause.location, ref=cause.ref)
        self.report = report


def _kept_keys(records: Sequence[BackupRecord], decisions: Mapping[str, Decision]) -> list[str]:
    by_id = {record.backup_id: record for record in records}
    return sorted({by_id[i].files[service] for service, decision in decisions.items()
                   for i in decision.keep})


def prune_store(store: Store, retention: Retention, dry_run: bool = False,
                project: str | None = None, keep_ids: Collection[str] = ()) -> PruneReport:
    """Load the store's metadata and prune it: the one call the CLI needs per store. With
    ``project``, only that project's backups (and the seed's, which name none) are pruned;
    ``keep_ids`` are kept whatever retention decides (``prune``)."""
    records, unreadable = load_records(store)
    ours = [r for r in records if project is None or r.project in (None, project)]
    others = [r for r in records if project is not None and r.project not in (None, project)]
    return prune(store, ours, retention, dry_run, unreadable, others, keep_ids)
