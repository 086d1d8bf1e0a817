"""File-system helpers shared by the stores: private folders and atomic, hashed writes.

A backup file must either be complete under its final name or absent: a reader (restore,
prune, an operator with ``ls``) must never see half a dump. So every write goes to a
hidden temporary name in the same folder, is fsynced, and is renamed into place; on any
error the temporary file is removed. Permissions are set explicitly (not left to the
umask) because backups hold the whole database.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

from reconciler.errors import StorageError
from reconciler.storage.base import PARTIAL_MARKER, Advance, CorruptObject

DIR_MODE = 0o700
FILE_MODE = 0o600
ANCESTOR_MODE = 0o755
_CHUNK = 1024 * 1024


def make_private_dir(path: Path, *, stop_at: Path | None = None) -> None:
    """Create ``path`` as 0700, tighten it if it exists looser, and do the same for its
    parents down from ``stop_at`` (the store root). Parents above the root get 0755."""
    inside = [path] if stop_at is None else _chain(stop_at, path)
    make_ancestors(inside[0].parent)
    for folder in inside:
        try:
            folder.mkdir(mode=DIR_MODE)
            os.chmod(folder, DIR_MODE)  # the umask may have removed bits we asked for
        except FileExistsError:
            _tighten(folder)


def make_ancestors(folder: Path) -> None:
    """Create missing folders above a store as 0755 (explicitly: ``mkdir(parents=True)``
    would make them 0777 under a zero umask). Existing ones are not touched."""
    missing: list[Path] = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=ANCESTOR_MODE)
        except FileExistsError:
            continue
        os.chmod(path, ANCESTOR_MODE)


def _chain(root: Path, path: Path) -> list[Path]:
    """``root`` and every folder between it and ``path`` (inclusive), outermost first."""
    relative = path.relative_to(root)
    chain = [root]
    for part in relative.parts:
        chain.append(chain[-1] / part)
    return chain


def _tighten(folder: Path) -> None:
    info = folder.lstat()
    if stat.S_ISLNK(info.st_mode):
        info = folder.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(folder))
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(folder, DIR_MODE)


def temp_name(final: Path) -> Path:
    """The hidden temporary sibling of ``final``: ``.<name>.partial-<random>``."""
    return final.with_name(f".{final.name}{PARTIAL_MARKER}{secrets.token_hex(6)}")


def is_temp_name(name: str) -> bool:
    return name.startswith(".") and PARTIAL_MARKER in name


class AtomicFile:
    """A file written under a hidden temporary name and renamed into place on ``commit``.

    Explicit ``open``/``commit``/``abort`` (rather than only a context manager) let a
    caller tell its own errors from ours, and let S3 downloads verify before committing.
    """

    def __init__(self, final: Path, *, replace: bool = True) -> None:
        self.final = final
        self.tmp = temp_name(final)
        self.replace = replace
        self.handle: BinaryIO | None = None

    def open(self) -> BinaryIO:
        # read-write: ReadBack reads the file back through the same descriptor
        fd = os.open(self.tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        try:
            os.fchmod(fd, FILE_MODE)  # O_CREAT's mode is filtered by the umask
            self.handle = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            self.tmp.unlink(missing_ok=True)
            raise
        return self.handle

    def commit(self) -> None:
        """fsync, rename over ``final``, fsync the folder: durable and all-or-nothing.

        With ``replace=False`` an existing ``final`` is never overwritten: the commit fails
        with ``FileExistsError`` (a hard link appears atomically or not at all).
        """
        assert self.handle is not None, "open() first"
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        if self.replace:
            os.replace(self.tmp, self.final)
        else:
            os.link(self.tmp, self.final)
            self.tmp.unlink()
        fsync_dir(self.final.parent)

    def abort(self) -> None:
        """Drop the temporary file; safe to call more than once and after a failed commit."""
        if self.handle is not None and not self.handle.closed:
            with suppress(OSError):
                self.handle.close()
        self.tmp.unlink(missing_ok=True)


class ReadBack:
    """Reads a file back while it is being written, in a thread: hashes what reached the file
    and syncs it to disk as it goes.

    Checking a backup by reading it back after the write (a second full pass, plus one
    fsync of the whole file at the end) cost the cache's backup 45 ms of 2.2 s and a large
    PostgreSQL dump a second pass over its file. Here both happen while the dump is still
    running, on the core the dump leaves idle: at the end only the last megabytes are left
    to read and sync. The file only grows and is written in order, so each byte read is the
    byte that stays; ``digest`` is taken after the writer has flushed everything.
    """

    SYNC_EVERY = 8 * 1024 * 1024  # what the commit's fsync is left with, at most (~5 ms here)
    IDLE_WAIT = 0.05  # seconds between looks when the reader has caught up with the writer

    def __init__(self, fd: int) -> None:
        self._fd = fd  # the writer's, opened read-write; ``pread`` leaves its offset alone
        self._hash = hashlib.sha256()
        self._flushed = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="read-back", daemon=True)
        self._thread.start()

    def digest(self) -> str:
        """The SHA-256 of the whole file; call once the writer has flushed its last byte."""
        self._stop()
        if self._error is not None:
            raise self._error
        return self._hash.hexdigest()

    def close(self) -> None:
        """Stop reading; safe to call more than once, and before the writer closes the file."""
        self._stop()

    def _stop(self) -> None:
        self._flushed.set()
        self._thread.join()

    def _run(self) -> None:
        offset = synced = 0
        try:
            while True:
                last = self._flushed.is_set()  # seen before the reads: they then reach the end
                while chunk := os.pread(self._fd, _CHUNK, offset):
                    self._hash.update(chunk)
                    offset += len(chunk)
                    if offset - synced >= self.SYNC_EVERY:
                        os.fdatasync(self._fd)
                        synced = offset
                if last:
                    return
                self._flushed.wait(self.IDLE_WAIT)
        except BaseException as exc:  # noqa: BLE001 - raised by digest() in the writer's thread
            self._error = exc


@contextmanager
def atomic_write(final: Path) -> Iterator[BinaryIO]:
    """Yield a binary file that becomes ``final`` (0600) only if the block exits cleanly."""
    target = AtomicFile(final)
    handle = target.open()
    try:
        yield handle
        target.commit()
    except BaseException:
        target.abort()
        raise


def ensure_dest_dir(folder: Path) -> None:
    """Create a download folder (0700) if missing; an existing one is left as it is."""
    if folder.is_dir():
        return
    make_ancestors(folder.parent)
    folder.mkdir(mode=DIR_MODE, exist_ok=True)
    os.chmod(folder, DIR_MODE)


def fsync_dir(folder: Path) -> None:
    """Make a rename durable: without it a power cut can forget the new name."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_hashing(src: BinaryIO, dst: BinaryIO, advance: Advance | None = None) -> tuple[str, int]:
    """Copy a stream and return (sha256 hex, bytes copied) in one pass."""
    digest = hashlib.sha256()
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    total = 0
    while count := src.readinto(view):
        digest.update(view[:count])
        dst.write(view[:count])
        total += count
        if advance is not None:
            advance(count)
    return digest.hexdigest(), total


def human_bytes(count: float) -> str:
    """``1536`` → ``1.5 KiB``: sizes in messages people read."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def checksum_mismatch(what: str, where: str) -> CorruptObject:
    """The one error for a file whose bytes are not the bytes we recorded."""
    return CorruptObject(
        f"checksum mismatch for {what} in {where}: the file is corrupt or was changed",
        hint="use another copy of this backup (local or S3), or a different backup id")


def os_error(exc: OSError, action: str, path: Path) -> StorageError:
    """Translate a file-system error into a StorageError that says what to do."""
    code = exc.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        hint = f"free space on the disk holding {path} or point backup.local.path elsewhere"
        return StorageError(f"disk full while trying to {action} {path}", hint=hint)
    if code in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST):
        hint = (f"check that {path} is writable by uid {os.geteuid()} and the disk is not "
                "read-only")
        return StorageError(f"cannot {action} {path}: {exc.strerror or exc}", hint=hint)
    if code == errno.ENOENT:
        return StorageError(f"cannot {action} {path}: not found",
                            hint="check backup.local.path and that the backup exists")
    return StorageError(f"cannot {action} {path}: {exc.strerror or exc}",
                        hint="check the disk and the file system (dmesg may say more)")
