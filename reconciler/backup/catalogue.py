"""What backups exist where: one row per backup across the local folder and S3."""

from __future__ import annotations

from dataclasses import dataclass, field

from reconciler.backup import metadata, resume, sharing
from reconciler.errors import ReconcileError, StorageError
from reconciler.session import Session
from reconciler.storage.base import StoreUnavailable


@dataclass(frozen=True)
class StoreProblem:
    """A store whose backups could not be listed (the listing is partial, and says so), or,
    with ``key``, one metadata file in it that is skipped because it cannot be used."""

    store: str
    ref: str
    message: str
    hint: str = ""
    key: str | None = None

    def __str__(self) -> str:
        if self.key:
            return f"{self.key} in the {self.store} store is skipped: {self.message}"
        if self.ref == SHARED:
            return f"the {self.store} store {self.message}"
        if self.ref == resume.INTERRUPTED_REF:
            return self.message
        if self.ref == NOT_CHECKED:
            return f"files in the {self.store} store were not all checked: {self.message}"
        return f"backups in the {self.store} store were not listed: {self.message}"

    def as_dict(self) -> dict:
        return {"store": self.store, "error": self.ref, "message": self.message, "hint": self.hint,
                "key": self.key}


SHARED = "backup.shared"
NOT_CHECKED = "backup.not-checked"


def shared_problems(store: str, others: list[dict]) -> list[StoreProblem]:
    """A warning when the store also holds other projects' backups (``sharing``)."""
    return [StoreProblem(store, SHARED, sharing.described(others), hint=sharing.HINT)] if others else []


def unreadable_problems(store: str, unreadable: list[tuple[str, str]]) -> list[StoreProblem]:
    return [StoreProblem(store, "backup.metadata", reason, key=key,
                         hint="fix or remove that file: the backup it records is not listed, "
                              "restored, verified or pruned until then")
            for key, reason in unreadable]


@dataclass(frozen=True)
class Catalogue:
    rows: list[dict]
    problems: list[StoreProblem] = field(default_factory=list)
    stores: dict[str, str] = field(default_factory=dict)  # like a backup's storage: ok | failed


def _store_names(session: Session) -> list[str]:
    return ["local", "s3"] if session.spec.backup.s3.enabled else ["local"]


def _open(session: Session, name: str):
    """The store itself; building the S3 one can fail too (credentials missing)."""
    return session.local if name == "local" else session.s3


def catalogue(session: Session) -> Catalogue:
    """Backups newest first, with which stores hold their metadata.

    A store that cannot be read does not hide the others: its error is kept as a problem,
    so the caller can list what the other stores hold and still warn (exit 1).
    """
    rows: dict[str, dict] = {}
    problems, stores = [], {}
    for name in _store_names(session):
        unreadable: list[tuple[str, str]] = []
        others: list[dict] = []
        try:
            docs = metadata.load_all(_open(session, name), unreadable, project=session.spec.project, others=others)
        except ReconcileError as exc:
            problems.append(StoreProblem(name, exc.ref, exc.message, exc.hint))
            stores[name] = "failed"
            continue
        stores[name] = "ok"
        problems += unreadable_problems(name, unreadable) + shared_problems(name, others)
        for doc in docs:
            row = rows.setdefault(doc["backup_id"], {
                "backup_id": doc["backup_id"], "timestamp": doc["timestamp"],
                "reason": doc.get("reason", ""), "verified": doc.get("verified", False),
                "services": {}, "stores": [], "s3_copy": None})
            # each store's own record: a local copy a restore made may name fewer services
            for service, entry in doc["services"].items():
                row["services"].setdefault(service, {"size": entry.get("size"), "file": entry["file"]})
            row["verified"] = row["verified"] or doc.get("verified", False)
            row["stores"].append(name)
            if name == "local":
                row["s3_copy"] = resume.s3_state(doc)
    problems += _interrupted(session, rows)
    ordered = sorted(rows.values(), key=lambda r: r["timestamp"], reverse=True)
    return Catalogue(ordered, problems, stores)


def _interrupted(session: Session, rows: dict[str, dict]) -> list[StoreProblem]:
    """Backups killed during their S3 copy (``resume``): marked in their row, and a warning.
    One whose record S3 holds finished that copy (the record is written last)."""
    if "s3" not in _store_names(session):
        return []
    pending = [{"backup_id": r["backup_id"], "storage": {"s3": r.get("s3_copy")}} for r in rows.values()
               if r.get("s3_copy") == resume.PENDING and "s3" not in r["stores"]]
    found = []
    for doc in resume.interrupted(session.local, pending):
        rows[doc["backup_id"]]["s3_copy"] = "interrupted"
        found.append(StoreProblem("s3", resume.INTERRUPTED_REF, resume.message(doc["backup_id"]),
                                  hint=resume.HINT))
    return found


@dataclass(frozen=True)
class FileCheck:
    """``backups verify``: ``problems`` (files or metadata that do not match: exit 2), stores
    that could not be read (exit 1), and files no metadata names (a warning)."""

    checked: int
    problems: list[dict]
    unreadable_stores: list[StoreProblem]
    unrecorded: list[dict]


def check_files(session: Session) -> FileCheck:
    """Re-hash every file that metadata names, in every store; report what does not match.
    A store that cannot be read does not stop the others from being checked."""
    problems, checked, failed, listed, foreign = [], 0, [], [], []
    for name in _store_names(session):
        unreadable: list[tuple[str, str]] = []
        others: list[dict] = []
        try:
            store = _open(session, name)  # building the S3 one can fail (credentials missing)
            docs = metadata.load_all(store, unreadable, project=session.spec.project, others=others)
            failed += shared_problems(name, others)  # not checked: the check is incomplete
            foreign += others
            for doc in docs:
                for entry in doc["services"].values():
                    checked += 1
                    if problem := _check(session, name, store, entry):
                        problems.append({"store": name, "backup_id": doc["backup_id"],
                                         "key": entry["key"], "error": problem})
            listed.append((name, store, docs))
        except ReconcileError as exc:
            failed.append(StoreProblem(name, exc.ref, exc.message, exc.hint))
        problems += [{"store": name, "backup_id": None, "key": key, "error": f"unusable metadata: {reason}"}
                     for key, reason in unreadable]
        if name == "s3" and any(n == "s3" for n, _, _ in listed):
            problems += _vanished_from_s3(listed, {key for key, _ in unreadable})
    problems += _interrupted_copies(session, listed)
    return FileCheck(checked, problems, failed, _unrecorded(session, listed, foreign))


def _vanished_from_s3(listed: list[tuple[str, object, list[dict]]], unreadable: set[str]) -> list[dict]:
    """Backups the local records say were copied to S3 (``storage.s3: ok``) that S3 holds no
    record of: deleted there by hand or by a lifecycle rule of the bucket (our retention marks
    what it deletes, ``metadata.mark_s3_pruned``). The local copy is then the only one."""
    by_store = {name: docs for name, _, docs in listed}
    on_s3 = {doc["backup_id"] for doc in by_store.get("s3", [])}
    return [{"store": "s3", "backup_id": doc["backup_id"], "key": metadata.key_for(doc["backup_id"]),
             "error": "the local record says this backup was copied to S3, but S3 holds no record of it "
                      "(deleted there by hand or by a lifecycle rule?): the local copy is the only one"}
            for doc in by_store.get("local", [])
            if (doc.get("storage") or {}).get("s3") == "ok" and doc["backup_id"] not in on_s3
            and metadata.key_for(doc["backup_id"]) not in unreadable]


def _interrupted_copies(session: Session, listed: list[tuple[str, object, list[dict]]]) -> list[dict]:
    """Local records of backups killed during their S3 copy (``resume``): S3 may hold some of
    their files, never their record (written last); with S3 enabled, the next backup copies them."""
    by_store = {name: docs for name, _, docs in listed}
    if "s3" not in _store_names(session) or "local" not in by_store:
        return []
    on_s3 = {doc["backup_id"] for doc in by_store.get("s3", [])}
    return [resume.problem(doc) for doc in resume.interrupted(session.local, by_store["local"])
            if doc["backup_id"] not in on_s3]


def _unrecorded(session: Session, listed: list[tuple[str, object, list[dict]]],
                foreign: list[dict] = ()) -> list[dict]:
    """Data files no metadata names. A local file named by S3's metadata is found through it
    (a restore looks for the local copy first); an S3 object only by S3's, or by a local record
    of a copy still under way (``s3: pending``): one whose copy failed midway is in no
    restore's reach from S3 and no S3 prune's. Local files of a backup being taken are left out."""
    from reconciler.storage.leftovers import claimed_ids, of_backup

    by_store = {name: docs for name, _, docs in listed}
    every = [doc for docs in by_store.values() for doc in docs]
    uploading = [doc for doc in by_store.get("local", []) if (doc.get("storage") or {}).get("s3") == "pending"]
    theirs = _keys(list(foreign))  # another project's files are not unrecorded, only not ours
    named = {"local": _keys(every) | theirs, "s3": _keys(by_store.get("s3", []) + uploading) | theirs}
    running = claimed_ids(session.local.root)
    found = []
    for name, store, _ in listed:
        try:
            keys = [item.key for item in store.list()]
        except ReconcileError:
            continue
        found += [{"store": name, "key": key} for key in keys
                  if not key.startswith("metadata/") and key not in named[name]
                  and not (name == "local" and of_backup(key.rsplit("/", 1)[-1], running))]
    return found


def _keys(docs: list[dict]) -> set[str]:
    """The keys ``docs`` name: their services', and those the next prune deletes."""
    from reconciler.storage.prune import BackupRecord

    return {entry["key"] for doc in docs for entry in doc["services"].values()} | \
        {key for doc in docs for key in BackupRecord.from_metadata(doc).pruned.values()}


def _check(session: Session, name: str, store, entry: dict) -> str | None:
    """What is wrong with the file of ``entry`` (missing, corrupt), or None. An S3 store that
    cannot be used (down, stuck, refusing us) is raised instead: it says nothing of the file, so
    the store is reported as not checked (exit 1), not the file as bad (exit 2: "corrupt")."""
    try:
        if name == "local":
            store.verify(entry["key"], entry["checksum"])
        else:
            import tempfile
            from pathlib import Path

            root = session.local.root  # big downloads beside the backups, not in a small /tmp
            with tempfile.TemporaryDirectory(dir=root if root.is_dir() else None) as tmp:
                store.get(entry["key"], Path(tmp) / "check", entry["checksum"])
    except StoreUnavailable:
        raise
    except StorageError as exc:
        if name != "local" and isinstance(exc.__cause__, OSError):  # our disk, not the S3 file: "corrupt" is wrong
            raise StorageError(f"{exc.message} (each S3 file is downloaded there to be re-hashed)", ref=NOT_CHECKED,
                               hint=f"free space on the disk holding {session.local.root}, then run it again") from None
        return exc.message
    except OSError as exc:  # no room even for the folder an S3 file is downloaded into (was a traceback)
        raise StorageError(f"cannot create a folder in {session.local.root} to download S3 files into: "
                           f"{exc.strerror or exc}", ref=NOT_CHECKED,
                           hint=f"free space on the disk holding {session.local.root}, then run it again") from None
    return None
