"""Take a backup of some services: preflight, stream, hash, verify locally, copy to S3, record.

The local copy is primary: if it fails, the backup fails. An S3 failure is recorded
(``storage.s3: failed``) and is a warning, unless ``s3.required``, when it fails the backup.
Metadata is written after the data files, so a metadata file never claims a file that is
not whole. The backup holds its id's claim (``storage.claims``) until its S3 copy ends: a record
still saying ``s3: pending`` with no claim held was killed during the copy (``resume``).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from reconciler.backup import metadata, sharing
from reconciler.backup.metadata import ServiceEntry
from reconciler.backup.meter import NO_METER, CountingWriter, Meter, Task
from reconciler.engines.compress import CompressingWriter, compressed_name
from reconciler.errors import BackupError, ReconcileError, StorageError
from reconciler.session import Session
from reconciler.spec.models import BACKUPABLE_KINDS
from reconciler.storage.base import S3_TIMEOUT_REF, data_key
from reconciler.storage.claims import Claim

Progress = Callable[[str], None]


@dataclass
class BackupRun:
    backup_id: str
    document: dict
    warnings: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)  # backups whose interrupted S3 copy this one made
    claim: Claim | None = None  # held past the run with ``hold_claim``: ``release`` ends it

    def release(self) -> None:
        if self.claim is not None:
            self.claim.release()
            self.claim = None

    @property
    def s3_status(self) -> str:
        return self.document["storage"]["s3"]


def backupable(session: Session, services: list[str] | None = None) -> list[str]:
    """The services a plain ``reconcile backup`` covers: stateful ones of a backupable kind."""
    spec = session.spec
    if services:
        for name in services:
            if name not in spec.services:
                raise BackupError(f"unknown service {name}", ref="backup.unknown-service",
                                  hint=f"services: {', '.join(sorted(spec.services))}")
            if spec.services[name].kind not in BACKUPABLE_KINDS:
                raise BackupError(f"service {name} (kind {spec.services[name].kind.value}) holds no data",
                                  ref="backup.not-backupable", hint="back up a stateful service")
        return list(services)
    return [n for n, s in spec.services.items() if s.stateful and s.kind in BACKUPABLE_KINDS]


def backup_services(session: Session, services: list[str], *, reason: str = "manual",
                    containers: dict[str, str] | None = None,
                    progress: Progress = lambda _: None, meter: Meter = NO_METER,
                    resume_interrupted: bool = False, hold_claim: bool = False) -> BackupRun:
    """Back up ``services`` (from ``containers[service]`` when given, else the live ones). With
    ``resume_interrupted`` (``reconcile backup``; not an apply's backup, which would spend its
    change window on older backups), copy to S3 the backups killed during their copy too. With
    ``hold_claim`` (an apply, which restores and verifies it later) the id's claim is kept in
    ``run.claim``, so no retention deletes the backup until the caller releases it."""
    containers = containers or {}
    services, skipped = _without_partial(session, services)
    targets = _targets(session, services, containers)
    local = session.local
    local.ensure_root()
    local.check_writable()
    if removed := local.sweep_leftovers():
        progress(f"removed {len(removed)} files an interrupted backup left: {', '.join(removed[:3])}"
                 + (" …" if len(removed) > 3 else ""))
    estimates = {s: session.engine(s).estimate_size(t) for s, t in targets.items()}
    last = _last_entries(session, services)
    local.free_space_check(_space_needed(estimates, last), f"the backup of {', '.join(services)}")
    expected = estimates if meter is NO_METER else _expected_sizes(estimates, last)
    taken_at = datetime.now(UTC)
    backup_id, serial, claim = _claim_id(session, taken_at)
    entries: list[ServiceEntry] = []
    try:  # the claim is held to the end of the S3 copy: a record "pending" without it was killed
        try:
            for service, target in targets.items():
                progress(f"backing up {service}")
                with meter.task(f"backing up {service}", expected[service]) as task:
                    entries.append(_backup_one(session, service, target, taken_at, serial, task))
            s3 = "pending" if session.spec.backup.s3.enabled else "disabled"
            doc = metadata.document(backup_id, taken_at, session.spec.project, reason, entries, "ok", s3)
            # a disk that fills at the metadata left whole files no record names: never restored,
            # never pruned, never swept (the claim is released), holding the space that ran out
            local.write_bytes(metadata.key_for(backup_id), metadata.encode(doc))
        except BaseException as exc:
            for entry in entries:  # files of a failed run would have no metadata: never kept
                local.delete(entry.key)
            if isinstance(exc, KeyboardInterrupt):
                exc.add_note("no backup was kept (the files it had begun are removed)")
            raise
        run = BackupRun(backup_id, doc, skipped + missing_critical(session, entries))
        _copy_to_s3(session, run, entries, progress, meter)
        run.claim, claim = (claim, None) if hold_claim else (None, claim)
    finally:
        if claim is not None:
            local.release(claim)
    if resume_interrupted and run.s3_status == "ok":  # S3 works: finish the copies killed midway
        from reconciler.backup import resume

        run.resumed = resume.copy_interrupted(session, run.backup_id, run.warnings, progress, meter)
    return run


def _targets(session: Session, services: list[str], containers: dict[str, str]) -> dict:
    """Each service's running container. One missing while an apply (or a restore, a heal) of the
    project runs is one it is replacing: a scheduled backup then says so, not "run apply"."""
    try:
        return {s: session.target(s, containers.get(s)) for s in services}
    except ReconcileError as exc:
        from reconciler.apply.lock import held_by

        holder = held_by(session.state_dir(), session.spec.project) if exc.ref == "service.missing" else None
        if holder is None or holder.pid == os.getpid():
            raise
        raise BackupError(f"{exc.message}: {holder.running} is changing the stack ({holder.describe()})",
                          ref=exc.ref, hint="back up once it has finished (an apply backs up what it replaces "
                                            "first); no backup was taken") from None


def _without_partial(session: Session, services: list[str]) -> tuple[list[str], list[str]]:
    """``services`` but those a restore is replacing, or left partial: a backup of them would
    be taken for a good one (and its retention could delete the full backup the restore was
    loading). They are skipped with a warning; none left is an error."""
    from reconciler.backup import restoring

    partial = {s: r for s, r in restoring.open_records(session.loaded.state_dir()).items() if s in services}
    if not partial:
        return services, []
    warnings = [f"{s} was not backed up: a restore of backup {r.get('backup_id')} is replacing its data or stopped "
                f"halfway (its data is partial); {restoring.advice(s, r)}" for s, r in sorted(partial.items())]
    rest = [s for s in services if s not in partial]
    if not rest:
        raise BackupError(warnings[0] if len(warnings) == 1 else "; ".join(warnings),
                          ref="backup.restore-interrupted", hint="finish the restore first; no backup was taken")
    return rest, warnings


def _claim_id(session: Session, taken_at: datetime) -> tuple[str, int, Claim]:
    """A backup id no other backup has or is taking: ``YYYY-MM-DD-HHMMSS``, then ``…-2``, ``…-3``
    for more in the same second. Claimed atomically in the local store, so two backups
    started at once never share an id, nor (named after it) a file."""
    base = metadata.new_backup_id(taken_at)
    for serial in itertools.count(1):
        backup_id = base if serial == 1 else f"{base}-{serial}"
        claim = session.local.reserve(metadata.key_for(backup_id))
        if claim is not None:
            return backup_id, serial, claim
    raise AssertionError("unreachable")


def _last_entries(session: Session, services: list[str]) -> dict[str, dict]:
    """Each service's entry in its newest backup in the local store, if it has one."""
    last: dict[str, dict] = {}
    for doc in metadata.load_all(session.local, project=session.spec.project):  # oldest first: the newest wins
        last.update({s: entry for s, entry in doc["services"].items() if s in services})
    return last


GROWTH = 2
"""How much bigger than its last backup a backup may come out, for the free-space check."""


def _space_needed(estimates: dict[str, int], last: dict[str, dict]) -> int:
    """What the backups will take on disk: twice the last backup's file of a service that has
    one; else what its engine estimates (the live size: a dump compresses 5 to 20 times, so a
    check against it refused disks with room for a hundred backups). A backup that still
    outgrows the disk fails cleanly, its partial file removed."""
    return sum(GROWTH * size if isinstance(size := (last.get(service) or {}).get("size"), int) and size > 0
               else estimate for service, estimate in estimates.items())


def _expected_sizes(estimates: dict[str, int], last: dict[str, dict]) -> dict[str, int]:
    """How many bytes each dump will stream, for the progress bar: the last backup's, which
    is close, else the engine's estimate (the live size, which a dump seldom matches)."""
    expected = dict(estimates)
    for service, entry in last.items():
        if raw := (entry.get("stats") or {}).get("raw_bytes"):
            expected[service] = int(raw)
    return expected


def _backup_one(session: Session, service: str, target, taken_at: datetime, serial: int,
                task: Task) -> ServiceEntry:
    engine = session.engine(service)
    compression = session.spec.backup.compression
    key = data_key(service, taken_at, "." + compressed_name(engine.file_extension, compression), serial)
    with session.local.write_checked(key) as checked:  # read back while written: no second pass
        writer = CompressingWriter(checked.handle, compression, engine.zstd)
        stats = engine.backup(target, CountingWriter(writer, task))
        written = writer.finish()
        checked.expect(written.sha256)
    return ServiceEntry(service, key, written.size, written.sha256, compression.value, stats,
                        str(session.local.path_of(key)))


def missing_critical(session: Session, entries: list[ServiceEntry]) -> list[str]:
    """A warning per service whose backup lacks critical tables the spec names (a typo, or
    taken before the app made its tables): nothing noticed it until a restore was refused.
    pgcatalog (and psycopg with it) is imported only for such a service: a cache-only backup
    would spend ~0.1 s of its run importing them."""
    warnings = []
    for entry in entries:
        critical = session.spec.services[entry.service].backup.critical_tables
        if not (critical and entry.stats.databases):
            continue
        from reconciler.engines.pgcatalog import backed_up

        if missing := [t for t in critical if t not in backed_up([t], entry.stats)]:
            warnings.append(f"{entry.service}: the backup holds no table {', '.join(missing)} of "
                            f"backup.critical_tables: check the names in the spec (a restore of this backup "
                            f"cannot check them)")
    return warnings


def _copy_to_s3(session: Session, run: BackupRun, entries: list[ServiceEntry], progress: Progress,
                meter: Meter) -> None:
    settings = session.spec.backup.s3
    if not settings.enabled:  # the metadata says so already
        return
    try:
        store = session.s3
        if shared := sharing.others_in(store, session.spec.project):
            raise StorageError(f"{store.describe()} holds backups of project {', '.join(shared)}: not copied "
                               "there, where the two projects' files would overwrite each other",
                               ref="storage.shared", hint=sharing.HINT)
        _abort_stale_uploads(store, progress)
        for entry in entries:
            progress(f"copying {entry.key} to S3")
            with meter.task(f"uploading {entry.service}", entry.size) as task:
                store.put(session.local.path_of(entry.key), entry.key, entry.sha256, task.advance)
        with_s3 = [_with_s3_path(session, e) for e in entries]
        doc = _record(session, run, with_s3, "ok")
        store.write_bytes(metadata.key_for(run.backup_id), metadata.encode(doc))
    except ReconcileError as exc:
        _record(session, run, entries, "failed", exc.message)
        if settings.required:
            raise BackupError(f"backup {run.backup_id} is safe locally but the S3 copy failed: {exc.message}",
                              ref="backup.s3-required", hint=exc.hint or "check the S3 settings") from None
        run.warnings.append(f"S3 copy failed (local backup {run.backup_id} is fine): {exc.message}"
                            + (f"; hint: {exc.hint}" if exc.hint else ""))
    except KeyboardInterrupt as stop:  # the local backup is whole: say so in its record, not "pending"
        _record(session, run, entries, "failed", "interrupted during the S3 copy")
        stop.add_note(f"backup {run.backup_id} is whole in the local folder; its S3 copy did not finish "
                      "(recorded as failed)")
        raise


def _abort_stale_uploads(store, progress: Progress) -> None:
    """Uploads of backups killed mid-copy, still billed by the provider; best effort (a
    store that refuses the listing is no reason to fail this backup's copy)."""
    try:
        aborted = store.abort_stale_uploads()
    except ReconcileError as exc:
        if exc.ref == S3_TIMEOUT_REF:  # a server that does not answer would not take the copy either
            raise
        return
    if aborted:
        progress(f"aborted {len(aborted)} unfinished S3 uploads of interrupted backups")


def s3_path(session: Session, key: str) -> str:
    """Where the metadata says a file is kept in S3: ``s3://bucket/prefix/key``."""
    settings = session.spec.backup.s3
    return f"s3://{settings.bucket}/{settings.prefix}{key}"


def _with_s3_path(session: Session, entry: ServiceEntry) -> ServiceEntry:
    return ServiceEntry(entry.service, entry.key, entry.size, entry.sha256, entry.compression,
                        entry.stats, entry.local_path, s3_path(session, entry.key))


def _record(session: Session, run: BackupRun, entries: list[ServiceEntry], s3: str, error: str = "") -> dict:
    doc = run.document
    run.document = metadata.document(run.backup_id, _taken(doc), doc["project"], doc["reason"],
                                     entries, "ok", s3, error)
    session.local.write_bytes(metadata.key_for(run.backup_id), metadata.encode(run.document))
    return run.document


def _taken(doc: dict) -> datetime:
    return datetime.fromisoformat(doc["timestamp"].replace("Z", "+00:00"))


__all__ = ["BackupRun", "StorageError", "backup_services", "backupable"]
