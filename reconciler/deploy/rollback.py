"""``reconcile rollback [SERVICE…]``: bring back the newest kept version, with no downtime.

For each service: start its newest kept container (``-kept-<t>``) → wait until ready →
promote the names → switch the proxy (HTTP services) → drain → stop the current one, which
becomes the kept one. The same steps as a blue-green deploy (``bluegreen``), so a second
rollback switches back again. Under the apply lock, with a journal (``reconcile history``
lists it) and the apply's exit codes: 0 done, 1 refused before any change, 2 failed and
undone, 3 undoing failed too.

The spec is not changed: after a rollback ``reconcile plan`` shows the service as changed
(its image differs from the spec's), and the next apply deploys the spec's version again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from reconciler import dockerio
from reconciler.apply import gate
from reconciler.apply.context import ApplyRun
from reconciler.apply.journal import Journal, new_apply_id
from reconciler.apply.lock import ApplyLock, waiting_notice
from reconciler.deploy import bluegreen, rules
from reconciler.errors import ApplyError, ReconcileError
from reconciler.observe.models import Observed, ObservedContainer
from reconciler.plan import leftovers
from reconciler.plan.actions import Plan
from reconciler.plan.display import short_id
from reconciler.session import Session
from reconciler.spec.normalise import config_hash, normalised_config


@dataclass(frozen=True)
class Target:
    """One service to roll back: the container serving now and the version it goes back to."""

    service: str
    current: ObservedContainer
    kept: ObservedContainer

    @property
    def action_id(self) -> str:
        return f"rollback:{self.service}"


@dataclass
class Result:
    exit_code: int
    summary: dict = field(default_factory=dict)


def targets(session: Session, observed: Observed, services: list[str]) -> list[Target]:
    """The services to roll back (all blue-green ones with a kept version when none given);
    a refusal names the first service that cannot be rolled back and why."""
    from reconciler.plan.planner import service_order

    spec = session.spec
    unknown = sorted(set(services) - set(spec.services))
    if unknown:
        raise ReconcileError(f"unknown service {', '.join(unknown)}", ref="rollback.unknown-service",
                             hint=f"services in the spec: {', '.join(sorted(spec.services))}")
    chosen = services or [n for n in spec.services if rules.blue_green(spec.services[n])
                          and rules.kept(observed, n)]
    if not chosen:
        raise ReconcileError("no service has a kept version to go back to", ref="rollback.nothing",
                             hint="a version is kept when a blue-green deploy (deploy.strategy: blue-green) "
                                  "replaces it: there is none before the second deploy")
    return [_target(session, observed, name) for name in service_order(spec, chosen)]


def not_rolled_back(session: Session, chosen: list[Target]) -> list[str]:
    """The app's other services, which a rollback of all leaves as they are: a service that
    keeps no older version (strategy recreate) stays on the one it runs (QA: the worker stayed
    on the new version, unsaid)."""
    spec, picked = session.spec, {t.service for t in chosen}
    return [f"{name}: not rolled back (strategy {spec.services[name].deploy.strategy.value} keeps no older "
            "version): it goes on running the version it runs now"
            for name in sorted(spec.services) if name not in picked and not spec.services[name].stateful
            and not rules.blue_green(spec.services[name])]


def _target(session: Session, observed: Observed, name: str) -> Target:
    service = session.spec.services[name]
    if not rules.blue_green(service):
        raise ReconcileError(f"{name} uses strategy {service.deploy.strategy.value}: it keeps no older version",
                             ref="rollback.not-blue-green", hint="only blue-green services can be rolled back")
    current = leftovers.live(observed, name)
    if current is None or not current.running or current.name != rules.live_name(session.loaded, name):
        raise ReconcileError(f"{name} has no running live container", ref="rollback.not-running",
                             hint="run `reconcile apply` first: a rollback replaces a running version")
    kept = rules.rollback_target(observed, name, current)
    if kept is None:
        raise ReconcileError(f"{name} has no kept version other than the one running",
                             ref="rollback.no-version",
                             hint="a version is kept when a blue-green deploy replaces it")
    return Target(name, current, kept)


def describe(session: Session, target: Target) -> str:
    """``api: lab-api (app:2, sha256:3598cd6c) → lab-api-kept-1a2b3c (app:1, sha256:4735c885)``."""
    return (f"{target.service}: {target.current.name} ({_version(session, target.service, target.current)}) → "
            f"{target.kept.name} ({_version(session, target.service, target.kept)})")


def _version(session: Session, service: str, container: ObservedContainer) -> str:
    """The image ref when the spec writes it literally (an interpolated one may be secret)."""
    ident = short_id(container.image_id)
    if ("services", service, "image") in session.loaded.display:
        return ident
    return f"{container.image_ref}, {ident}"


@dataclass
class UI:
    """How the run talks to its operator (the CLI gives text or JSON lines)."""

    emit: Callable[[dict], None]
    show: Callable[[list[str]], None] = lambda lines: None
    confirm: Callable[[str], bool] = lambda question: True


def rollback(session: Session, services: list[str], ui: UI, lock_wait: float = 0.0) -> Result:
    """Under the apply lock: observe → choose → show → confirm → roll back each in turn
    (stopping at the first failure, which is undone and raised)."""
    from reconciler.pipeline import observe_for

    rollback_id = new_apply_id()
    with ApplyLock(session.state_dir(), rollback_id, wait=lock_wait, project=session.spec.project,
                   on_wait=waiting_notice(ui.emit, lock_wait), command="rollback"):
        chosen = targets(session, observe_for(session.loaded, session.client), services)
        ui.show([describe(session, t) for t in chosen])
        for line in [] if services else not_rolled_back(session, chosen):
            ui.emit({"event": "notice", "message": line})
        if not ui.confirm("Roll back?"):
            raise ReconcileError("rollback cancelled: nothing was changed", ref="rollback.cancelled")
        plan = Plan(project=session.spec.project, actions=(), fingerprint="")
        run_ = ApplyRun(session, plan, Journal(session.state_dir(), rollback_id), ui.emit)
        _redact_their_secrets(run_, chosen)
        run_.record("start", project=session.spec.project, command="rollback",
                    actions=[t.action_id for t in chosen])
        try:
            for target in chosen:
                _one(run_, target)
        except (ReconcileError, KeyboardInterrupt) as exc:
            code = getattr(exc, "exit_code", 2)
            _finish(run_, "failed" if code < 3 else "critical", code, getattr(exc, "message", "interrupted"))
            raise
        code = 1 if run_.warnings else 0
        ahead = [t.service for t in chosen
                 if t.kept.spec_hash != config_hash(normalised_config(session.spec, t.service))]
        return Result(code, _finish(run_, "ok" if code == 0 else "warnings", code, spec_differs=ahead))


def _redact_their_secrets(run_: ApplyRun, chosen: list[Target]) -> None:
    """A kept version runs with the secrets it was made with, which a rotated spec no longer
    holds; its logs (shown when it fails to start) must not print them (QA)."""
    from reconciler.operate.redact import Redactor

    docs = [dockerio.inspect_container(run_.session.client, c.id) for t in chosen for c in (t.kept, t.current)]
    run_.redactor = Redactor.for_spec(run_.session.loaded, running=docs)  # in place of the spec's alone


def _one(run_: ApplyRun, target: Target) -> None:
    run_.record("action-begin", action=target.action_id, kind="rollback", resource=target.service,
                cause=describe(run_.session, target))
    began = time.monotonic()
    try:
        rollout = bluegreen.open_kept(run_, target.action_id, target.current, target.kept)
        bluegreen.finish(run_, target.action_id, rollout)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - every failure is undone alike
        message = "interrupted" if isinstance(exc, KeyboardInterrupt) else \
            getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        run_.record("action-end", action=target.action_id, status="failed", error=message,
                    seconds=round(time.monotonic() - began, 2))
        if isinstance(exc, gate.NotReady) and exc.logs:  # as apply shows them (QA: none were shown)
            run_.record("logs", action=target.action_id, lines=exc.logs.splitlines()[-gate.LOG_LINES:])
        opened = run_.rollouts.get(target.service)
        if opened is not None and not opened.finished:
            raise run_.redacted(_as_rollback(bluegreen.undo(run_, opened, target.action_id, exc))) from None
        if isinstance(exc, ApplyError) and exc.ref == "apply.interrupted":
            raise run_.redacted(exc) from None
        raise run_.redacted(ApplyError(f"{target.action_id} failed: {message}", ref="rollback.step",
                                       hint="see the error above")) from None
    run_.done.append(target.action_id)
    run_.record("action-end", action=target.action_id, status="ok",
                seconds=round(time.monotonic() - began, 2), container=target.kept.id,
                kept=rollout.kept_name)


def _as_rollback(error: ApplyError) -> ApplyError:
    """The undo's hint speaks of apply; here the command to run again is the rollback
    (QA: "run apply again" after a Ctrl-C'd rollback, which would change nothing)."""
    if error.ref == "apply.rolled-back":
        error.hint = error.hint.replace("run apply again", "run `reconcile rollback` again")
    return error


def _finish(run_: ApplyRun, result: str, code: int, error: str = "", spec_differs: list[str] = ()) -> dict:
    """``spec_differs``: services rolled back to a version their spec does not describe (the
    next apply deploys the spec's again); none when the spec was reverted first."""
    summary = {"apply_id": run_.apply_id, "command": "rollback", "result": result, "exit_code": code,
               "duration_s": round(time.monotonic() - run_.started, 2), "actions": list(run_.done),
               "warnings": list(run_.warnings), "journal": str(run_.journal.path),
               "spec_differs": list(spec_differs)}
    if error:
        summary["error"] = error
    try:
        run_.record("finish", **summary)
    finally:
        run_.journal.close()
    return summary
