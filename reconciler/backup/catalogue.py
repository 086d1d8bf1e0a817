"""What backups exist where: one row per backup across the local folder and S3."""

from __future__ import annotations

from dataclasses import dataclass, field

from reconciler.backup import metadata
from reconciler.errors import ReconcileError, StorageError
from reconciler.session import Session


@dataclass(frozen=True)
class StoreProblem:
    """A store whose backups could not be listed: the listing is partial, and says so."""

    store: str
    ref: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        return f"backups in the {self.store} store were not listed: {self.message}"

    def as_dict(self) -> dict:
        return {"store": self.store, "error": self.ref, "message": self.message, "hint": self.hint}


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
        try:
            docs = metadata.load_all(_open(session, name))
        except ReconcileError as exc:
            problems.append(StoreProblem(name, exc.ref, exc.message, exc.hint))
            stores[name] = "failed"
            continue
        stores[name] = "ok"
        for doc in docs:
            row = rows.setdefault(doc["backup_id"], {
                "backup_id": doc["backup_id"], "timestamp": doc["timestamp"],
                "reason": doc.get("reason", ""), "verified": doc.get("verified", False),
                "services": {s: {"size": e.get("size"), "file": e.get("file")}
                             for s, e in (doc.get("services") or {}).items()},
                "stores": []})
            row["stores"].append(name)
    ordered = sorted(rows.values(), key=lambda r: r["timestamp"], reverse=True)
    return Catalogue(ordered, problems, stores)


def _stores(session: Session) -> list[tuple[str, object]]:
    stores: list[tuple[str, object]] = [("local", session.local)]
    if session.s3 is not None:
        stores.append(("s3", session.s3))
    return stores


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
