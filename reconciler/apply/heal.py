"""The decision matrix's "unhealthy, spec unchanged" row: diagnose, restart once, then plan.

``diagnose`` is read-only: it probes the in-scope services that are running and have no
action in the plan. ``restart_unhealthy`` restarts each critical one once and waits; what is
still unhealthy is handed back to the planner (``make_plan(..., unhealthy=…)``), which plans
backup → recreate → verify for it like any other change. A degraded (minor) service is only
a warning: recreating a working database because it is slow would be the wrong fix.
Stopped services are not handled here: the plan already starts them.
"""

from __future__ import annotations

from reconciler import dockerio
from reconciler.apply import gate
from reconciler.health import Level, ServiceHealth, check_service
from reconciler.observe.models import Observed, State
from reconciler.plan import leftovers
from reconciler.plan.actions import Plan
from reconciler.session import Session


def candidates(session: Session, plan: Plan, observed: Observed) -> list[str]:
    """In-scope services whose live container runs under its canonical name and has no action."""
    touched = {a.resource for a in plan.actions}
    scope = [n for n, s in sorted(session.spec.services.items())
             if not plan.profiles or s.profile in plan.profiles]
    out = []
    for name in scope:
        live = leftovers.live(observed, name)
        if name not in touched and live is not None and live.state is State.RUNNING:
            out.append(name)
    return out


def diagnose(session: Session, services: list[str]) -> dict[str, ServiceHealth]:
    """Services that are not healthy, with what their probe said (minor ones included)."""
    found = {}
    for name in services:
        result = _safe_check(session, name)
        if result.level is not Level.HEALTHY:
            found[name] = result
    return found


def restart_unhealthy(session: Session, sick: dict[str, ServiceHealth], record) -> dict[str, str]:
    """Restart each critical service once and wait; ``{service: details}`` of those still sick."""
    still = {}
    for name, result in sorted(sick.items()):
        if result.level is Level.MINOR:
            record("warning", message=f"{name} is degraded ({describe(result)}); not changed")
            continue
        grace = session.spec.services[name].deploy.stop_grace
        record("heal", service=name, message=f"{name} is unhealthy ({describe(result)}): restarting it once")
        try:
            dockerio.restart(session.client, name_of(session, name), grace)
            gate.wait_ready(session, name, name_of(session, name), gate.timeout_for(session, name))
        except Exception as exc:  # noqa: BLE001 - anything short of healthy means recreate
            still[name] = getattr(exc, "message", None) or describe(result)
            record("heal", service=name, message=f"{name} is still unhealthy: it will be recreated")
            continue
        record("heal", service=name, message=f"{name} is healthy again after a restart")
    return still


def name_of(session: Session, service: str) -> str:
    from reconciler.spec.normalise import container_name

    return container_name(session.spec, service)


def describe(result: ServiceHealth) -> str:
    details = {k: v for k, v in result.details.items() if k in ("error", "docker_health", "state")}
    return result.status + "".join(f", {k} {v}" for k, v in details.items() if v)


def _safe_check(session: Session, name: str) -> ServiceHealth:
    try:
        return check_service(session, name)
    except Exception as exc:  # noqa: BLE001 - a probe that cannot run is a finding, not a crash
        return ServiceHealth(name, "unreachable", Level.CRITICAL, {"error": type(exc).__name__})
