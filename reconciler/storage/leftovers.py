"""What a backup killed outright (SIGKILL, power loss) leaves in the local folder, and
removing it on the next run.

A backup claims its id with a hidden marker beside its metadata (``LocalStore.reserve``)
that names its process; it writes each file under a hidden temporary name, renames it
into place, and records the metadata last. Killed halfway, it leaves the marker, maybe a
temporary file, maybe whole files no metadata names: never used, and never removed by
retention (which goes by metadata). A claim is abandoned when no process holds its lock
(``claims``: the backup holds it to the end of its S3 copy), or, for a marker without the
lock, when its process is gone (same host and pid namespace, ``reconciler.owner``) or it is
older than ``CLAIM_MAX_AGE`` (any other's); then its temporary files, its
unrecorded files and the marker are removed. Temporary files no claim covers (an
interrupted download) go when untouched for ``TEMP_MAX_AGE``. A backup that is still
running is never touched: its process is alive and its files are written to.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from reconciler.owner import gone, parse
from reconciler.storage import claims
from reconciler.storage.base import METADATA_FOLDER, PARTIAL_MARKER

CLAIM_MAX_AGE = 7 * 24 * 3600
TEMP_MAX_AGE = 3600
_CLAIM = re.compile(r"^\.backup-(?P<id>.+)\.json" + re.escape(PARTIAL_MARKER) + r"reserved$")
_TEMP = re.compile(r"^\.(?P<name>.+)" + re.escape(PARTIAL_MARKER) + r"[0-9a-f]+$")


def sweep(root: Path, now: float | None = None) -> list[Path]:
    """Remove what abandoned backups left below ``root``; returns what was removed."""
    now = time.time() if now is None else now
    metadata = root / METADATA_FOLDER
    if not metadata.is_dir():
        return []
    removed: list[Path] = []
    dead_ids = set()
    for marker in metadata.iterdir():
        found = _CLAIM.match(marker.name)
        if found and _abandoned(marker, now):
            dead_ids.add(found["id"])
    for folder in [p for p in root.iterdir() if p.is_dir()]:
        for path in folder.iterdir():
            if _leftover(path, folder == metadata, dead_ids, now):
                removed.append(path)
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def claimed_ids(root: Path) -> set[str]:
    """Ids of the backups that have claimed an id and not yet recorded it: running, or killed."""
    metadata = root / METADATA_FOLDER
    if not metadata.is_dir():
        return set()
    return {found["id"] for marker in metadata.iterdir() if (found := _CLAIM.match(marker.name))}


def running_ids(root: Path) -> set[str]:
    """Ids of the backups whose claim a live process holds: being taken or copied to S3, or in use
    by a restore or an apply (``LocalStore.reclaim``). Retention must not delete them meanwhile."""
    return {backup_id for backup_id in claimed_ids(root) if running(root, backup_id)}


def of_backup(name: str, ids: set[str]) -> bool:
    """Whether the data file ``name`` is one of the backups ``ids``."""
    return _of(name, ids)


def _leftover(path: Path, in_metadata: bool, dead_ids: set[str], now: float) -> bool:
    name = path.name
    if claim := _CLAIM.match(name):
        return claim["id"] in dead_ids
    if temp := _TEMP.match(name):
        return _of(temp["name"], dead_ids) or _age(path, now) > TEMP_MAX_AGE
    if not in_metadata and _of(name, dead_ids):  # a whole file its dead backup never recorded
        return not (path.parent.parent / METADATA_FOLDER / f"backup-{_id_of(name, dead_ids)}.json").exists()
    return False


def _of(name: str, ids: set[str]) -> bool:
    return _id_of(name, ids) is not None


def _id_of(name: str, ids: set[str]) -> str | None:
    """The id among ``ids`` a data file ``<service>-<id>.<ext>`` belongs to."""
    for backup_id in ids:
        if f"-{backup_id}." in name:
            return backup_id
    return None


def claim_marker(final: Path) -> Path:
    """The hidden marker that claims the file ``final`` (``_CLAIM`` reads a metadata one back)."""
    return final.with_name(f".{final.name}{PARTIAL_MARKER}reserved")


def running(root: Path, backup_id: str) -> bool:
    """Whether the backup ``backup_id`` still runs on a claim (its own, or that of a backup
    finishing its S3 copy): its marker is there and not abandoned."""
    marker = claim_marker(root / METADATA_FOLDER / f"backup-{backup_id}.json")
    return marker.exists() and not _abandoned(marker, time.time())


def _abandoned(marker: Path, now: float) -> bool:
    """Gone when no process holds the marker's lock and its owner said it would; else (a marker
    without the lock, or one just created) judged by its owner's pid, or its age."""
    locked = claims.held(marker)
    if locked:
        return False
    try:
        text = marker.read_bytes()
    except OSError:
        text = b""
    if locked is False and claims.locks(text):
        return True
    dead = gone(parse(text))
    return dead if dead is not None else _age(marker, now) > CLAIM_MAX_AGE


def _age(path: Path, now: float) -> float:
    try:
        return now - path.stat().st_mtime
    except OSError:
        return 0.0
