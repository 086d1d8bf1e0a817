"""``reconcile heal``: diagnose, fix what is fixable, report the rest — and the same heal for
``reconcile apply``'s "infrastructure unhealthy, spec unchanged" row.

Findings are ``reconcile diagnose``'s issues, deep probes included (``health.check_service``
of each running service diagnose found nothing critical about). ``heal_rules`` picks one fix per
service; ``heal_actions`` carries it out with retries. A recreate is a plan: ``make_plan(…,
unhealthy={service: why})`` cut down to that service and run by apply's executor under the
apply lock, in a journal of its own, so a stateful service is backed up (and the backup
verified) before its container is replaced, and a failed replacement is rolled back.

``--json`` prints one document::

    {"timestamp": "2026-01-05T10:00:00Z", "project": "shop", "status": "ok|warning|critical",
     "exit_code": 0,
     "results": [{"service": "postgres", "issue": "container exited", "severity": "critical",
                  "rule": "container-exited", "action": "start", "attempts": 1,
                  "result": "fixed|failed|reported", "details": "started shop-postgres"}]}

``action`` is the fix (``start``, ``restart``, ``recreate``, ``recreate-network``, ``report``)
or an escalation (``restart → recreate``); ``attempts`` counts engine attempts (0 for a
report). Exit codes: 0 all fixed or nothing to do, 1 only non-critical issues remain, 2 a
critical issue remains. A critical issue left sends one ``critical_health`` notification.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from reconciler.operate import diagnose, heal_rules, runlog
from reconciler.operate.heal_actions import ROLLED_BACK, Healer, LeftToOperator, backoff_from
from reconciler.operate.heal_rules import Fix, FixKind, IssueResult, Result
from reconciler.operate.issues import Issue, Severity
from reconciler.session import Session
from reconciler.spec.normalise import container_name

Emit = Callable[[dict], None]
Say = Callable[[str, str], None]


@dataclass(frozen=True)
class HealReport:
    timestamp: str
    project: str
    results: tuple[IssueResult, ...]

    @property
    def exit_code(self) -> int:
        return heal_rules.exit_code(self.results)

    def to_dict(self) -> dict:
        return {"timestamp": self.timestamp, "project": self.project,
                "status": heal_rules.status(self.exit_code), "exit_code": self.exit_code,
                "results": [r.to_dict() for r in self.results]}


def run(session: Session, services: list[str] | None = None, *, say: Say,
        emit: Emit = lambda event: None, backoff: float | None = None, lock_wait: float = 0.0) -> HealReport:
    """One ``reconcile heal``: under the apply lock (heal changes the stack like apply does),
    with a ``heal`` run log holding every attempt and every apply event of a recreate."""
    from reconciler.apply.journal import new_apply_id
    from reconciler.apply.lock import ApplyLock, waiting_notice

    diagnose.check_services(session, services)
    lock = ApplyLock(session.state_dir(), new_apply_id(), wait=lock_wait, project=session.spec.project,
                     command="heal", on_wait=waiting_notice(lambda event: say("", event["message"]), lock_wait))
    with runlog.open_run(session, "heal") as log, lock:
        def tell(service: str, message: str) -> None:
            log.event("heal", service=service, message=message)
            say(service, message)

        def forward(event: dict) -> None:
            log.event(str(event.get("event", "event")), **{k: v for k, v in event.items() if k != "event"})
            emit(event)

        diagnosis, issues = findings(session, services)
        fixes = heal_rules.plan_fixes(issues, diagnosis.facts, _order(session, services), _depends(session))
        log.event("fixes", fixes=[{"service": f.service, "fix": f.kind.value,
                                   "rules": sorted(f.rules)} for f in fixes])
        healer = Healer(session, tell, partial(recreate_with_apply, session, forward),
                        backoff_from(session.environ) if backoff is None else backoff)
        results = tuple(r for fix in fixes for r in _carry_out(healer, fix))
        report = HealReport(diagnosis.facts.now, session.spec.project, results)
        log.event("result", status=heal_rules.status(report.exit_code), results=[r.to_dict() for r in results])
    notify(session, report, partial=bool(services))
    return report


def _order(session: Session, services: list[str] | None) -> list[str]:
    from reconciler.plan.planner import service_order

    return service_order(session.spec, services or sorted(session.spec.services))


def _depends(session: Session) -> dict[str, list[str]]:
    return {name: list(service.depends_on) for name, service in session.spec.services.items()}


def _carry_out(healer: Healer, fix: Fix) -> list[IssueResult]:
    if fix.kind is FixKind.REPORT:
        return heal_rules.reported(fix)
    outcome = healer.run(fix)
    return heal_rules.results_of(fix, outcome.result, outcome.action, outcome.attempts, outcome.details)


# -- findings (shared with apply) ------------------------------------------------------------

def findings(session: Session, services: list[str] | None = None, *, probes: dict | None = None,
             remember: bool = True) -> tuple[diagnose.Diagnosis, list[Issue]]:
    """Diagnose's issues with the deep probes (``reconcile diagnose`` reports the same):
    one issue for each running service whose probe fails and that diagnose found nothing
    critical about. ``probes`` ({service: ServiceHealth}) reuses results the caller already
    has (apply probes before it plans)."""
    diagnosis = diagnose.run(session, services, with_usage=False, remember=remember, deep=True,
                             probes=probes)
    return diagnosis, list(diagnosis.issues)


# -- recreate through apply ------------------------------------------------------------------

def recreate_with_apply(session: Session, emit: Emit, fix: Fix, reason: str,
                        stop_loop: Callable[[], None] = lambda: None) -> str:
    """Plan the service's recreate like apply does, keep only its part, and run it through
    apply's executor (the caller holds the apply lock): backup → recreate → verify, rollback
    on failure, all in a journal ``reconcile history`` lists.

    Never with apply's fallback (``apply.fallback``): a stateful server that crashes on start
    is backed up if it can be read, and recreated on a fresh volume from that backup; if it
    cannot be, putting its latest backup in place of its data would lose every write since,
    and the cause is as likely a bad command as a damaged data folder: that is left to a
    person (``LeftToOperator``), nothing having been removed."""
    from dataclasses import replace

    from reconciler.apply.runner import run_plan
    from reconciler.errors import ApplyError, CriticalError
    from reconciler.pipeline import observe_for
    from reconciler.plan.planner import make_plan

    stop_loop()
    observed = observe_for(session.loaded, session.client)
    full = make_plan(session.loaded, observed, (), unhealthy={fix.service: reason})
    plan = heal_rules.subplan(full, session.spec, [fix.service])
    fallback = any(action.fallback for action in plan.actions)
    plan = replace(plan, actions=tuple(replace(a, fallback=False) for a in plan.actions))
    try:
        outcome = run_plan(session, plan, emit, reason=f"heal {fix.service}: {reason}")
    except ApplyError as exc:  # before the recreate (its backup): not rolled back, nothing changed
        stateful = session.spec.services[fix.service].stateful
        if (fallback or stateful) and exc.ref != ROLLED_BACK and not isinstance(exc, CriticalError):
            raise LeftToOperator(
                f"it could not be backed up and recreated ({exc.message}): nothing was replaced, and heal never "
                "puts an older backup in place of live data", hint=f"read its logs (docker logs "
                f"{container_name(session.spec, fix.service)}); if its command or configuration is wrong, fix the "
                "spec and run `reconcile apply`; if its data is damaged, `reconcile apply` shows the recreate from "
                "the latest backup (writes since it are lost) for you to confirm") from None
        raise
    backups = [f"backup {b['backup_id']} ({b['file']})" for b in outcome.summary.get("backups") or []]
    done = ", ".join(a.partition(":")[0] for a in outcome.summary.get("actions") or [])
    text = f"apply {outcome.apply_id}: {done}"
    return text + (f"; taken first: {', '.join(backups)}" if backups else "")


# -- apply's use -------------------------------------------------------------------------------

@dataclass(frozen=True)
class InPlace:
    """What heal left for apply: services to recreate (with why), critical reports as
    ``(service, text)``, and whether any fix ran (then apply must plan again)."""

    recreate: dict[str, str]
    reports: list[tuple[str, str]]
    changed: bool


def heal_in_place(session: Session, probes: dict, say: Say) -> InPlace:
    """Apply's "unhealthy, spec unchanged" row: the same findings, fixes and retries as
    ``reconcile heal`` for the services apply found critical; what needs a new container is
    returned for apply's own plan (one plan, one confirmation, one journal)."""
    names = sorted(probes)
    diagnosis, issues = findings(session, names, probes=probes, remember=False)
    fixes = heal_rules.plan_fixes([i for i in issues if i.service in probes], diagnosis.facts,
                                  _order(session, names), _depends(session))
    healer = Healer(session, say, None, backoff_from(session.environ))
    recreate: dict[str, str] = {}
    reports: list[tuple[str, str]] = []
    for fix in fixes:
        if fix.kind is FixKind.REPORT:
            reports += [(i.service, f"{i.service}: {i.issue} ({i.details}): not fixed by apply; {fix.note}")
                        for i in fix.issues if i.severity is Severity.CRITICAL]
            continue
        outcome = healer.run(fix)
        if outcome.result is Result.FAILED:
            recreate[fix.service] = outcome.details if outcome.pending else (
                f"{outcome.details}; {outcome.action} did not help")
    return InPlace(recreate, reports, any(f.kind is not FixKind.REPORT for f in fixes))


# -- telling people ------------------------------------------------------------------------------

def notify(session: Session, report: HealReport, partial: bool) -> None:
    """A critical issue heal could not fix → one ``critical_health`` message (again only when
    what remains changes); a full run with nothing critical left clears it."""
    from reconciler.operate.notify import Event, Notification, send_if_new

    left = [r for r in report.results if r.result is not Result.FIXED and r.severity is Severity.CRITICAL]
    note = None
    if left:
        names = sorted({r.service for r in left})
        note = Notification(Event.CRITICAL_HEALTH, report.project, "critical",
                            f"heal: {len(left)} critical issue(s) remain: {', '.join(names)}",
                            tuple(f"{r.service}: {r.issue} — {r.result.value}: {r.details}" for r in left))
    if note is not None or not partial:
        send_if_new(session.loaded.state_dir(), "heal", note)


def summary_lines(report: HealReport) -> list[str]:
    """The human report: one line per issue, then a count."""
    lines = []
    for r in report.results:
        mark = {Result.FIXED: "fixed   ", Result.FAILED: "FAILED  ", Result.REPORTED: "reported"}[r.result]
        tries = f", {r.attempts} attempt{'s' if r.attempts != 1 else ''}" if r.attempts else ""
        lines.append(f"{mark} {r.service}: {r.issue} [{r.action}{tries}]: {r.details}")
    counts = {k: sum(1 for r in report.results if r.result is k) for k in Result}
    if not report.results:
        lines.append("Nothing to heal: no issues found.")
    else:
        lines.append(f"Heal: {counts[Result.FIXED]} fixed, {counts[Result.FAILED]} failed, "
                     f"{counts[Result.REPORTED]} reported; status {heal_rules.status(report.exit_code)}.")
    return lines
