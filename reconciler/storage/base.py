"""What every backup store offers, and the key layout they share.

Keys are relative POSIX paths, the same in every store, so a backup written locally and
copied to S3 has one name: ``postgres/postgres-2026-11-28-020000.sql.zst``,
``dragonfly/dragonfly-2026-11-28-020000.<ext>`` (folder named by service) and
``metadata/backup-<backup_id>.json``. Checking keys here, once, keeps a hostile or
mistaken key such as ``../etc/passwd`` out of every store.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Protocol, runtime_checkable

from reconciler.errors import StorageError

METADATA_FOLDER = "metadata"
PARTIAL_MARKER = ".partial-"
S3_TIMEOUT_REF = "storage.s3-timeout"  # an S3 server that took the connection and never answered
"""Temporary files are named ``.<name>.partial-<random>``: never a valid key, never listed."""

_CHUNK = 1024 * 1024
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SERVICE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


class StoreUnavailable(StorageError):
    """The store itself could not be used (unreachable, stuck, refusing us, failing): it says
    nothing of the files in it, unlike a missing file or a checksum mismatch, so a check of the
    backups must not count it as a bad one, nor a read that failed so as a file deleted meanwhile."""


class CorruptObject(StorageError):
    """A file whose bytes are not the ones recorded for it (its SHA-256 differs): that one
    file is bad, unlike ``StoreUnavailable``; a listing of many files skips it and says so."""


Advance = Callable[[int], None]
"""Told how many more bytes a long transfer has moved (a progress bar's ``advance``)."""


@dataclass(frozen=True)
class StoredObject:
    """One file in a store. ``sha256`` is ``""`` when the store cannot tell without reading it."""

    key: str
    size: int
    sha256: str = ""


@runtime_checkable
class Store(Protocol):
    """A place that keeps backup files under keys. Both stores behave the same way.

    ``delete`` of a missing key is not an error (S3 semantics), so an interrupted prune can
    simply be run again.
    """

    def put(self, src: Path, key: str, sha256: str, advance: Advance | None = None) -> StoredObject: ...

    def get(self, key: str, dest: Path, expected_sha256: str, advance: Advance | None = None) -> Path: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> list[StoredObject]: ...

    def delete(self, key: str) -> None: ...

    def read_bytes(self, key: str) -> bytes: ...

    def write_bytes(self, key: str, data: bytes) -> StoredObject: ...

    def describe(self) -> str: ...


def check_key(key: str) -> str:
    """Return ``key`` if it is a clean relative POSIX path, else raise.

    Why so strict: keys come from metadata files, which can be edited or damaged; a key
    that escapes the store's root must never reach ``open`` or ``unlink``.
    """
    parts = key.split("/")
    bad = (not key or key.startswith("/") or "\\" in key or "\0" in key
           or any(p in ("", ".", "..") for p in parts)
           or any(p.startswith(".") and PARTIAL_MARKER in p for p in parts))
    if bad:
        raise StorageError(f"invalid backup key {key!r}",
                           hint="keys are relative paths such as "
                                "postgres/postgres-2026-01-31-020000.sql.zst")
    return key


def normalise_sha256(value: str) -> str:
    """Accept ``sha256:<hex>`` (the metadata's form) or bare hex; return lower-case hex."""
    text = value.strip().lower()
    text = text.removeprefix("sha256:")
    if not _HEX64.match(text):
        raise StorageError("invalid SHA-256 checksum (expected 64 hex digits)",
                           hint="checksums look like sha256:9f86d081884c7d65…")
    return text


def sha256_file(path: Path, advance: Advance | None = None) -> str:
    """SHA-256 of a file, read in 1 MiB chunks so a multi-GB dump never sits in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            if advance is not None:
                advance(len(chunk))
    return digest.hexdigest()


def data_key(service: str, taken_at: datetime, suffix: str, serial: int = 1) -> str:
    """Key of a service's backup file: ``<service>/<service>-YYYY-MM-DD-HHMMSS<suffix>`` (UTC).

    ``suffix`` includes its dots, e.g. ``.sql.zst``; the time is rendered in UTC so the
    name does not depend on the host's timezone. The second backup taken in the same second
    is ``serial`` 2 and its files are ``…-HHMMSS-2<suffix>``, as its id is.
    """
    if taken_at.tzinfo is None:
        raise ValueError("taken_at must be timezone-aware")
    if not _SERVICE.match(service):
        raise ValueError(f"invalid service name {service!r}")
    stamp = taken_at.astimezone(timezone.utc).strftime("%Y-%m-%d-%H%M%S")
    if serial > 1:
        stamp = f"{stamp}-{serial}"
    return check_key(f"{service}/{service}-{stamp}{suffix}")


def metadata_key(backup_id: str) -> str:
    """Key of a backup's metadata JSON: ``metadata/backup-<backup_id>.json``."""
    if not backup_id or "/" in backup_id:
        raise ValueError(f"invalid backup id {backup_id!r}")
    return check_key(f"{METADATA_FOLDER}/backup-{backup_id}.json")


def key_name(key: str) -> str:
    """Last component of a key (the file name)."""
    return PurePosixPath(key).name
