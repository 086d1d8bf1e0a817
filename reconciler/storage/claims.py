"""A backup's claim on its id, and whether the backup holding it still runs.

The claim is a hidden marker beside the backup's metadata (``LocalStore.reserve``), created
only if absent, so two backups never share an id. Its owner keeps it open under an exclusive
``flock`` for the whole backup, its S3 copy included: the kernel drops that lock the moment
the process ends, however it ends (SIGKILL, the OOM killer, a reboot), so a reader that can
take a shared lock on the marker knows its backup is gone. No pid to be reused, no clock, and
it holds across pid namespaces (a CI job in a container) on the same file system.
The marker also names its owner (``reconciler.owner``) with ``"flock": true``: a marker
without it (written before the lock existed, or in the instant between its creation and its
lock) is judged by its pid and age instead (``leftovers``).
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

from reconciler.owner import owner, parse


@dataclass
class Claim:
    """A marker this process created and holds locked; ``release`` removes it."""

    path: Path
    fd: int | None

    def release(self) -> None:
        """Remove the marker, then drop the lock: a reader never finds the marker of a running
        backup unlocked (a metadata record updated before this is final by then)."""
        self.path.unlink(missing_ok=True)
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def create(marker: Path) -> Claim | None:
    """Create ``marker`` (0600) and hold it locked; None when it exists already."""
    fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)  # FileExistsError: taken
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # blocks only while a reader holds its test lock (an instant)
        os.write(fd, json.dumps({**owner(), "flock": True}, separators=(",", ":")).encode())
    except BaseException:
        os.close(fd)
        marker.unlink(missing_ok=True)
        raise
    return Claim(marker, fd)


def held(marker: Path) -> bool | None:
    """True while a live process holds ``marker`` locked, False when none does (or it is gone),
    None when this process cannot tell (it may not read the marker)."""
    try:
        fd = os.open(marker, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # shared: two readers never see each other
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)  # closing drops the test lock
    return False


def locks(text: bytes | str | None) -> bool:
    """Whether the marker's owner said it holds it locked (so unlocked means gone)."""
    return parse(text).get("flock") is True
