"""The local backup folder: the primary copy, so it is strict about durability and access.

Folders are 0700 and files 0600 whatever the umask; every file appears under its final
name only when complete (temporary name + fsync + rename); a free-space preflight refuses
before a long dump starts rather than failing with a full disk halfway through.
"""

from __future__ import annotations

import errno
import hashlib
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, TypeVar

from reconciler.errors import StorageError
from reconciler.storage import claims, leftovers
from reconciler.storage.base import (
    Advance,
    StoredObject,
    check_key,
    normalise_sha256,
    sha256_file,
)
from reconciler.storage.claims import Claim
from reconciler.storage.files import (
    AtomicFile,
    ReadBack,
    checksum_mismatch,
    copy_hashing,
    ensure_dest_dir,
    human_bytes,
    is_temp_name,
    make_private_dir,
    os_error,
)

FREE_SPACE_MARGIN = 0.10
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
T = TypeVar("T")


class DiskWrites:
    """The file of a checked write as its writer sees it. A write the disk refuses (full) raises
    the store's error naming the file, and is kept in ``failure``: an engine streaming into it
    made its own error of the OSError (the cache's asked whether the cache was up and its
    password right), so ``write_checked`` reports this one, the cause, instead."""

    def __init__(self, handle: BinaryIO, path: Path) -> None:
        self._handle = handle
        self._path = path
        self.failure: StorageError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self._handle.write(data)
        except OSError as exc:
            self.failure = os_error(exc, "write", self._path)
            raise self.failure from exc

    def flush(self) -> None:
        self._handle.flush()

    def writable(self) -> bool:
        return True


class CheckedWrite:
    """The open file of ``LocalStore.write_checked`` and the digest its writer says it wrote."""

    def __init__(self, handle: DiskWrites, read_back: ReadBack) -> None:
        self.handle = handle
        self.read_back = read_back
        self.expected = ""

    def expect(self, sha256: str) -> None:
        self.expected = normalise_sha256(sha256)


class LocalStore:
    """Backups in a folder on this host; keys map to paths below ``root``."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).absolute()
        self._root_ready = False

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def describe(self) -> str:
        return f"local folder {self.root}"

    def path_of(self, key: str) -> Path:
        """Where ``key`` lives on disk (whether or not it exists yet)."""
        return self.root / check_key(key)

    # -- preflight -------------------------------------------------------------------

    def ensure_root(self) -> None:
        """Create the root 0700 (or tighten it); raise a StorageError saying how to fix it."""
        if not self._root_ready:
            self._guard("create backup folder", self.root, lambda: make_private_dir(self.root))
            self._root_ready = True

    def check_writable(self) -> None:
        """Prove we can create, sync and rename a file in the root before a backup starts."""
        self.ensure_root()
        probe = AtomicFile(self.root / ".write-probe")
        try:
            handle = self._guard("write to", self.root, probe.open)
            self._guard("write to", self.root, lambda: handle.write(b"ok") and handle.flush())
        finally:
            probe.abort()

    def free_space_check(self, needed_bytes: int, what: str) -> int:
        """Refuse early if the disk cannot take ``needed_bytes`` plus a 10 % margin.

        Returns the free bytes. The estimate is the caller's (e.g. the database size),
        so the margin absorbs estimates that are a little low.
        """
        anchor = _existing_ancestor(self.root)
        info = self._guard("check free space on", anchor, lambda: os.statvfs(anchor))
        free = info.f_bavail * info.f_frsize
        required = math.ceil(max(needed_bytes, 0) * (1 + FREE_SPACE_MARGIN))
        if free < required:
            raise StorageError(
                f"not enough free space for {what}: need {human_bytes(required)} "
                f"(estimate {human_bytes(needed_bytes)} + 10 % margin), "
                f"only {human_bytes(free)} free on the disk holding {self.root}",
                hint="free space there (e.g. prune old backups), or point backup.local.path "
                     "at a bigger disk")
        return free

    # -- writing ---------------------------------------------------------------------

    @contextmanager
    def open_for_write(self, key: str, *, replace: bool = True) -> Iterator[BinaryIO]:
        """Yield a binary file that appears as ``key`` (0600) only if the block succeeds.

        On an exception in the block the temporary file is removed and nothing exists
        under the final name; a full disk is reported as a StorageError. With
        ``replace=False`` an existing file under ``key`` is an error and is left as it was.
        """
        final = self._prepare(key)
        target = AtomicFile(final, replace=replace)
        self._guard("create", final, target.open)
        try:
            yield target.handle
        except BaseException as exc:
            target.abort()
            if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
                raise os_error(exc, "write", final) from exc
            raise
        self._finish(target)

    @contextmanager
    def write_checked(self, key: str) -> Iterator[CheckedWrite]:
        """``open_for_write(key, replace=False)`` for a backup: the block writes to
        ``checked.handle`` and ends with ``checked.expect(sha256)`` of what it wrote. The file
        is read back as it is written (``ReadBack``) and is kept under ``key`` only if what
        reached the disk has that digest; otherwise nothing is kept and a StorageError says so.
        """
        with self.open_for_write(key, replace=False) as handle:  # any error here: nothing kept
            checked = CheckedWrite(DiskWrites(handle, self.path_of(key)), ReadBack(handle.fileno()))
            try:
                yield checked
                assert checked.expected, "write_checked: the block must call expect(sha256)"
                handle.flush()
                actual = self._guard("read back", self.path_of(key), checked.read_back.digest)
            except Exception as exc:
                if (failure := checked.handle.failure) is not None and exc is not failure:
                    raise failure from exc  # the disk, not what the engine made of it
                raise
            finally:
                checked.read_back.close()
            if actual != checked.expected:
                raise StorageError(f"{self.path_of(key)} read back differs from what was written to it; "
                                   "nothing was kept",
                                   hint="the disk or file system corrupts writes: check `dmesg`, then "
                                        "back up again (to another backup.local.path if it persists)")

    def put(self, src: Path, key: str, sha256: str, advance: Advance | None = None) -> StoredObject:
        """Copy ``src`` into the store, re-hashing on the way; a mismatch stores nothing."""
        expected = normalise_sha256(sha256)
        final = self._prepare(key)
        if final.exists() and Path(src).resolve() == final.resolve():
            self.verify(key, expected)  # already in place (written by open_for_write)
            return StoredObject(key, final.stat().st_size, expected)
        target = AtomicFile(final)
        handle = self._guard("create", final, target.open)
        try:
            with open(src, "rb") as source:
                actual, size = copy_hashing(source, handle, advance)
        except OSError as exc:
            target.abort()
            raise os_error(exc, "copy into", final) from exc
        if actual != expected:
            target.abort()
            raise checksum_mismatch(str(src), "the file to store")
        self._finish(target)
        return StoredObject(key, size, actual)

    def write_bytes(self, key: str, data: bytes) -> StoredObject:
        """Write a small file (the metadata JSON) atomically."""
        with self.open_for_write(key) as handle:
            handle.write(data)
        return StoredObject(key, len(data), _sha256_bytes(data))

    def reserve(self, key: str) -> Claim | None:
        """Claim ``key`` for a file still to be written: a hidden marker beside it, created
        only if neither the marker nor ``key`` exists. None when it is taken. The caller
        holds the claim (``claims``: the marker stays open under a lock) for as long as its
        backup runs, S3 copy included, and ends it with ``release``. The marker names its
        owner, so a claim whose process died can be told (``leftovers``)."""
        final = self._prepare(key)
        if final.exists():
            return None
        claim = self._claim(final)
        if claim is not None and final.exists():  # written between the two looks
            claim.release()
            return None
        return claim

    def reclaim(self, key: str) -> Claim | None:
        """Claim the written ``key`` of a backup that is gone, to finish its work (its S3
        copy); None when a marker is there already (a running backup's, or one the next sweep
        removes)."""
        return self._claim(self._prepare(key))

    def _claim(self, final: Path) -> Claim | None:
        marker = leftovers.claim_marker(final)
        try:
            return claims.create(marker)
        except FileExistsError:
            return None
        except OSError as exc:
            raise os_error(exc, "create", marker) from exc

    @staticmethod
    def release(claim: Claim) -> None:
        claim.release()

    def sweep_leftovers(self) -> list[str]:
        """Remove what backups killed outright left behind (``leftovers``); their keys."""
        if not self.root.is_dir():
            return []
        removed = self._guard("clean up", self.root, lambda: leftovers.sweep(self.root))
        return [path.relative_to(self.root).as_posix() for path in removed]

    def delete(self, key: str) -> None:
        """Remove ``key``; a missing file is not an error, so prune can be re-run."""
        path = self.path_of(key)
        self._guard("delete", path, lambda: path.unlink(missing_ok=True))

    # -- reading ---------------------------------------------------------------------

    def exists(self, key: str) -> bool:
        return self.path_of(key).is_file()

    def read_bytes(self, key: str) -> bytes:
        path = self.path_of(key)
        return self._guard("read", path, path.read_bytes)

    def verify(self, key: str, expected_sha256: str, advance: Advance | None = None) -> Path:
        """Check ``key`` in place and return its path: restore reads it without a copy."""
        expected = normalise_sha256(expected_sha256)
        path = self.path_of(key)
        actual = self._guard("read", path, lambda: sha256_file(path, advance))
        if actual != expected:
            raise checksum_mismatch(key, self.describe())
        return path

    def get(self, key: str, dest: Path, expected_sha256: str, advance: Advance | None = None) -> Path:
        """Copy ``key`` to ``dest`` (0600), re-hashing; on mismatch ``dest`` is not created."""
        expected = normalise_sha256(expected_sha256)
        source_path = self.path_of(key)
        dest = Path(dest).absolute()
        if dest.exists() and dest.resolve() == source_path.resolve():
            return self.verify(key, expected, advance)
        self._guard("create", dest.parent, lambda: ensure_dest_dir(dest.parent))
        target = AtomicFile(dest)
        handle = self._guard("create", dest, target.open)
        try:
            with open(source_path, "rb") as source:
                actual, _ = copy_hashing(source, handle, advance)
        except OSError as exc:
            target.abort()
            raise os_error(exc, "read", source_path) from exc
        if actual != expected:
            target.abort()
            raise checksum_mismatch(key, self.describe())
        self._finish(target)
        return dest

    def list(self, prefix: str = "") -> list[StoredObject]:
        """Every complete file whose key starts with ``prefix``, sorted by key.

        ``sha256`` is ``""``: hashing every backup to list them would read gigabytes.
        """
        if not self.root.is_dir():
            return []
        found: list[StoredObject] = []
        for folder, dirs, files in os.walk(self._walk_start(prefix)):
            dirs.sort()
            for name in sorted(files):
                if is_temp_name(name):
                    continue
                path = Path(folder) / name
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    found.append(StoredObject(key, path.stat().st_size, ""))
        return sorted(found, key=lambda item: item.key)

    # -- helpers ---------------------------------------------------------------------

    def _walk_start(self, prefix: str) -> Path:
        """Walk only the folder the prefix names (``postgres/…`` → ``root/postgres``)."""
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root / folder if folder and ".." not in folder.split("/") else self.root
        return start if start.is_dir() else self.root

    def _prepare(self, key: str) -> Path:
        """Path for ``key`` with its folders created 0700 below the root."""
        final = self.path_of(key)
        self.ensure_root()
        self._guard("create folder", final.parent,
                    lambda: make_private_dir(final.parent, stop_at=self.root))
        return final

    def _finish(self, target: AtomicFile) -> None:
        try:
            target.commit()
        except BaseException as exc:
            target.abort()
            if isinstance(exc, FileExistsError):
                raise StorageError(f"{target.final} already exists; not overwritten",
                                   hint="another backup wrote the same file; retry") from None
            if isinstance(exc, OSError):
                raise os_error(exc, "write", target.final) from exc
            raise

    @staticmethod
    def _guard(action: str, path: Path, work: Callable[[], T]) -> T:
        """Run ``work``; turn an OSError into a StorageError with a hint."""
        try:
            return work()
        except OSError as exc:
            raise os_error(exc, action, path) from exc


def _existing_ancestor(path: Path) -> Path:
    """The nearest folder that exists: free space is asked of the disk that will hold it."""
    current = path
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
