"""Why a restore's server went away mid-load: the OOM killer, which the engines cannot see.

A cache or database killed for memory ends the restore's connection ("Connection reset by
peer"), and the engine's error said to run the restore again, which loads the same data into
the same limit and is killed again. The container's own record (``State.OOMKilled``, and a
start after the restore began when a restart policy brought it back) is what says so.
"""

from __future__ import annotations

import time
from datetime import datetime

from reconciler.errors import ReconcileError, RestoreError
from reconciler.operate.facts import parse_time
from reconciler.storage.files import human_bytes

SETTLE = 1.5


def explained(session, service: str, container_id: str, error: ReconcileError,
              began: datetime) -> ReconcileError:
    """``error``, or a RestoreError saying the container was killed out of memory meanwhile."""
    why = _out_of_memory(session, container_id, began)
    if why is None:
        return error
    return RestoreError(f"{error.message}; {service}'s container was {why} during the restore",
                        ref="restore.out-of-memory",
                        hint=f"give {service} more memory (its mem_limit in the spec, then `reconcile apply`), "
                             "then run the restore again: as it is, the same data would be killed again")


def _out_of_memory(session, container_id: str, began: datetime) -> str | None:
    doc = _after_exit(session, container_id, began)
    state = (doc or {}).get("State") or {}
    if not state.get("OOMKilled") or _same_run(state, began):
        return None  # not killed, or an older kill, from before this restore
    limit = int((doc.get("HostConfig") or {}).get("Memory") or 0)
    return "killed out of memory (OOMKilled" + (f", memory limit {human_bytes(limit)})" if limit else ")")


def _after_exit(session, container_id: str, began: datetime) -> dict | None:
    """The container's inspect once the engine has taken in a kill: the restore sees its
    connection reset a moment before the engine records the exit, so a container still
    running as before is asked again, for up to ``SETTLE`` seconds."""
    from reconciler import dockerio

    deadline = time.monotonic() + SETTLE
    while True:
        try:
            doc = dockerio.inspect_container(session.client, container_id)
        except ReconcileError:
            return None
        state = doc.get("State") or {}
        if not _same_run(state, began) or time.monotonic() > deadline:  # OOMKilled may be an old kill's
            return doc
        time.sleep(0.1)


def _same_run(state: dict, began: datetime) -> bool:
    """Running since before the restore began: not killed (or not yet seen to be)."""
    started = parse_time(state.get("StartedAt"))
    return bool(state.get("Running")) and started is not None and started < began
