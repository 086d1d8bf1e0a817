"""One apply at a time per project: an flock'd file in the state dir that says who holds it.

The kernel releases an flock when its process dies, so a crashed apply never blocks the next
one; the file's last contents then tell whose lock was taken over, and we warn about it.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from reconciler.errors import ReconcileError


class LockError(ReconcileError):
    ref = "lock"
    exit_code = 1


@dataclass(frozen=True)
class Holder:
    who: str
    host: str
    pid: int
    since: str
    apply_id: str = ""

    def describe(self) -> str:
        return f"{self.who}@{self.host} pid {self.pid} since {self.since}"


class ApplyLock:
    """``with ApplyLock(state_dir, apply_id, wait=30) as lock:``; ``lock.took_over`` for the warning."""

    def __init__(self, state_dir: Path, apply_id: str, wait: float = 0.0, poll: float = 0.5) -> None:
        self.path = state_dir / "apply.lock"
        self.apply_id = apply_id
        self.wait = wait
        self.poll = poll
        self.took_over: Holder | None = None
        self._fd: int | None = None

    def __enter__(self) -> ApplyLock:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = self._read(fd)
                    os.close(fd)
                    raise LockError(
                        f"another apply holds the lock ({holder.describe() if holder else 'unknown'})",
                        hint="wait for it to finish, or pass --lock-wait 10m to queue behind it",
                        ref="lock.busy") from None
                time.sleep(self.poll)
        # A clean exit empties the file, so leftover contents mean the holder died mid-apply.
        self.took_over = self._read(fd)
        self._write(fd)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def _read(self, fd: int) -> Holder | None:
        os.lseek(fd, 0, os.SEEK_SET)
        return _holder(os.read(fd, 4096))

    def _write(self, fd: int) -> None:
        holder = Holder(who=getpass.getuser(), host=socket.gethostname(), pid=os.getpid(),
                        since=datetime.now(UTC).isoformat(timespec="seconds"), apply_id=self.apply_id)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(holder.__dict__).encode())
        os.fsync(fd)


def held_by(state_dir: Path) -> Holder | None:
    """Who holds the apply lock right now (an apply in progress), without taking it; None
    when no apply runs. For readers that must not judge a stack an apply is changing."""
    path = state_dir / "apply.lock"
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # held: by whom, if it has said so yet
            return _holder(os.read(fd, 4096)) or Holder("?", "?", 0, "?")
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _holder(raw: bytes) -> Holder | None:
    """The holder a lock file names; None when it is empty (a clean exit) or unreadable."""
    try:
        return Holder(**json.loads(raw)) if raw.strip() else None
    except (ValueError, TypeError):
        return None
