"""Restore services from a backup: local copy first (checksum verified), S3 as the fallback.

Every file is fetched and checked before any live data is replaced. A copy fetched from S3
is verified and kept locally, with local metadata naming it, so the next restore is local
again. The engine verifies what it restored against the backup's own counts before reporting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from reconciler.backup import metadata, restoring, sharing
from reconciler.backup.meter import NO_METER, CountingReader, Meter, Task
from reconciler.engines.base import BackupStats, RestoreStats
from reconciler.engines.compress import DecompressingReader
from reconciler.errors import ReconcileError, RestoreError, StorageError
from reconciler.session import Session
from reconciler.spec.models import Compression, Kind
from reconciler.storage.prune import PRUNED, parse_timestamp

Progress = Callable[[str], None]


class Source(StrEnum):
    AUTO = "auto"
    LOCAL = "local"
    S3 = "s3"


@dataclass(frozen=True)
class Pick:
    """One service and the backup it is restored from (or verified against)."""

    service: str
    doc: dict

    @property
    def backup_id(self) -> str:
        return self.doc["backup_id"]

    @property
    def entry(self) -> dict:
        return self.doc["services"][self.service]


@dataclass
class RestoreRun:
    backup_id: str
    results: dict[str, RestoreStats] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    backups: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        """The seed's shape: status, backup_id, restore_timestamp, then per service (with the
        backup it came from: "latest" takes each service's own newest backup)."""
        out: dict = {"status": "success", "backup_id": self.backup_id,
                     "restore_timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z")}
        for service, stats in self.results.items():
            entry = stats.as_dict()
            entry["source"] = self.sources.get(service)
            entry["backup_id"] = self.backups.get(service, self.backup_id)
            out[service] = entry
        if self.notes:
            out["notes"] = self.notes
        return out


class _Catalogue:
    """Metadata documents, local first. S3's are read when local has no answer, when the local
    document is a partial copy (see ``_record_local_copy``) and S3 may know more, and for
    ``latest``, whose newest backup may be on S3 only (its local copy lost or pruned); an S3
    that cannot be read then leaves the local answer, with a note saying so."""

    def __init__(self, session: Session, source: Source) -> None:
        self.session = session
        self.source = source
        self._local: list[dict] | None = None
        self._s3: list[dict] | None = None
        self._others: list[dict] = []  # other projects' backups in a store they share
        self.notes: list[str] = []

    def choose(self, wanted: str, services: list[str]) -> dict:
        """``metadata.choose``, and a named backup must hold every one of ``services``."""
        if self.source is not Source.S3:
            if self._local is None:
                self._local = self._load(self.session.local, "local")
            try:
                doc = _holding(metadata.choose(self._local, wanted, services), services)
                if wanted == "latest" and self.source is Source.AUTO:
                    return self._newer_on_s3(doc, services)
                if not (doc.get("partial") and self._s3_allowed()):
                    return doc
                try:
                    return self._from_s3(wanted, services)
                except ReconcileError:
                    return doc
            except RestoreError as local:
                if not self._s3_allowed():
                    raise
                try:
                    return self._from_s3(wanted, services)
                except RestoreError as remote:
                    # the id is here but lacks a service, and S3 never had it: say the former
                    if local.ref == "restore.not-in-backup" and remote.ref == "restore.unknown-id":
                        raise local from None
                    raise
                except StorageError as down:  # S3's error alone hid that the local folder lacks it
                    if local.ref != "restore.unknown-id":
                        raise
                    raise RestoreError(f"{local.message} in the local folder, and S3 could not be read to look "
                                       f"for it there: {down.message}", ref=down.ref, hint=down.hint) from None
        return self._from_s3(wanted, services)

    def _s3_allowed(self) -> bool:
        return self.source is not Source.LOCAL and self.session.s3 is not None

    def _newer_on_s3(self, doc: dict, services: list[str]) -> dict:
        """S3's newest backup of ``services`` when it is newer than the local ``doc`` (or the
        same, and the local copy is partial); ``doc`` when S3 is off or has none newer."""
        if not self.session.spec.backup.s3.enabled:
            return doc
        try:
            remote = self._from_s3("latest", services)
        except ReconcileError as exc:
            if exc.ref not in ("restore.none", "restore.not-in-backup"):
                self.notes.append(f"S3 could not be read ({exc.message}): the newest local backup of "
                                  f"{', '.join(services)} is used, and a newer one may exist there")
            return doc
        newer = (parse_timestamp(remote["timestamp"]), remote["backup_id"]) > \
            (parse_timestamp(doc["timestamp"]), doc["backup_id"])
        same_but_whole = remote["backup_id"] == doc["backup_id"] and doc.get("partial")
        return remote if newer or same_but_whole else doc

    def _from_s3(self, wanted: str, services: list[str]) -> dict:
        if self.session.s3 is None:
            raise RestoreError("S3 is not enabled", ref="restore.no-s3",
                               hint="enable backup.s3 in the spec or restore with --source local")
        if self._s3 is None:
            self._s3 = self._load(self.session.s3, "S3")
        return _holding(metadata.choose(self._s3, wanted, services), services)

    def _load(self, store, where: str) -> list[dict]:
        unreadable: list[tuple[str, str]] = []
        docs = metadata.load_all(store, unreadable, project=self.session.spec.project, others=self._others)
        self.notes += [f"{key} in the {where} store was skipped ({reason}): the backup it records was not "
                       "considered" for key, reason in unreadable]
        return docs

    def elsewhere(self, wanted: str) -> RestoreError | None:
        """The error for an id the chosen source lacks: it is in the local folder while
        ``--source s3`` was asked (or on S3 while ``--source local`` was), or S3 was not looked
        at since the spec disables it."""
        if self.source is Source.S3 and any(d["backup_id"] == wanted for d in self._local_docs()):
            return RestoreError(f"backup {wanted} is not on S3: its metadata is in the local folder only",
                                ref="restore.unknown-id", hint="restore it with --source local (or auto)")
        if self.source is Source.LOCAL and any(d["backup_id"] == wanted for d in self._s3_docs()):
            return RestoreError(f"backup {wanted} is not in the local folder: its metadata is on S3 only",
                                ref="restore.unknown-id", hint="restore it with --source s3 (or auto)")
        if self.source is not Source.S3 and not self.session.spec.backup.s3.enabled:
            return RestoreError(f"no backup with id {wanted} in the local folder (S3 is disabled in the spec, "
                                "so it was not looked for there)", ref="restore.unknown-id",
                                hint=self.ids_hint(wanted))
        return None

    def ids_hint(self, wanted: str) -> str:
        """What was found instead of ``wanted`` (a typo'd id): the closest id and the newest."""
        import difflib

        docs = sorted((self._local or []) + (self._s3 or []), reverse=True,
                      key=lambda doc: (parse_timestamp(doc["timestamp"]), doc["backup_id"]))
        ids = list(dict.fromkeys(doc["backup_id"] for doc in docs))
        if not ids:
            return "no backup of this project was found: list them with: reconcile backups list"
        close = difflib.get_close_matches(wanted, ids, n=1)
        return (f"{f'did you mean {close[0]}? ' if close else ''}newest: {', '.join(ids[:3])}"
                f"{' …' if len(ids) > 3 else ''} (all of them: reconcile backups list)")

    def _s3_docs(self) -> list[dict]:
        """S3's documents, for an error about an id: none when S3 is off or cannot be read."""
        if self._s3 is None and self.session.s3 is not None:
            try:
                self._s3 = self._load(self.session.s3, "S3")
            except ReconcileError:
                return []
        return self._s3 or []

    def _local_docs(self) -> list[dict]:
        if self._local is None:
            try:
                self._local = self._load(self.session.local, "local")
            except ReconcileError:
                return []
        return self._local

    def foreign(self, wanted: str) -> RestoreError | None:
        """The error for an id that is another project's backup (a store the two share)."""
        owners = sharing.projects_of([doc for doc in self._others if doc["backup_id"] == wanted])
        if not owners:
            return None
        return RestoreError(f"backup {wanted} is one of project {', '.join(owners)}, not of "
                            f"{self.session.spec.project}", ref="restore.other-project", hint=sharing.HINT)


def _holding(doc: dict, services: list[str]) -> dict:
    held = doc.get("services") or {}
    missing = [name for name in services if name not in held]
    if missing and doc.get("partial"):  # a local record a restore from S3 wrote: S3's names more
        raise RestoreError(f"the local copy of backup {doc['backup_id']} holds no {', '.join(missing)} (a restore "
                           f"from S3 kept only {', '.join(held) or 'nothing'} here)", ref="restore.not-in-backup",
                           hint="restore it with --source auto (or s3): S3 holds the whole backup")
    if missing:
        pruned = [name for name in missing if name in (doc.get(PRUNED) or {})]
        why = f" (retention deleted the file of {', '.join(pruned)})" if pruned else ""
        raise RestoreError(f"backup {doc['backup_id']} holds no {', '.join(missing)}{why}",
                           ref="restore.not-in-backup",
                           hint=f"it holds {', '.join(held) or 'nothing'}; pick another backup id")
    return doc


def find_backup(session: Session, wanted: str, services: list[str], source: Source) -> dict:
    """The metadata document to restore from, looked up locally first, then on S3."""
    return _Catalogue(session, source).choose(wanted, services)


def pick_backups(session: Session, wanted: str, services: list[str] | None, source: Source,
                 notes: list[str] | None = None) -> list[Pick]:
    """Which backup each service comes from.

    ``latest``: each service from its own newest verified backup, so a later backup of one
    service alone never hides the others' (nor an older one theirs); with no service named,
    every stateful service of the spec, and one that has no backup at all is an error, not a
    silent skip. A backup id: that backup, for the services named or every one it holds.
    """
    found = _Catalogue(session, source)
    try:
        if wanted == "latest":
            names = services or _backupable(session)
            return [_usable(Pick(name, found.choose("latest", [name]))) for name in names]
        try:
            doc = found.choose(wanted, services or [])
        except RestoreError as exc:
            if exc.ref == "restore.unknown-id" and (other := found.foreign(wanted) or found.elsewhere(wanted)):
                raise other from None
            if exc.ref == "restore.unknown-id":
                raise RestoreError(exc.message, ref=exc.ref, hint=found.ids_hint(wanted)) from None
            raise
        names = services or [name for name in doc["services"] if name in session.spec.services]
        return [_usable(Pick(name, doc)) for name in names]
    finally:
        if notes is not None:
            notes.extend(dict.fromkeys(found.notes))  # once each, whichever service met it


def _usable(pick: Pick) -> Pick:
    """The pick, if its record says how the file was made (what restore and verify read)."""
    try:
        BackupStats.from_dict(pick.entry["stats"])
        Compression(pick.entry["compression"])
    except (KeyError, TypeError, ValueError, AttributeError):
        raise RestoreError(f"backup {pick.backup_id} does not record how {pick.service} was dumped "
                           "(its metadata has no usable stats or compression)", ref="restore.metadata",
                           hint="it was not written by `reconcile backup`: restore that file by hand, "
                                "or pick another backup (reconcile backups list)") from None
    return pick


def _backupable(session: Session) -> list[str]:
    from reconciler.backup.run import backupable

    names = backupable(session)
    if not names:
        raise RestoreError("the spec has no stateful service to restore", ref="restore.nothing",
                           hint="mark services that hold data with stateful: true")
    return names


def _other_copy_hint(session: Session, pick: Pick) -> str:
    """Where else to restore from: S3's copy, or (S3 off) an older backup, which is named."""
    if session.spec.backup.s3.enabled:
        return "restore with --source s3 if S3 holds a copy"
    docs = metadata.load_all(session.local, project=session.spec.project)  # oldest first
    ids = [doc["backup_id"] for doc in docs]
    before = docs[:ids.index(pick.backup_id)] if pick.backup_id in ids else []
    older = [doc["backup_id"] for doc in before if pick.service in doc["services"]]
    if not older:
        return "S3 is off, so this was the only copy, and no older backup of it exists"
    return (f"S3 is off, so this was the only copy: restore the backup before it, `reconcile restore {older[-1]} "
            f"{pick.service} --yes` (check it first with `reconcile backups verify`)")


def fetch(session: Session, pick: Pick, source: Source, notes: list[str],
          meter: Meter = NO_METER) -> tuple[Path, str]:
    """A verified local file for one service's entry, downloading it from S3 when needed."""
    key, sha, size = pick.entry["key"], pick.entry["checksum"], pick.entry.get("size")
    local_problem = None
    if source is not Source.S3:
        try:
            with meter.task(f"checking {pick.service}", size) as task:
                return session.local.verify(key, sha, task.advance), "local"
        except StorageError as exc:
            if source is Source.LOCAL or session.s3 is None:
                raise RestoreError(f"local copy of {key} is unusable: {exc.message}",
                                   ref="restore.local", hint=_other_copy_hint(session, pick)) from None
            missing = not session.local.path_of(key).exists()
            local_problem = "there is no local copy" if missing else f"the local copy is unusable ({exc.message})"
            notes.append(f"no local copy of {key}; using S3" if missing
                         else f"local copy of {key} unusable ({exc.message}); using S3")
    if session.s3 is None:
        raise RestoreError(f"S3 is not enabled, cannot fetch {key}", ref="restore.no-s3",
                           hint="enable backup.s3 in the spec or restore with --source local")
    try:
        with meter.task(f"downloading {pick.service}", size) as task:
            path = session.s3.get(key, session.local.path_of(key), sha, task.advance)
    except StorageError as exc:
        if local_problem is None:
            raise
        # The S3 error alone would not say why S3 was asked: the user must learn that the
        # local copy is damaged too, or they may go on trusting it.
        if isinstance(exc.__cause__, OSError):  # the local disk refused the download: S3's copy may be fine
            raise RestoreError(f"cannot fetch {key}: {local_problem}, and the S3 copy could not be saved in "
                               f"the local folder: {exc.message}", ref="restore.local-disk", hint=exc.hint) from None
        raise RestoreError(f"no usable copy of {key}: {local_problem}; the S3 copy too: {exc.message}",
                           ref="restore.no-copy",
                           hint=exc.hint or "restore an older backup: reconcile backups list") from None
    _record_local_copy(session, pick)
    return path, "s3"


def _record_local_copy(session: Session, pick: Pick) -> None:
    """A file fetched from S3 stays in the local folder; without local metadata naming it,
    no local restore could find it and local retention would never delete it. The local
    document names every service whose file is local: the one just fetched, and the backup's
    other files still in the folder (the local metadata alone may have been lost), so those
    are neither orphaned nor hidden from ``--source local``. ``partial`` while S3 holds more."""
    key = metadata.key_for(pick.backup_id)
    local = session.local
    if local.exists(key):
        doc = before = metadata.decode(local.read_bytes(key))
    else:  # S3's record of what S3's retention deleted says nothing of local files
        doc, before = dict(pick.doc, services={}), {}
    services = dict(doc.get("services") or {})
    services.setdefault(pick.service, pick.entry)
    services |= {name: entry for name, entry in pick.doc["services"].items()
                 if name not in services and _held_locally(session, entry)}
    if services == doc.get("services") and local.exists(key):
        return
    doc = {k: v for k, v in doc.items() if k not in ("partial", PRUNED)}
    if set(services) != set(pick.doc["services"]):
        doc["partial"] = True
    # a file retention deleted here and fetched again is live: the next prune must not take it
    if pruned := {name: entry for name, entry in (before.get(PRUNED) or {}).items() if name not in services}:
        doc[PRUNED] = pruned
    local.write_bytes(key, metadata.encode(dict(doc, services=services)))


def _held_locally(session: Session, entry: dict) -> bool:
    """The entry's file is in the local folder with the recorded size. Its checksum is not read
    here: a restore re-hashes every file before use, and falls back to S3 when it differs."""
    try:
        path = session.local.path_of(entry["key"])
        return path.is_file() and path.stat().st_size == entry.get("size")
    except (KeyError, OSError, StorageError):
        return False


def restore_services(session: Session, wanted: str = "latest", services: list[str] | None = None, *,
                     source: Source = Source.AUTO, containers: dict[str, str] | None = None,
                     progress: Progress = lambda _: None, meter: Meter = NO_METER) -> RestoreRun:
    """Fetch and check EVERY file first, then restore one service after another: a missing
    or corrupt file stops the restore before any live data is touched."""
    notes: list[str] = []
    picks = pick_backups(session, wanted, services, source, notes)
    held = _hold(session, picks)
    try:
        return _restore_picks(session, picks, notes, source, containers or {}, progress, meter)
    finally:
        for claim in held:
            claim.release()


def _hold(session: Session, picks: list[Pick]) -> list:
    """Claims on the backups the restore reads (``LocalStore.reclaim``), held to its end: retention
    (another backup's, or ``backups prune``) keeps a claimed backup, so it cannot delete a file
    between its check and its use. One claimed already is held by its own user (this apply, a
    backup copying it to S3); a folder we cannot write to is one we cannot protect, nor need to."""
    held = []
    for backup_id in dict.fromkeys(pick.backup_id for pick in picks):
        try:
            claim = session.local.reclaim(metadata.key_for(backup_id))
        except ReconcileError:
            continue
        if claim is not None:
            held.append(claim)
    return held


def _restore_picks(session: Session, picks: list[Pick], notes: list[str], source: Source,
                   containers: dict[str, str], progress: Progress, meter: Meter) -> RestoreRun:
    run = RestoreRun(newest_id(picks))
    run.notes += notes
    _precheck_all(session, picks, containers)  # before a long download, and before any data is replaced
    files = []
    try:
        for pick in picks:
            progress(f"checking {pick.service}'s file of backup {pick.backup_id}")
            path, origin = fetch(session, pick, source, run.notes, meter)
            run.sources[pick.service] = origin
            run.backups[pick.service] = pick.backup_id
            files.append((pick, path))
    except KeyboardInterrupt as stop:
        stop.add_note("no live data was changed (the restore was still fetching and checking its files)")
        raise
    for pick, path in files:
        progress(f"restoring {pick.service} from {run.sources[pick.service]} copy of {pick.entry['key']}")
        try:
            with meter.task(f"restoring {pick.service}", pick.entry.get("size")) as task:  # the checked file's
                run.results[pick.service] = _restore_one(session, pick.service, pick.entry, path,
                                                         containers.get(pick.service), task, pick.backup_id)
        except (ReconcileError, KeyboardInterrupt) as exc:
            if not run.results:
                raise
            done = ", ".join(f"{name} (from {run.backups[name]})" for name in run.results)
            if isinstance(exc, KeyboardInterrupt):
                exc.add_note(f"already restored: {done}")
                raise
            raise RestoreError(f"{exc.message}; already restored before this failure: {done}",
                               ref=exc.ref, hint=exc.hint) from None
    return run


def _precheck_all(session: Session, picks: list[Pick], containers: dict[str, str]) -> None:
    """Every service's container (there, running) and its engine's refusals, before the first
    service is replaced: a cache whose container was gone failed the restore only after the
    databases had been replaced, leaving the stack half restored."""
    for pick in picks:
        try:
            target = session.target(pick.service, containers.get(pick.service))
            if (precheck := getattr(session.engine(pick.service), "restore_precheck", None)) is not None:
                precheck(target, BackupStats.from_dict(pick.entry["stats"]))
        except ReconcileError as exc:
            if len(picks) == 1:
                raise
            raise RestoreError(f"{exc.message}; no service was restored", ref=exc.ref, hint=exc.hint) from None


def newest_id(picks: list[Pick]) -> str:
    return max(picks, key=lambda pick: (pick.doc["timestamp"], pick.backup_id)).backup_id


def _restore_one(session: Session, service: str, entry: dict, path: Path, container: str | None,
                 task: Task, backup_id: str = "") -> RestoreStats:
    target = session.target(service, container)
    stats = BackupStats.from_dict(entry["stats"])
    engine = session.engine(service)  # its restore_precheck ran for every service first
    with _open_checked(path) as raw:  # before the record: a file it cannot open leaves the data untouched
        # the live container's data replaced in place (not apply's fresh candidate): recorded
        # until done, so one that stops halfway is known for what it is (``restoring``)
        record = restoring.begin(session.state_dir(), service, backup_id, _running(session, target)) \
            if container is None and stats.kind in restoring.IN_PLACE else None
        reader = DecompressingReader(CountingReader(raw, task), Compression(entry["compression"]),
                                     entry["checksum"])
        began = datetime.now(UTC)
        try:
            result = engine.restore(target, reader, stats)
        except ReconcileError as exc:
            from reconciler.backup import killed

            raise killed.explained(session, service, target.container_id, exc, began) from None
        except OSError as exc:
            raise RestoreError(f"reading {path.name} failed: {exc.strerror}", ref="restore.io",
                               hint="check the disk holding the backups") from None
    if result.verify is not None and not result.verify.ok:
        raise RestoreError(f"{service} restored but does not match the backup: {result.verify.summary()}",
                           ref="restore.verify", hint="the backup may be incomplete; try an older one")
    if record is not None and restoring.end(record) and not _running(session, target):
        from reconciler import dockerio  # an earlier attempt left it stopped on partial data

        dockerio.start(session.client, target.container_id)
    return result


def _open_checked(path: Path):
    try:
        return path.open("rb")
    except OSError as exc:  # was a traceback
        raise RestoreError(f"cannot open {path}, checked a moment ago: {exc.strerror}", ref="restore.io",
                           hint="something removed or changed it since (by hand?): run the restore again") from None


def _running(session: Session, target) -> bool:
    """Whether the service's container runs (a cache must, to be restored at all)."""
    if target.kind is not Kind.GENERIC:
        return True
    from reconciler import dockerio

    return bool(dockerio.inspect_container(session.client, target.container_id)["State"].get("Running"))
