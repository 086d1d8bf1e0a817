"""One apply at a time per project: flock'd files that say who holds them.

Two locks, taken in turn: the state dir's (``<state_dir>/apply.lock``), and one per project
and engine on this host (``/run/lock/reconcile/<project>-<engine>.lock``), so two checkouts
of one stack (a CI runner's workspace and an operator's folder, each with its own state dir)
never change the same containers at once: each would take the other's new containers for
leftovers of an interrupted apply. The engine is told apart by ``DOCKER_HOST``.

The kernel releases an flock when its process dies, so a crashed apply never blocks the next
one; the file's last contents then tell whose lock was taken over, and we warn about it.
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable
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
    command: str = ""  # apply, rollback, heal, restore: what holds it

    def describe(self) -> str:
        if not self.pid:  # ``held_by``'s holder of a lock whose file names nobody (yet)
            return "holder unknown"
        return f"{self.who}@{self.host} pid {self.pid} since {self.since}"

    @property
    def running(self) -> str:
        """``an apply``, ``a restore``: what holds the lock, for a sentence."""
        what = self.command or "apply"
        return f"{'an' if what[0] in 'aeiou' else 'a'} {what}"


LOCK_DIR_ENV = "RECONCILE_LOCK_DIR"  # where the per-project host locks live (tests)
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


def project_lock_path(project: str, environ=os.environ) -> Path:
    """The host-wide lock of ``project`` on the engine ``DOCKER_HOST`` names: under
    ``/run/lock`` (every user's, cleared at boot, and not hidden by a systemd unit's private
    /tmp), else the temporary folder."""
    engine = hashlib.sha256((environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST).encode()).hexdigest()[:12]
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", project)
    root = environ.get(LOCK_DIR_ENV)
    if not root:
        shared = Path("/run/lock")
        root = shared if shared.is_dir() and os.access(shared, os.W_OK) else Path(tempfile.gettempdir())
        root = Path(root) / "reconcile"
    return Path(root) / f"{name}-{engine}.lock"


class ApplyLock:
    """``with ApplyLock(state_dir, apply_id, wait=30, project=p) as lock:``; ``lock.took_over``
    for the warning. ``on_wait(holder)`` is told once when the lock is busy and it waits."""

    def __init__(self, state_dir: Path, apply_id: str, wait: float = 0.0, poll: float = 0.5,
                 project: str = "", on_wait: Callable[[Holder | None], None] | None = None,
                 command: str = "apply") -> None:
        self.path = state_dir / "apply.lock"
        self.shared = project_lock_path(project) if project else None
        self.project = project
        self.apply_id = apply_id
        self.wait = wait
        self.poll = poll
        self.on_wait = on_wait
        self.command = command
        self.took_over: Holder | None = None
        self._fds: list[int] = []

    def __enter__(self) -> ApplyLock:
        deadline = time.monotonic() + self.wait
        try:
            for path in filter(None, (self.path, self.shared)):
                fd = self._take(path, deadline)
                # A clean exit empties the file, so leftover contents mean the holder died mid-apply.
                self.took_over = self.took_over or self._read(fd)
                self._write(fd)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _take(self, path: Path, deadline: float) -> int:
        fd = _open(path, shared=path == self.shared)
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._fds.append(fd)
                return fd
            except BlockingIOError:
                holder = self._read(fd)
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise self._busy(path, holder) from None
                if not told and self.on_wait is not None:
                    self.on_wait(holder)
                    told = True
                time.sleep(self.poll)

    def _busy(self, path: Path, holder: Holder | None) -> LockError:
        who = holder.describe() if holder else "unknown"
        waited = f" (waited {self.wait:g}s)" if self.wait else ""
        longer = f"{max(600, int(self.wait) * 2) // 60}m"
        if path != self.shared:
            return LockError(f"{_another(holder)} holds the lock ({who}){waited}", ref="lock.busy",
                             hint=f"wait for it to finish, or pass --lock-wait {longer} to queue behind it")
        return LockError(f"{_another(holder)} of project {self.project} on this engine holds the lock "
                         f"({who}){waited}, "
                         "from another state dir", ref="lock.busy",
                         hint=f"wait for it to finish, or pass --lock-wait {longer} to queue behind it; two "
                              "checkouts of one stack should share one state_dir (journal, volume "
                              "generations, proxy configs)")

    def __exit__(self, *exc: object) -> None:
        for fd in reversed(self._fds):
            try:
                os.ftruncate(fd, 0)
            except OSError:  # the shared file of another user: read-only to us
                pass
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        self._fds = []

    def _read(self, fd: int) -> Holder | None:
        os.lseek(fd, 0, os.SEEK_SET)
        return _holder(os.read(fd, 4096))

    def _write(self, fd: int) -> None:
        holder = Holder(who=getpass.getuser(), host=socket.gethostname(), pid=os.getpid(),
                        since=datetime.now(UTC).isoformat(timespec="seconds"), apply_id=self.apply_id,
                        command=self.command)
        try:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, json.dumps(holder.__dict__).encode())
            os.fsync(fd)
        except OSError:  # the shared file of another user: holding it is what counts
            pass


def _another(holder: Holder | None) -> str:
    return f"another {holder.command if holder and holder.command else 'apply'}"


def waiting_notice(emit: Callable[[dict], None], wait: float) -> Callable[[Holder | None], None]:
    """``on_wait`` for a command that emits events: a CI log says why nothing happens."""
    def notice(holder: Holder | None) -> None:
        emit({"event": "notice", "message": f"waiting up to {wait:g}s for {_another(holder)} to finish "
                                            f"({holder.describe() if holder else 'holder unknown'})"})
    return notice


def _open(path: Path, shared: bool) -> int:
    """The lock file, made if needed. The state dir's is private (0600 in a 0700 folder); the
    host-wide one is readable by all (it names a user, host and pid), its folder sticky and
    open to all, as /run/lock is, so every user's applies of a project meet there."""
    if not shared:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    if not path.parent.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.chmod(path.parent, 0o1777)
        except OSError:
            pass
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except PermissionError:  # another user's file: a read-only descriptor can hold an flock too
        fd = os.open(path, os.O_RDONLY)
    try:
        os.fchmod(fd, 0o644)
    except OSError:
        pass
    return fd


def held_by(state_dir: Path, project: str = "") -> Holder | None:
    """Who holds the apply lock right now (an apply in progress, from this state dir or, with
    ``project``, any other on this host), without taking it; None when no apply runs. For
    readers that must not judge a stack an apply is changing."""
    for path in [state_dir / "apply.lock"] + ([project_lock_path(project)] if project else []):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:  # held: by whom, if it has said so yet
                return _holder(os.read(fd, 4096)) or Holder("?", "?", 0, "?")
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
    return None


def _holder(raw: bytes) -> Holder | None:
    """The holder a lock file names; None when it is empty (a clean exit) or unreadable."""
    try:
        return Holder(**json.loads(raw)) if raw.strip() else None
    except (ValueError, TypeError):
        return None
