"""Read the engine in a forked process while the command line starts up.

Most of a plan's wall time is start-up (importing typer, pydantic and the spec models, then
validating the spec) and asking the engine about each container. Neither needs the other
until the planner runs, and the machine has more than one core, so ``start`` forks, first
thing in the process, a child that reads the spec's project and image names with the C YAML
parser, imports the Docker SDK and takes the raw snapshot (``dockerio.project_snapshot``),
then hands it back through a pipe. The parent validates the spec meanwhile and ``claim``s the
snapshot only when it was taken for the same file, project and images.

The data commands (backup, restore, verify) get the same head start for the one thing they
ask the engine before their work: the inspect documents of the project's containers. A cache
backup then never imports the SDK in the parent, and its dump starts about 60 ms sooner.

The child is only a head start: when it fails, or read something the validated spec does not
match, the parent observes by itself, so every error is reported exactly as without it. The
snapshot (which holds container environments) never touches the disk, only the pipe.
"""

from __future__ import annotations

import atexit
import os
import pickle
import signal
from dataclasses import dataclass
from pathlib import Path

DISABLE_ENV = "RECONCILE_NO_PREFETCH"


@dataclass(frozen=True)
class _Pending:
    """The forked child and the read end of its pipe."""

    pid: int
    fd: int


_pending: _Pending | None = None


def start(spec_file: Path, *, containers_only: bool = False) -> None:
    """Fork the child that reads the engine for this spec (unless ``RECONCILE_NO_PREFETCH``):
    the whole snapshot plan needs, or with ``containers_only`` the containers' documents.

    Call it before any thread exists: the child of a threaded process may inherit held locks.
    """
    global _pending
    if _pending is not None or os.environ.get(DISABLE_ENV) or not hasattr(os, "fork"):
        return
    if not spec_file.is_file():
        return
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child ends in os._exit; its result is what tests check
        os.close(read_fd)
        _child(spec_file, write_fd, containers_only)
    os.close(write_fd)
    _pending = _Pending(pid, read_fd)
    atexit.register(_discard)


def claim(spec_file: Path, project: str, image_refs) -> dict | None:
    """The child's snapshot if it was taken for this file, project and images; else None."""
    found = _receive()
    if found is None or found["image_refs"] is None:
        return None
    wanted = (str(spec_file), project, sorted(set(image_refs)))
    if (found["spec_file"], found["project"], found["image_refs"]) != wanted:
        return None
    return found["raw"]


def claim_containers(spec_file: Path, project: str) -> dict[str, dict]:
    """The inspect documents of the project's containers by name, if the child read them for
    this file and project; else an empty mapping (the caller inspects by itself)."""
    found = _receive()
    if found is None or (found["spec_file"], found["project"]) != (str(spec_file), project):
        return {}
    return {doc["Name"].lstrip("/"): doc for doc in found["raw"]["containers"]}


def _receive() -> dict | None:
    """What the child sent, once; None when there is no child or it read nothing whole."""
    global _pending
    pending, _pending = _pending, None
    if pending is None:
        return None
    try:
        with os.fdopen(pending.fd, "rb") as pipe:
            payload = pipe.read()
        _reap(pending.pid, block=True)
        found = pickle.loads(payload) if payload else None
    except (OSError, pickle.UnpicklingError, EOFError):
        return None
    return found if isinstance(found, dict) else None  # the child writes only when it read all


def spec_targets(spec_file: Path, environ=os.environ) -> tuple[str, list[str]]:
    """The project and image references of a spec, read the quick way (no validation)."""
    data, resolved = _quick_read(spec_file, environ)
    refs = [resolved(service["image"]) for service in data["services"].values()]
    return resolved(data["project"]), sorted(set(refs))


def spec_project(spec_file: Path, environ=os.environ) -> str:
    """The project of a spec, read the quick way (no validation)."""
    data, resolved = _quick_read(spec_file, environ)
    return resolved(data["project"])


def _quick_read(spec_file: Path, environ):
    """The spec's plain data (C YAML parser) and a function that interpolates one of its strings."""
    from ruamel.yaml import YAML

    from reconciler.spec.interpolate import interpolate

    data = YAML(typ="safe", pure=False).load(spec_file.read_text(encoding="utf-8"))
    base = spec_file.parent

    def resolved(text) -> str:
        if not isinstance(text, str):
            raise ValueError("not a string")
        return interpolate(text, environ, base).value

    return data, resolved


def _child(spec_file: Path, write_fd: int, containers_only: bool) -> None:  # pragma: no cover
    """Read the snapshot and send it; never returns, never writes to the terminal."""
    status = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):  # a caller waiting for our stdout's end must not wait for us
            os.dup2(null, fd)
        if containers_only:
            project, refs = spec_project(spec_file), None
        else:
            project, refs = spec_targets(spec_file)
        from reconciler import dockerio

        client = dockerio.connect()
        raw = ({"containers": dockerio.project_containers(client, project)} if refs is None
               else dockerio.project_snapshot(client, project, refs))
        payload = pickle.dumps({"spec_file": str(spec_file), "project": project,
                                "image_refs": refs, "raw": raw}, protocol=pickle.HIGHEST_PROTOCOL)
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(payload)
    except BaseException:  # noqa: BLE001 - any failure means: the parent observes by itself
        status = 1
    finally:
        os._exit(status)


def _reap(pid: int, block: bool) -> None:
    try:
        os.waitpid(pid, 0 if block else os.WNOHANG)
    except ChildProcessError:
        pass


def _discard() -> None:
    """At exit, stop a child whose snapshot nobody claimed (the spec was invalid, say)."""
    global _pending
    pending, _pending = _pending, None
    if pending is None:
        return
    try:
        os.kill(pending.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _reap(pending.pid, block=True)
    os.close(pending.fd)

