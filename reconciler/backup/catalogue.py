"""What backups exist where: one row per backup across the local folder and S3."""

from __future__ import annotations

from reconciler.backup import metadata
from reconciler.errors import ReconcileError, StorageError
from reconciler.session import Session


def _stores(session: Session) -> list[tuple[str, object]]:
    stores: list[tuple[str, object]] = [("local", session.local)]
    if session.s3 is not None:
        stores.append(("s3", session.s3))
    return stores


def catalogue(session: Session) -> list[dict]:
    """Backups newest first, with which stores hold their metadata."""
    rows: dict[str, dict] = {}
    for name, store in _stores(session):
        try:
            docs = metadata.load_all(store)
        except ReconcileError:
            continue
        for doc in docs:
            row = rows.setdefault(doc["backup_id"], {
                "backup_id": doc["backup_id"], "timestamp": doc["timestamp"],
                "reason": doc.get("reason", ""), "verified": doc.get("verified", False),
                "services": {s: {"size": e.get("size"), "file": e.get("file")}
                             for s, e in (doc.get("services") or {}).items()},
                "stores": []})
            row["stores"].append(name)
    return sorted(rows.values(), key=lambda r: r["timestamp"], reverse=True)


def check_files(session: Session) -> tuple[list[dict], int]:
    """Re-hash every file that metadata names, in every store; report what does not match."""
    problems, checked = [], 0
    for name, store in _stores(session):
        for doc in metadata.load_all(store):
            for entry in (doc.get("services") or {}).values():
                checked += 1
                problem = _check(session, name, store, entry)
                if problem:
                    problems.append({"store": name, "backup_id": doc["backup_id"],
                                     "key": entry["key"], "error": problem})
    return problems, checked


def _check(session: Session, name: str, store, entry: dict) -> str | None:
    try:
        if name == "local":
            store.verify(entry["key"], entry["checksum"])
        else:
            import tempfile
            from pathlib import Path

            with tempfile.TemporaryDirectory(dir=session.local.path_of("metadata").parent) as tmp:
                store.get(entry["key"], Path(tmp) / "check", entry["checksum"])
    except StorageError as exc:
        return exc.message
    return None
