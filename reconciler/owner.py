"""Who runs this process, and whether the owner a leftover names still runs.

A backup's claim marker (storage/leftovers) and every helper container (dockerio/stream) name
their owner: host, pid and pid namespace. A later run removes what an owner left as soon as
that owner is gone, and never what a live one is still using. Only an owner seen from the same
host and pid namespace can be checked: a CI job in a container with the host's name (host
networking) has pids of its own, which this process must not judge. Anything else is unknown,
and the caller falls back to the leftover's age.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping


def owner() -> dict[str, object]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "pidns": _pid_namespace()}


def owner_text() -> str:
    return json.dumps(owner(), separators=(",", ":"))


def parse(text: str | bytes | None) -> dict:
    """An owner as written by ``owner_text`` (or an older marker); {} when unreadable."""
    try:
        found = json.loads(text or b"{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def gone(holder: Mapping) -> bool | None:
    """True when the owner has exited, False when it runs, None when this process cannot tell
    (another host or pid namespace, or no owner recorded)."""
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int):
        return None
    if "pidns" in holder and holder["pidns"] != _pid_namespace():  # markers before 2026-11-29 lack it
        return None
    return not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""
