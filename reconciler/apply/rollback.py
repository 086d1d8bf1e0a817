"""Put a failed swap back as it was: the old container, on its old volume, running.

Driven by the executor's ``Swap`` (the same facts as the journal's ``step`` lines), never
re-planned: remove the candidate and the fresh volume generations made for it, rename the
old container back to the canonical name, start it when it was running, wait until healthy
(until it runs, when it was replaced for being unhealthy). Success → ``ApplyError`` (exit 2:
failed, nothing lost). Any rollback step failing → ``CriticalError`` (exit 3) whose hint is
the exact manual recovery: which container to remove, which to rename and start, which volume
holds the data, which backup file.
"""

from __future__ import annotations

from reconciler import dockerio
from reconciler.apply import gate
from reconciler.apply.context import ApplyRun, Swap
from reconciler.apply.signals import finishing
from reconciler.errors import ApplyError, CriticalError, ReconcileError
from reconciler.plan.planner import UNHEALTHY_CAUSE


def rollback(run: ApplyRun, swap: Swap, action_id: str, error: BaseException) -> ApplyError:
    """Undo ``swap``; returns the error to raise (``CriticalError`` if the undo failed)."""
    reason = "interrupted" if isinstance(error, KeyboardInterrupt) else \
        getattr(error, "message", None) or f"{type(error).__name__}: {error}"
    run.record("rollback-begin", service=swap.service, reason=reason, swap=swap.as_dict())
    try:
        with finishing("the rollback"):
            _undo(run, swap, action_id)
    except (ReconcileError, OSError) as exc:
        detail = getattr(exc, "message", None) or str(exc)
        run.record("rollback-end", service=swap.service, status="failed", error=detail)
        return CriticalError(
            f"{reason}; the rollback failed too ({detail})",
            ref="apply.rollback-failed", hint=manual_steps(run, swap))
    run.record("rollback-end", service=swap.service, status="ok")
    return ApplyError(f"{reason}; rolled back: {_as_before(run, swap, action_id)}",
                      ref="apply.rolled-back",
                      hint="nothing was lost; run apply again" if reason == "interrupted"
                      else "nothing was lost; fix the cause shown above and run apply again")


def _as_before(run: ApplyRun, swap: Swap, action_id: str) -> str:
    """Where the rollback left the service, truly: "runs as before" of a container left stopped
    (heal stops one that restarts in a loop before it recreates it) sent people looking (QA)."""
    if swap.old_id is None:
        return f"the new {swap.canonical} is removed (there was none before)"
    if not swap.old_running:
        return f"{swap.canonical} is back on its old data, stopped as it was when the change began"
    still = " (unhealthy before the recreate: not awaited to turn healthy)" if was_unhealthy(run, action_id) else ""
    return f"{swap.canonical} runs as before on its old data{still}"


def _undo(run: ApplyRun, swap: Swap, action_id: str) -> None:
    client = run.session.client
    if swap.new_id is not None:
        run.step(action_id, f"rollback: remove {swap.new_name}", container=swap.new_id)
        dockerio.remove_container(client, swap.new_id)
        swap.new_id = None
    for logical, engine in list(swap.fresh.items()):
        run.step(action_id, f"rollback: remove fresh volume {engine}", volume=engine)
        dockerio.remove_volume(client, engine)
        del swap.fresh[logical]
    if swap.old_id is None:
        return
    if swap.renamed:
        run.step(action_id, f"rollback: rename {swap.previous_name} → {swap.canonical}", container=swap.old_id)
        dockerio.rename(client, swap.old_id, swap.canonical)
        swap.renamed = False
    if swap.old_running:
        run.step(action_id, f"rollback: start {swap.canonical}", container=swap.old_id)
        dockerio.start(client, swap.old_id)
        if was_unhealthy(run, action_id):
            _wait_running(run, swap)
            return
        gate.wait_ready(run.session, swap.service, swap.old_id, gate.timeout_for(run.session, swap.service))


def was_unhealthy(run: ApplyRun, action_id: str) -> bool:
    """The old container was replaced because it was unhealthy (heal's recreate, apply's
    "unhealthy, spec unchanged" row): put back, it is as it was once it runs. Waiting for a
    health it did not have called a rollback that worked failed (exit 3, "docker start" it) (QA)."""
    action = run.plan.action(action_id)
    return action is not None and action.cause.startswith(UNHEALTHY_CAUSE)


def _wait_running(run: ApplyRun, swap: Swap) -> None:
    state = dockerio.inspect_container(run.session.client, swap.old_id).get("State") or {}
    if not state.get("Running"):
        raise ApplyError(f"{swap.canonical} did not start again ({state.get('Status')})", ref="apply.rollback-start")


def manual_steps(run: ApplyRun, swap: Swap) -> str:
    """What a person types to get the old container back, with every name spelt out."""
    lines = ["recover by hand:"]
    if swap.new_id:
        lines.append(f"  docker rm -f {swap.new_name}     # the new container (not verified)")
    for engine in swap.fresh.values():
        lines.append(f"  docker volume rm {engine}     # its fresh volume (holds no unique data)")
    if swap.old_id:
        if swap.renamed:
            lines.append(f"  docker rename {swap.previous_name} {swap.canonical}")
        lines.append(f"  docker start {swap.canonical}     # the old container, on its own data")
        for logical, engine in sorted(swap.old_volumes.items()):
            lines.append(f"  # its data: volume {engine} ({logical}), untouched by this apply")
    lines += _backup_lines(run, swap.service)
    lines.append(f"  # the journal of this apply: {run.journal.path}")
    return "\n".join(lines)


def _backup_lines(run: ApplyRun, service: str) -> list[str]:
    backup = run.backups.get(service)
    if backup is None:
        return []
    entry = (backup.document.get("services") or {}).get(service) or {}
    lines = [f"  # backup {backup.backup_id} taken before the change: {entry.get('local_path', '?')}"]
    if entry.get("s3_path"):
        lines.append(f"  #   and on S3: {entry['s3_path']}")
    lines.append(f"  # if the old data is damaged: reconcile restore {backup.backup_id} {service} --yes")
    return lines
