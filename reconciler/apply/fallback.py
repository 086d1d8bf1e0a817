"""The backup before a broken service's recreate, when the service cannot be read.

Heal hands apply a stateful service whose server cannot run (it restarts in a loop, or stops
as soon as it starts); the planner then plans backup → recreate on a fresh volume → restore →
verify, and marks the backup ``fallback`` (the plan shows it before anyone confirms). The
backup is still tried first: a server that starts for it is backed up as usual and nothing
is lost. When it cannot be read, the latest verified backup of the service (local metadata
first, then S3) stands in for this apply's backup; restore and verify use it as they would
a fresh one. A ``warning`` and a ``backup-fallback`` journal line name it (id, time) and say
that changes made after it are lost. The old volume is kept (the apply summary lists it as
unused), so the broken data can still be examined by hand.

Never for a service that is fine. All of these must hold, else the backup's error stands and
nothing is stopped or removed:

* the plan's backup action says ``fallback``;
* the failure is about reading the service: not the backup's storage (an unwritable folder,
  a full disk, a required S3 copy that failed) and not the engine refusing to start the
  container (a port taken, a network or mount missing): fix those and take a real backup;
* the service is broken right now: its container is not running (exited, restarting in a
  loop) or its health probe is critical, and not merely turning the spec's credentials down
  (a server that runs but refuses the password is not broken: its data is the newest there is).
"""

from __future__ import annotations

from reconciler import dockerio
from reconciler.apply.context import ApplyRun
from reconciler.errors import (
    ApplyError,
    BackupError,
    EngineError,
    ReconcileError,
    StorageError,
)
from reconciler.health import Level, ServiceHealth
from reconciler.plan.actions import Action

LOG_LINES = 10


def reading_failed(error: BaseException) -> bool:
    """Whether the backup failed on the service's side (so a broken service explains it)."""
    if not isinstance(error, Exception) or isinstance(error, (StorageError, EngineError)):
        return False
    return not (isinstance(error, BackupError) and error.ref == "backup.s3-required")


def container_trouble(state: dict | None) -> str | None:
    """Why a container counts as not running (``None``: it runs)."""
    if state is None:
        return "it has no container"
    if state.get("Restarting"):
        return f"its container restarts in a loop, last exit code {state.get('ExitCode')}"
    if not state.get("Running"):
        return f"its container is {state.get('Status') or 'stopped'}, exit code {state.get('ExitCode')}"
    return None


def judge(action: Action, error: BaseException, state: dict | None,
          probe: ServiceHealth | None) -> str | None:
    """Why the latest verified backup may stand in (``None``: the error stands). Pure: the
    caller gives the container's ``State`` and, for a running one, its health probe."""
    if not action.fallback or not reading_failed(error):
        return None
    trouble = container_trouble(state)
    if trouble is not None:
        return trouble
    if probe is not None and probe.status == "refused":
        return None  # it runs and only turns the credentials down: it is not broken
    if probe is not None and probe.level >= Level.CRITICAL:
        return f"its health probe fails: {probe.status}"
    return None


def broken_reason(run: ApplyRun, action: Action, error: BaseException) -> str | None:
    """``judge`` on the service as it is now; a probe runs only for a running container."""
    if not action.fallback or not reading_failed(error):
        return None
    doc = run.session.container_doc(action.resource, action.container_id)
    state = (doc or {}).get("State") if doc is not None else None
    probe = None
    if container_trouble(state) is None:
        probe = _probe(run, action)
    return judge(action, error, state, probe)


def _probe(run: ApplyRun, action: Action) -> ServiceHealth:
    from reconciler.health import check_service

    try:
        return check_service(run.session, action.resource, action.container_id)
    except Exception as exc:  # noqa: BLE001 - a probe that cannot run is a failing probe
        return ServiceHealth(action.resource, "unreachable", Level.CRITICAL, {"error": type(exc).__name__})


def use_latest_verified(run: ApplyRun, action: Action, error: Exception, reason: str) -> dict:
    """Record the latest verified backup as this apply's backup of the service; stop the
    container if the failed backup left it restarting in a loop."""
    from reconciler.backup.restore import Source, find_backup
    from reconciler.backup.run import BackupRun

    service = action.resource
    text = getattr(error, "message", None) or f"{type(error).__name__}: {error}"
    try:
        doc = find_backup(run.session, "latest", [service], Source.AUTO)
    except ReconcileError as exc:
        raise ApplyError(f"{service} cannot be backed up ({reason}: {text}) and there is no verified "
                         f"backup of it to restore instead: {exc.message}", ref="apply.no-fallback",
                         hint="nothing was stopped or removed; repair the service by hand, or restore "
                              "a backup you trust with `reconcile restore`") from None
    _stop_loop(run, action)
    entry = doc["services"][service]
    run.backups[service] = BackupRun(doc["backup_id"], doc)
    run.record("backup-fallback", action=action.id, service=service, backup_id=doc["backup_id"],
               taken_at=doc["timestamp"], reason=reason, error=text,
               logs=(getattr(error, "logs", "") or "").splitlines()[-LOG_LINES:])
    run.warn(f"{service} cannot be read for a backup ({reason}); restoring the latest verified "
             f"backup instead: {doc['backup_id']} taken {doc['timestamp']}. Changes made to {service} "
             "after it are lost; its old volume is kept for inspection")
    return {"backup_id": doc["backup_id"], "fallback": True, "taken_at": doc["timestamp"],
            "file": entry.get("local_path"), "s3": doc["storage"].get("s3"),
            "rows": entry.get("row_count"), "keys": entry.get("key_count")}


def _stop_loop(run: ApplyRun, action: Action) -> None:
    """A server restarting in a loop would come back on the broken data during the recreate."""
    doc = run.session.container_doc(action.resource, action.container_id)
    if doc is None or not (doc.get("State") or {}).get("Running"):
        return
    grace = run.session.spec.services[action.resource].deploy.stop_grace
    run.step(action.id, f"stop {doc['Name'].lstrip('/')}: it cannot run", container=doc["Id"])
    dockerio.stop(run.session.client, doc["Id"], grace)
