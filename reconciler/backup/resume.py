"""Backups killed outright during their S3 copy: telling them, and finishing their copy.

A backup records itself ``storage.s3: pending`` before it copies to S3 and holds its id's
claim (``storage.claims``) until the copy ends, recording ``ok`` or ``failed`` first. A
record still ``pending`` whose claim nobody holds was killed during the copy (SIGKILL, the OOM
killer, a CI timeout, a reboot): only its local copy exists, so ``backups list`` and
``backups verify`` say so, and the next backup whose own copy succeeded copies it
(``copy_interrupted``). A record ``failed`` (S3 refused or was down) is left as it is.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from reconciler.backup import metadata
from reconciler.backup.meter import NO_METER, Meter
from reconciler.backup.run import s3_path
from reconciler.errors import ReconcileError, StorageError
from reconciler.storage import leftovers
from reconciler.storage.prune import PRUNED, read_unless_vanished

PENDING = "pending"
INTERRUPTED_REF = "backup.s3-interrupted"
HINT = ("the next `reconcile backup` copies it to S3 (when S3 is reachable); run one now with "
        "`reconcile backup`")


def message(backup_id: str) -> str:
    return (f"the S3 copy of backup {backup_id} was interrupted (its backup process is gone): "
            "only the local copy exists")


def s3_state(doc: dict) -> object:
    storage = doc.get("storage")
    return storage.get("s3") if isinstance(storage, dict) else None


def interrupted(local, docs: list[dict]) -> list[dict]:
    """The local records among ``docs`` whose S3 copy is pending while no backup runs it, as
    they read now: one that finished between the two looks has recorded how (before it gave
    up its claim), so it is read again once its claim is found gone."""
    found = []
    for doc in docs:
        if s3_state(doc) != PENDING or leftovers.running(local.root, doc["backup_id"]):
            continue
        if (fresh := _read(local, doc["backup_id"])) is not None and s3_state(fresh) == PENDING:
            found.append(fresh)
    return found


def problem(doc: dict) -> dict:
    """A ``backups verify`` problem (the local record's key: the file to look at)."""
    return {"store": "s3", "backup_id": doc["backup_id"], "key": metadata.key_for(doc["backup_id"]),
            "error": message(doc["backup_id"]), "hint": HINT}


def _read(local, backup_id: str) -> dict | None:
    try:
        raw = read_unless_vanished(local, metadata.key_for(backup_id))
        return metadata.checked(json.loads(raw)) if raw is not None else None
    except (ReconcileError, ValueError):
        return None


def copy_interrupted(session, current: str, warnings: list[str], progress: Callable[[str], None],
                     meter: Meter = NO_METER) -> list[str]:
    """Copy to S3 the backups (of this project, other than ``current``) whose copy was
    interrupted; each under its claim, so two backups never copy the same one, nor does a
    check call it interrupted meanwhile. A failure is recorded in its record (``failed``) and
    added to ``warnings``: it never fails the backup that tries. Returns the ids copied."""
    local = session.local
    try:
        docs = metadata.load_all(local, project=session.spec.project)
    except ReconcileError:
        return []
    copied = []
    for doc in interrupted(local, [d for d in docs if d["backup_id"] != current]):
        claim = local.reclaim(metadata.key_for(doc["backup_id"]))
        if claim is None:  # another backup is copying it
            continue
        try:
            if _copy_one(session, doc["backup_id"], warnings, progress, meter):
                copied.append(doc["backup_id"])
        finally:
            local.release(claim)
    return copied


def _copy_one(session, backup_id: str, warnings: list[str], progress, meter: Meter) -> bool:
    local, key = session.local, metadata.key_for(backup_id)
    doc = _read(local, backup_id)
    if doc is None or s3_state(doc) != PENDING:  # finished by another meanwhile
        return False
    if doc.get(PRUNED):
        _record(local, doc, "failed", "its S3 copy was interrupted and retention has since deleted some of its "
                                      "local files: not copied to S3")
        progress(f"backup {backup_id}: its interrupted S3 copy is not made again (retention deleted some of "
                 "its local files)")
        return False
    try:
        _check_local(local, doc)
    except StorageError as exc:
        _record(local, doc, "failed", f"its S3 copy was interrupted and its local copy is no longer whole: "
                                      f"{exc.message}")
        warnings.append(f"backup {backup_id} was not copied to S3 after its interrupted copy: its local copy is "
                        f"no longer whole ({exc.message})")
        return False
    progress(f"copying backup {backup_id} to S3 (its copy was interrupted)")
    try:
        store = session.s3
        _abort_its_uploads(store, doc)
        for entry in doc["services"].values():
            with meter.task(f"uploading {entry['key']}", entry.get("size")) as task:
                store.put(local.path_of(entry["key"]), entry["key"], entry["checksum"], task.advance)
        for entry in doc["services"].values():
            entry["s3_path"] = s3_path(session, entry["key"])
        doc["storage"]["s3"] = "ok"
        doc.pop("s3_error", None)
        store.write_bytes(key, metadata.encode(doc))
    except ReconcileError as exc:
        _record(local, doc, "failed", f"copy after an interrupted one failed: {exc.message}")
        warnings.append(f"the interrupted S3 copy of backup {backup_id} could not be made again (its local copy "
                        f"is the only one): {exc.message}" + (f"; hint: {exc.hint}" if exc.hint else ""))
        return False
    local.write_bytes(key, metadata.encode(doc))
    return True


def _check_local(local, doc: dict) -> None:
    """Every local file whole: a missing or corrupt one is never copied (StorageError)."""
    for entry in doc["services"].values():
        local.verify(entry["key"], entry["checksum"])


def _abort_its_uploads(store, doc: dict) -> None:
    """The parts its killed copy uploaded: its claim is ours, so no one else uploads them."""
    abort = getattr(store, "abort_stale_uploads", None)
    if abort is None:
        return
    try:
        abort(0, only={entry["key"] for entry in doc["services"].values()})
    except ReconcileError:
        pass  # best effort: a day later the next backup aborts them anyway


def _record(local, doc: dict, s3: str, error: str) -> None:
    doc["storage"]["s3"] = s3
    doc["s3_error"] = error
    local.write_bytes(metadata.key_for(doc["backup_id"]), metadata.encode(doc))
