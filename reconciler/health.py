"""Deep health of services: the container's state first, then the kind's own probe.

Levels follow the exit-code contract of ``reconcile health``: 0 healthy, 1 minor (degraded,
fixable), 2 critical (stopped, unhealthy, unreachable: needs a restart or recreation),
3 containers missing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import IntEnum

from reconciler.backup import restoring
from reconciler.errors import EngineError, ReconcileError
from reconciler.session import Session
from reconciler.spec.models import Kind


class Level(IntEnum):
    HEALTHY = 0
    MINOR = 1
    CRITICAL = 2
    MISSING = 3


# "refused" is critical too: nothing can be checked or backed up while the server turns the
# spec's credentials down (heal reports it, and never restarts or recreates for it).
_PROBE_LEVEL = {"healthy": Level.HEALTHY, "degraded": Level.MINOR, "unhealthy": Level.CRITICAL,
                "unreachable": Level.CRITICAL, "refused": Level.CRITICAL}


@dataclass(frozen=True)
class ServiceHealth:
    service: str
    status: str
    level: Level
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"status": self.status, "details": self.details}


def check_service(session: Session, name: str, container: str | None = None,
                  timeout: float = 5.0) -> ServiceHealth:
    doc = session.container_doc(name, container)
    if doc is None:
        return ServiceHealth(name, "missing", Level.MISSING, {"error": "no container"})
    state = doc.get("State") or {}
    facts = {"container": doc.get("Name", "").lstrip("/"), "state": state.get("Status"),
             "restarts": doc.get("RestartCount", 0)}
    # the live container (not a candidate apply waits for) of a service whose in-place restore stopped
    if container is None and (record := restoring.interrupted(session.loaded.state_dir(), name)) is not None:
        return ServiceHealth(name, restoring.RULE, Level.CRITICAL, {
            **facts, "error": "a restore of it stopped halfway: its data is partial",
            "backup_id": record.get("backup_id"), "restore_started": record.get("started")})
    if not state.get("Running") or state.get("Restarting"):
        facts |= {"exit_code": state.get("ExitCode"), "oom_killed": state.get("OOMKilled", False)}
        return ServiceHealth(name, "stopped" if not state.get("Restarting") else "restarting",
                             Level.CRITICAL, facts)
    docker_health = (state.get("Health") or {}).get("Status")
    if docker_health:
        facts["docker_health"] = docker_health
    result = probe(session, name, doc["Id"], timeout)
    facts |= dict(result.details)
    facts["latency_ms"] = round(result.latency_ms, 1)
    level = _PROBE_LEVEL.get(result.status.value, Level.CRITICAL)
    if docker_health == "unhealthy" and level is Level.HEALTHY:
        level = Level.MINOR
    return ServiceHealth(name, result.status.value, level, facts)


def probe(session: Session, name: str, container: str, timeout: float):
    """The kind's probe; any service with an HTTP health check is probed over HTTP."""
    from reconciler.engines import ProbeResult, ProbeStatus, engine_for

    service = session.spec.services[name]
    try:
        target = session.target(name, container)
    except EngineError as exc:
        if exc.ref != "engine.file":
            raise
        # The password file (a *_FILE variable) cannot be read: this service cannot be
        # logged into, the others can still be checked.
        return ProbeResult(ProbeStatus.REFUSED, {"error": exc.message}, 0.0)
    kind = service.kind
    if service.health.http is not None and kind in (Kind.GENERIC, Kind.HTTP):
        kind = Kind.HTTP
        target = replace(target, port=service.health.http.port)
    return engine_for(kind, session.client).probe(target, timeout)


class EngineUnreachable(EngineError):
    """No service could be checked because the engine does not answer.

    Critical (2), so a monitor can tell it from minor issues (1); not 3, which says the
    engine answered and the containers are missing.
    """

    ref = "engine.unreachable"
    exit_code = int(Level.CRITICAL)


def check_all(session: Session, services: list[str] | None = None) -> list[ServiceHealth]:
    """Every service's health; an engine that cannot be reached is ``EngineUnreachable``.

    A name the spec does not have is a mistake (exit 1), not a missing container (3)."""
    names = services or sorted(session.spec.services)
    unknown = sorted(set(names) - set(session.spec.services))
    if unknown:
        raise ReconcileError(f"unknown service {', '.join(unknown)}", ref="health.unknown-service",
                             hint=f"services: {', '.join(sorted(session.spec.services))}")
    try:
        return [check_service(session, n) for n in names]
    except EngineError as exc:
        if exc.ref != "engine.unreachable":
            raise
        raise EngineUnreachable(f"{exc.message}: the services cannot be checked (critical)",
                                hint=exc.hint) from None


def report(results: list[ServiceHealth]) -> dict:
    """The seed's format: overall ``status``, per service ``status`` and ``details``, ``timestamp``."""
    worst = max((r.level for r in results), default=Level.HEALTHY)
    overall = {Level.HEALTHY: "healthy", Level.MINOR: "degraded", Level.CRITICAL: "critical",
               Level.MISSING: "missing"}[worst]
    return {"status": overall, "services": {r.service: r.as_dict() for r in results},
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z")}


def exit_code(results: list[ServiceHealth]) -> int:
    return int(max((r.level for r in results), default=Level.HEALTHY))


def wait_healthy(session: Session, name: str, container: str, *, timeout: float | None = None,
                 interval: float | None = None) -> ServiceHealth:
    """Poll until the service is healthy or ``timeout`` passes; returns the last result."""
    health = session.spec.services[name].health
    timeout = health.timeout if timeout is None else timeout
    interval = health.interval if interval is None else interval
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check_service(session, name, container, timeout=min(5.0, max(interval, 1.0)))
        except Exception as exc:  # noqa: BLE001 - a probe error while starting is "not yet"
            result = ServiceHealth(name, "unreachable", Level.CRITICAL, {"error": type(exc).__name__})
        if result.level is Level.HEALTHY or time.monotonic() >= deadline:
            return result
        if result.status == "stopped":
            return result
        time.sleep(interval)
