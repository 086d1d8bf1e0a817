"""The decision matrix's "unhealthy, spec unchanged" row, through the same heal as
``reconcile heal``.

``diagnose`` is read-only: it probes the in-scope services whose spec is unchanged (running,
paused, restarting in a loop, or stopped with only a start planned). ``heal_unhealthy`` unpauses
the paused ones, then hands the critical ones left to the shared
heal (``reconciler.operate.heal``): the same findings, the same fix per issue (restart once,
start, reconnect to a recreated network…), the same retries, each attempt journaled. What it cannot
fix in place goes back to the planner (``make_plan(..., unhealthy=…)``), which plans backup
→ recreate → verify for it like any other change. Issues no recreate can fix (a port held
by another process, an OOM kill, a configuration error) become warnings, not a futile
recreate. A degraded (minor) service is only a warning: recreating a working database
because it is slow would be the wrong fix. Afterwards the runner drops from the plan the
starts and networks heal already did (``without_done``), or plans again with ``unhealthy=``.
"""

from __future__ import annotations

from dataclasses import replace

from reconciler import dockerio
from reconciler.backup import restoring
from reconciler.errors import ReconcileError
from reconciler.health import PAUSED, Level, ServiceHealth, check_service
from reconciler.observe.models import Observed, Role, State
from reconciler.plan import leftovers
from reconciler.plan.actions import ActionKind, Plan
from reconciler.session import Session
from reconciler.spec.normalise import container_name


def candidates(session: Session, plan: Plan, observed: Observed) -> list[str]:
    """In-scope services whose spec is unchanged: the live container runs (or restarts in a
    loop) and has no action, or is stopped and the plan would only start it. An in-place
    ``update`` (restart policy, memory limit) does not count: it leaves the health as it is.
    Nor is a service whose dependency (``depends_on``, however deep) the plan creates,
    recreates or starts: an API is unhealthy while its database is missing, and restarting
    it first (then waiting out its health timeout) fixes nothing the plan does not."""
    planned: dict[str, list[ActionKind]] = {}
    for action in plan.actions:
        if action.kind is not ActionKind.UPDATE:
            planned.setdefault(action.resource, []).append(action.kind)
    changing = {a.resource for a in plan.actions if a.kind in _BRINGS_UP}
    scope = [n for n, s in sorted(session.spec.services.items())
             if (not plan.profiles or s.profile in plan.profiles)
             and not _depends_on_any(session.spec, n, changing)]
    out = []
    for name in scope:
        live = leftovers.live(observed, name)
        if live is None or live.role is not Role.CURRENT:
            continue
        kinds = planned.get(name, [])
        if (not kinds and live.state in _UP) or kinds == [ActionKind.START]:
            out.append(name)
    return out


_BRINGS_UP = frozenset({ActionKind.CREATE, ActionKind.RECREATE, ActionKind.START})
_UP = frozenset({State.RUNNING, State.RESTARTING, State.PAUSED})
"""Live states the plan leaves alone, so heal must look: a paused container (``docker pause``)
is "up" to the engine, but answers nothing until it is unpaused."""


def _depends_on_any(spec, service: str, changing: set[str]) -> bool:
    seen, todo = set(), list(spec.services[service].depends_on)
    while todo:
        dependency = todo.pop()
        if dependency in changing:
            return True
        if dependency not in seen and dependency in spec.services:
            seen.add(dependency)
            todo.extend(spec.services[dependency].depends_on)
    return False


def diagnose(session: Session, services: list[str]) -> dict[str, ServiceHealth]:
    """Services that are not healthy, with what their probe said (minor ones included)."""
    found = {}
    for name in services:
        result = _safe_check(session, name)
        if result.level is not Level.HEALTHY:
            found[name] = result
    return found


def heal_unhealthy(run, sick: dict[str, ServiceHealth]):
    """Critical services through the shared heal; returns its ``InPlace`` (what to recreate,
    whether anything was changed). A report (a port held by another process, an OOM kill…)
    is a warning, except for a stopped service the plan starts anyway."""
    from reconciler.operate.heal import InPlace, heal_in_place

    for name, result in sorted(sick.items()):
        if result.level is Level.MINOR:
            run.record("warning", message=f"{name} is degraded ({describe(result)}); not changed")
    critical = {n: r for n, r in sick.items() if r.level >= Level.CRITICAL}
    unpaused = unpause(run, sorted(n for n, r in critical.items() if r.status == PAUSED))
    critical = {n: r for n, r in critical.items() if n not in unpaused}
    if not critical:
        return InPlace({}, [], bool(unpaused))
    healed = heal_in_place(run.session, critical,
                           lambda service, message: run.record("heal", service=service, message=message))
    healed = replace(healed, changed=healed.changed or bool(unpaused))
    starting = {a.resource for a in run.plan.actions if a.kind is ActionKind.START}
    # a service whose in-place restore stopped halfway is not started on what it left
    partial = {name for name in starting if restoring.interrupted(run.session.loaded.state_dir(), name)}
    if partial:
        run.plan = replace(run.plan, actions=tuple(a for a in run.plan.actions
                                                   if not (a.kind is ActionKind.START and a.resource in partial)))
    for service, report in healed.reports:
        if service not in starting or service in partial:
            run.warn(report)
    return healed


def unpause(run, names: list[str]) -> set[str]:
    """Unpause paused services (``docker pause``) and wait until they are healthy: the gentlest
    fix, nothing restarts and what they hold in memory is kept. Returns the ones healed; one
    that stays unhealthy goes on to the shared heal (restart once, then recreate)."""
    from reconciler.apply import gate

    session, healed = run.session, set()
    for name in names:
        container = container_name(session.spec, name)
        run.record("heal", service=name, message=f"{name} is paused: unpausing {container}")
        try:
            dockerio.unpause(session.client, container)
            gate.wait_ready(session, name, container, gate.timeout_for(session, name))
        except ReconcileError as exc:
            run.record("heal", service=name, message=f"{name}: unpausing did not help: {exc.message}")
            continue
        run.record("heal", service=name, message=f"{name} is healthy again: unpaused {container}")
        healed.add(name)
    return healed


def without_done(plan: Plan, observed: Observed, spec) -> Plan:
    """The plan minus the starts and networks heal already did (see ``heal_rules``)."""
    from reconciler.operate.heal_rules import without_done as settled

    return settled(plan, observed, spec)


def describe(result: ServiceHealth) -> str:
    details = {k: v for k, v in result.details.items() if k in ("error", "docker_health", "state")}
    return result.status + "".join(f", {k} {v}" for k, v in details.items() if v)


def _safe_check(session: Session, name: str) -> ServiceHealth:
    try:
        return check_service(session, name)
    except Exception as exc:  # noqa: BLE001 - a probe that cannot run is a finding, not a crash
        return ServiceHealth(name, "unreachable", Level.CRITICAL, {"error": type(exc).__name__})
