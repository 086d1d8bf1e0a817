"""One ``reconcile apply`` from start to end: lock → plan (or load a saved one) → diagnose →
confirm → journal → heal → execute → summary.

The planning is the same pure ``make_plan`` as ``reconcile plan``; healing (the same heal
as ``reconcile heal``) only adds the services it could not fix in place, re-planned with
``unhealthy=…``. ``run_plan`` runs a plan made elsewhere (heal's recreates). Exit codes
follow DESIGN.md: 0 done; 1 done with warnings, or refused before anything changed (stale
plan, lock busy, not confirmed, a plan with blocking issues); 2 failed and rolled back; 3
rollback failed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.apply import executor, heal
from reconciler.apply.context import ApplyRun
from reconciler.apply.journal import Journal, new_apply_id
from reconciler.apply.lock import ApplyLock, waiting_notice
from reconciler.errors import PlanError, ReconcileError
from reconciler.health import Level
from reconciler.observe.models import Observed
from reconciler.plan import safety
from reconciler.plan.actions import ActionKind, Plan
from reconciler.session import Session
from reconciler.spec.load import load_spec


@dataclass(frozen=True)
class Options:
    spec_file: Path
    profiles: tuple[str, ...] = ()
    saved_plan: Path | None = None
    auto_approve: bool = False
    lock_wait: float = 0.0


@dataclass
class UI:
    """How the run talks to its operator (the CLI gives text/spinner or JSON lines)."""

    emit: Callable[[dict], None]
    show_plan: Callable[[Plan, dict], None] = lambda plan, sick: None
    confirm: Callable[[str], bool] = lambda question: True


@dataclass
class Outcome:
    exit_code: int
    plan: Plan
    apply_id: str | None = None
    summary: dict = field(default_factory=dict)


def apply(options: Options, ui: UI, session: Session | None = None) -> Outcome:
    """Converge the stack; ``session`` is the caller's when it already loaded the spec."""
    session = session or Session(load_spec(options.spec_file))
    apply_id = new_apply_id()
    with ApplyLock(session.state_dir(), apply_id, wait=options.lock_wait, project=session.spec.project,
                   on_wait=waiting_notice(ui.emit, options.lock_wait)) as lock:
        if lock.took_over is not None:
            ui.emit({"event": "notice", "message": "took over the lock of an apply that is gone "
                     f"({lock.took_over.describe()}); this apply will converge what it left"})
        with _unchanged_if_stopped():  # the slow reads before any change (a cancelled CI job lands here)
            plan, observed = _initial_plan(session, options)
            safety.check_not_blocked(plan)  # a name taken by a container not ours: refused, nothing done
            sick = heal.diagnose(session, heal.candidates(session, plan, observed))
        critical = {n: r for n, r in sick.items() if r.level >= Level.CRITICAL}
        if plan.empty and not critical:
            for name, result in sorted(sick.items()):
                ui.emit({"event": "warning", "message": f"{name} is degraded ({heal.describe(result)})"})
            ui.emit({"event": "no-changes", "message": "No changes."})
            return Outcome(0, plan)
        # apply heals only what is critical (a stopped one the plan starts); the rest is said
        ui.show_plan(plan, {n: r for n, r in critical.items() if r.status != "stopped"})
        for name, result in sorted(sick.items()):
            if name not in critical:
                ui.emit({"event": "warning", "message": f"{name} is degraded ({heal.describe(result)})"})
        if options.saved_plan is None and not options.auto_approve and not ui.confirm("Apply this plan?"):
            raise ReconcileError("apply cancelled: nothing was changed", ref="apply.cancelled")
        return _run(session, options, ui, Journal(session.state_dir(), apply_id), plan, critical)


@contextmanager
def _unchanged_if_stopped() -> Iterator[None]:
    """Ctrl-C or SIGTERM while apply only reads (plans, diagnoses): the exit 130 says nothing
    was changed (README: an interrupted command says what it left), as the read-only ones do."""
    try:
        yield
    except KeyboardInterrupt as stop:
        stop.add_note("nothing was changed")
        raise


def _initial_plan(session: Session, options: Options) -> tuple[Plan, Observed]:
    from reconciler.pipeline import observe_for
    from reconciler.plan.planner import make_plan

    _check_profiles(session, options.profiles)
    observed = observe_for(session.loaded, session.client)
    if options.saved_plan is None:
        return make_plan(session.loaded, observed, options.profiles), observed
    plan = load_saved(options.saved_plan, session.spec.project)
    fresh = make_plan(session.loaded, observed, plan.profiles)
    same_engine(plan, observed, options.saved_plan)  # the spec hash is keyed by the engine
    _same_spec(plan, fresh, options.saved_plan)  # first: the spec names images, which the engine state includes
    if plan.fingerprint != observed.fingerprint():
        raise PlanError("plan is stale: run plan again", ref="plan.stale",
                        hint=f"the engine changed since {options.saved_plan} was made; "
                             "`reconcile plan --out FILE` makes a new one")
    return as_reviewed(plan, fresh, options.saved_plan), observed


def same_engine(saved: Plan, observed: Observed, path: Path) -> None:
    """A plan saved on another engine (another DOCKER_HOST) is refused as such; its spec hash,
    keyed by the engine, differs too, and "the spec changed" sent people diffing a spec that had
    not (QA). Plans saved before the tag was written are judged by the other checks alone."""
    from reconciler.plan.planner import engine_tag

    made_on = saved.meta.get("engine") if isinstance(saved.meta, dict) else None
    if made_on and made_on != engine_tag(observed):
        raise PlanError(f"{path} was made on another Docker engine than the one this apply reaches",
                        ref="plan.other-engine",
                        hint="apply it with the DOCKER_HOST it was planned on, or make and review a plan on "
                             "this engine: `reconcile plan --out FILE`")


def _same_spec(saved: Plan, fresh: Plan, path: Path) -> None:
    if not saved.spec_hash:  # "the spec changed" of a spec that had not (QA)
        raise PlanError(f"{path} carries no spec hash: it was made by an older reconcile, or edited",
                        ref="plan.tampered", hint="make a new plan with `reconcile plan --out FILE`")
    if fresh.spec_hash != saved.spec_hash:
        raise PlanError(f"the spec changed since {path} was made: it is not the reviewed plan",
                        ref="plan.spec-changed",
                        hint="its file, an env_file it reads, or a value its ${env:…} / ${file:…} references "
                             "resolve to, differs; "
                             "make and review a new plan: `reconcile plan --out FILE`, then apply that file")


def as_reviewed(saved: Plan, fresh: Plan, path: Path) -> Plan:
    """What apply runs for a saved plan: the plan reconcile makes now from the spec and the
    engine, and only when it is exactly the one in the file, which is what was reviewed.

    The file alone is never trusted: its flags (stateful, protected, container ids) are what
    the safety rules read, so an edited file could remove a protected database without a
    backup, or another project's container; and the spec is what containers are built from,
    so an edit after the review would deploy what nobody saw.
    """
    _same_spec(saved, fresh, path)
    if [a.to_dict() for a in fresh.actions] != [a.to_dict() for a in saved.actions]:
        raise PlanError(f"{path} is not the plan this spec and engine give: the file was edited, "
                        "or made by another version of reconcile", ref="plan.tampered",
                        hint="make a new plan with `reconcile plan --out FILE`; never edit saved plans")
    return fresh


def _check_profiles(session: Session, profiles: tuple[str, ...]) -> None:
    known = {s.profile for s in session.spec.services.values()}
    unknown = sorted(set(profiles) - known)
    if unknown:
        from reconciler.errors import SpecError

        raise SpecError(f"unknown profile {', '.join(unknown)}", ref="spec.profile",
                        hint=f"profiles in {session.loaded.file}: {', '.join(sorted(known))}")


def load_saved(path: Path, project: str) -> Plan:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("actions"), list):
            raise ValueError("not a plan (a JSON object with actions)")
        plan = Plan.from_dict(data)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PlanError(f"cannot read saved plan {path}: {exc}", ref="plan.unreadable",
                        hint="make one with `reconcile plan --out FILE`") from None
    if plan.project != project:
        raise PlanError(f"saved plan {path} is for project {plan.project}, not {project}",
                        ref="plan.project", hint="pass the spec the plan was made from with -f")
    safety.check(plan)
    return plan


def _run(session: Session, options: Options, ui: UI, journal: Journal, plan: Plan,
         critical: dict) -> Outcome:
    run = ApplyRun(session, plan, journal, ui.emit)
    run.record("start", project=session.spec.project, fingerprint=plan.fingerprint,
               profiles=list(plan.profiles), saved_plan=str(options.saved_plan or ""),
               actions=[a.id for a in plan.actions])
    return _execute(run, (lambda: _heal(run, options, ui, critical)) if critical else None)


def run_plan(session: Session, plan: Plan, emit: Callable[[dict], None], *, reason: str) -> Outcome:
    """Execute a plan made elsewhere, by a caller that holds the apply lock: ``reconcile heal``
    recreates a service through the same journal, safety checks, executor and rollback as
    apply, one journal per plan (so ``reconcile history`` lists it). Raises like apply."""
    run = ApplyRun(session, plan, Journal(session.state_dir(), new_apply_id()), emit)
    run.record("start", project=session.spec.project, fingerprint=plan.fingerprint,
               profiles=list(plan.profiles), saved_plan="", reason=reason,
               actions=[a.id for a in plan.actions])
    return _execute(run)


def _execute(run: ApplyRun, prepare: Callable[[], None] | None = None) -> Outcome:
    try:
        return _execute_held(run, prepare)
    finally:  # this apply's backups: no retention deleted them while it restored and verified them
        for backup in run.backups.values():
            backup.release()


def _execute_held(run: ApplyRun, prepare: Callable[[], None] | None) -> Outcome:
    try:
        if prepare is not None:
            prepare()
        executor.execute(run)
        _warn_empty_data(run)
    except (ReconcileError, KeyboardInterrupt) as exc:
        if isinstance(exc, ReconcileError):
            run.redacted(exc)  # heal's and the steps' errors quote the engine and containers
        code = getattr(exc, "exit_code", 2)
        _finish(run, "failed" if code < 3 else "critical", code, error=getattr(exc, "message", "interrupted"))
        raise
    except BaseException as exc:
        _finish(run, "failed", 2, error=f"{type(exc).__name__}: {exc}")
        raise
    code = 1 if run.warnings else 0
    summary = _finish(run, "ok" if code == 0 else "warnings", code)
    return Outcome(code, run.plan, run.apply_id, summary)


def _warn_empty_data(run: ApplyRun) -> None:
    """A stateful service this apply started on a data volume it had to create (the old one was
    removed by hand) runs empty. If a backup of it exists, that is data to put back, which
    only a person can decide (it may be a new service that reuses a name): a warning (exit 1)
    names the newest backup and the restore to run, so it does not pass as a clean apply."""
    from reconciler.backup import metadata

    plan, spec = run.plan, run.session.spec
    made = {a.resource for a in plan.actions if a.kind is ActionKind.CREATE_VOLUME and a.id in run.done}
    started = [a.resource for a in plan.actions if a.kind is ActionKind.CREATE and a.id in run.done
               and spec.services[a.resource].stateful
               and any(m.source in made for m in spec.services[a.resource].volumes if not m.is_host_path)]
    if not started:
        return
    try:
        docs = metadata.load_all(run.session.local, project=spec.project)
    except ReconcileError:
        return
    for service in started:
        newest = [d for d in docs if service in d["services"] and d.get("verified")]
        if newest:
            run.warn(f"{service} was started on a new, empty data volume, and backups of it exist (newest "
                     f"{newest[-1]['backup_id']}): if its data was lost, `reconcile restore latest {service} --yes` "
                     "puts it back")


def _heal(run: ApplyRun, options: Options, ui: UI, critical: dict) -> None:
    """The shared heal first (``reconcile heal``'s fixes and retries); what it cannot fix in
    place is re-planned as a recreate (backup → recreate → restore → verify)."""
    from reconciler.pipeline import observe_for
    from reconciler.plan.planner import make_plan

    healed = heal.heal_unhealthy(run, critical)
    still = healed.recreate
    if not still and not healed.changed:
        return
    session = run.session
    observed = observe_for(session.loaded, session.client)
    settled = _done_by_heal(run, observed)
    if not still:  # fixed in place: what heal started or reconnected is not done twice
        run.plan = settled
        run.record("plan-settled", reason="heal fixed services in place", actions=[a.id for a in run.plan.actions])
        return
    if options.saved_plan is not None:
        raise PlanError(f"{', '.join(sorted(still))} stayed unhealthy after a restart, and recreating "
                        f"{'it' if len(still) == 1 else 'them'} is not in the reviewed plan "
                        f"{options.saved_plan}: nothing else was changed", ref="plan.needs-recreate",
                        hint="`reconcile plan --out FILE` now plans the recreate (backup first) for review")
    plan = make_plan(session.loaded, observed, run.plan.profiles or options.profiles, unhealthy=still)
    run.plan = plan
    run.record("replan", reason="not fixed in place by heal", services=sorted(still),
               actions=[a.id for a in plan.actions])
    if options.saved_plan is None and not options.auto_approve:
        ui.show_plan(plan, {})
        if not ui.confirm("Recreate the services that stay unhealthy?"):
            raise ReconcileError("apply stopped before recreating unhealthy services", ref="apply.cancelled",
                                 hint="they were restarted once; nothing else was changed")


def _done_by_heal(run: ApplyRun, observed: Observed) -> Plan:
    """The plan minus the starts and networks heal did in place, which are done: an ``ok``
    ``action-end`` (``by: heal``) each, so the summary, the journal and ``history`` count every
    action of the plan that was carried out (QA: "4 action(s) done" of a plan of 5, the fifth a
    start heal did first, read as a step skipped)."""
    settled = heal.without_done(run.plan, observed, run.session.spec)
    left = {a.id for a in settled.actions}
    for action in run.plan.actions:
        if action.id not in left:
            run.done.append(action.id)
            run.record("action-end", action=action.id, status="ok", seconds=0, by="heal")
    return settled


def _finish(run: ApplyRun, result: str, code: int, error: str = "") -> dict:
    summary = {
        "apply_id": run.apply_id, "result": result, "exit_code": code,
        "duration_s": round(time.monotonic() - run.started, 2), "actions": list(run.done),
        "backups": [_backup_line(s, b) for s, b in run.backups.items()],
        "warnings": list(run.warnings), "unused_volumes": _unused_volumes(run),
        "journal": str(run.journal.path),
    }
    if error:
        summary["error"] = error
    try:
        run.record("finish", **summary)
    finally:
        run.journal.close()
    return summary


def _backup_line(service: str, backup) -> dict:
    entry = (backup.document.get("services") or {}).get(service) or {}
    return {"service": service, "backup_id": backup.backup_id, "file": entry.get("local_path"),
            "s3": backup.s3_status}


def _unused_volumes(run: ApplyRun) -> list[str]:
    """Project volumes the summary may call removable by hand: generations another generation
    of the same volume has replaced (an upgrade's old data), volumes the spec no longer
    declares, and what this run set aside. Never deleted automatically.

    A declared volume no container mounts at all is NOT one of them: it is the live data of a
    service whose container is missing (removed by hand, or outside the applied profiles), and
    "remove by hand" would have told the operator to delete it.
    """
    from reconciler.pipeline import observe_for
    from reconciler.spec.normalise import volume_of

    try:
        observed = observe_for(run.session.loaded, run.session.client)
    except ReconcileError:
        return sorted(set(run.kept_volumes))
    project, declared = run.session.spec.project, set(run.session.spec.volumes)
    mounted = {m.source for c in observed.containers for m in c.mounts if m.type == "volume"}
    in_use = {volume_of(name, project) for name in mounted}
    unused = {v.name for v in observed.volumes if v.name not in mounted
              and (volume_of(v.name, project) not in declared or volume_of(v.name, project) in in_use)}
    return sorted(unused | set(run.kept_volumes))
