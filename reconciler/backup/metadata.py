"""The metadata JSON written beside every backup, in the seed's shape.

One document per backup (``metadata/backup-<id>.json`` in each store): ``timestamp`` (UTC),
``backup_id``, ``verified``, per service ``file``, ``size``, ``checksum`` (``sha256:…``),
``database_size``, ``table_count``, ``row_count`` (and per table), ``key_count``,
``local_path``, ``s3_path``, the engine's ``stats``, and ``storage: {local, s3}``. A local
document written when a restore fetched files from S3 names only the services whose files
are local and says ``partial: true`` while S3's names more.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath

from reconciler.engines.base import BackupStats
from reconciler.errors import RestoreError
from reconciler.storage.base import CorruptObject, metadata_key
from reconciler.storage.prune import CORRUPT, parse_timestamp, read_unless_vanished


def new_backup_id(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d-%H%M%S")


@dataclass(frozen=True)
class ServiceEntry:
    service: str
    key: str
    size: int
    sha256: str
    compression: str
    stats: BackupStats
    local_path: str
    s3_path: str | None = None

    def as_dict(self) -> dict:
        stats = self.stats.as_dict()
        seed = {k: stats[k] for k in ("database_size", "table_count", "row_count", "tables",
                                      "key_count") if k in stats}
        return {"kind": self.stats.kind.value, "file": self.key.rsplit("/", 1)[-1], "key": self.key,
                "size": self.size, "checksum": f"sha256:{self.sha256}",
                "compression": self.compression, **seed, "local_path": self.local_path,
                "s3_path": self.s3_path, "stats": stats}


def document(backup_id: str, taken_at: datetime, project: str, reason: str,
             entries: list[ServiceEntry], local: str, s3: str, s3_error: str = "") -> dict:
    doc = {
        "backup_id": backup_id, "timestamp": taken_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "project": project, "reason": reason, "verified": local == "ok",
        "services": {e.service: e.as_dict() for e in entries},
        "storage": {"local": local, "s3": s3},
    }
    if s3_error:
        doc["s3_error"] = s3_error
    return doc


def encode(doc: dict) -> bytes:
    return (json.dumps(doc, indent=2) + "\n").encode()


def decode(raw: bytes) -> dict:
    return json.loads(raw)


def key_for(backup_id: str) -> str:
    return metadata_key(backup_id)


def load_all(store, unreadable: list[tuple[str, str]] | None = None, *, project: str | None = None,
             others: list[dict] | None = None) -> list[dict]:
    """Every usable metadata document in a store, oldest first (``checked``). One that is
    not is left out, and added to ``unreadable`` as (key, reason) when the caller asks.
    With ``project``, backups of another project (a folder or bucket prefix two projects
    share) are left out too, and added to ``others``: never restored, pruned or counted as
    this project's. The seed's documents name no project: they count as this one's."""
    docs = []
    for obj in store.list("metadata/"):
        if not obj.key.endswith(".json"):
            continue
        try:
            raw = read_unless_vanished(store, obj.key)  # pruned since it was listed: skipped
        except CorruptObject:
            if unreadable is not None:
                unreadable.append((obj.key, CORRUPT))
            continue
        if raw is None:
            continue
        try:
            doc = checked(json.loads(raw))
        except (ValueError, TypeError) as exc:
            if unreadable is not None:
                unreadable.append((obj.key, str(exc) if isinstance(exc, Unusable) else f"not valid JSON: {exc}"))
            continue
        if project is not None and owner(doc) not in (None, project):
            if others is not None:
                others.append(doc)
            continue
        docs.append(doc)
    return sorted(docs, key=lambda d: (parse_timestamp(d["timestamp"]), d["backup_id"]))


S3_PRUNED = "pruned"
"""``storage.s3`` of a local record whose S3 copy retention deleted (``mark_s3_pruned``)."""


def mark_s3_pruned(local, keys: list[str]) -> list[str]:
    """Local records of backups whose S3 copy retention just deleted (metadata ``keys``) say
    so (``storage.s3: pruned``): ``backups verify`` then tells such a copy from one that
    vanished from S3 otherwise. A record that is gone or unusable is left alone. The ids
    marked are returned."""
    marked = []
    for key in keys:
        raw = read_unless_vanished(local, key)
        try:
            doc = json.loads(raw) if raw is not None else None
        except ValueError:
            continue
        storage = doc.get("storage") if isinstance(doc, dict) else None
        if isinstance(storage, dict) and storage.get("s3") == "ok":
            storage["s3"] = S3_PRUNED
            local.write_bytes(key, encode(doc))
            marked.append(str(doc.get("backup_id")))
    return marked


def owner(doc: dict) -> str | None:
    """The project that took the backup; None for the seed's documents, which name none."""
    project = doc.get("project")
    return project if isinstance(project, str) and project else None


class Unusable(ValueError):
    """A metadata document that is JSON but not the shape every reader relies on."""


def checked(doc: object) -> dict:
    """``doc`` if every reader can rely on it: an id, a timestamp, and per service an object
    naming its file and its sha256 checksum (``key`` is added from ``file`` when absent). The
    seed's shape, with services at the top level, gets a ``services`` mapping."""
    if not isinstance(doc, dict):
        raise Unusable("not a JSON object")
    if not isinstance(doc.get("backup_id"), str) or not doc["backup_id"]:
        raise Unusable("no backup_id")
    try:
        parse_timestamp(doc.get("timestamp"))
    except (ValueError, TypeError) as exc:
        raise Unusable(f"no usable timestamp ({exc})") from None
    services = doc.get("services")
    if services is None:
        services = {name: value for name, value in doc.items() if isinstance(value, dict) and "file" in value}
    if not isinstance(services, dict):
        raise Unusable("services is not an object")
    for name, entry in services.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or not entry["file"]:
            raise Unusable(f"service {name} names no file")
        if not isinstance(entry.get("checksum"), str) or not entry["checksum"].startswith("sha256:"):
            raise Unusable(f"service {name} has no sha256 checksum")
        if not isinstance(entry.setdefault("key", f"{name}/{PurePosixPath(entry['file']).name}"), str):
            raise Unusable(f"service {name} has a key that is not a string")
        size = entry.get("size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise Unusable(f"service {name} has a size that is not a number of bytes")
    doc["services"] = services
    return doc


def choose(docs: list[dict], wanted: str, services: list[str]) -> dict:
    """``latest`` verified backup holding every wanted service, or the one named ``wanted``."""
    if wanted != "latest":
        for doc in docs:
            if doc.get("backup_id") == wanted:
                return doc
        raise RestoreError(f"no backup with id {wanted}", ref="restore.unknown-id",
                           hint="list them with: reconcile backups list")
    for doc in reversed(docs):
        held = set((doc.get("services") or {}).keys())
        if doc.get("verified") and set(services) <= held:
            return doc
    raise RestoreError(f"no verified backup holds {', '.join(services) or 'any service'}",
                       ref="restore.none", hint="take one with: reconcile backup")
