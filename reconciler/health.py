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
from reconciler.spec.normalise import network_name, proxy_name


class Level(IntEnum):
    HEALTHY = 0
    MINOR = 1
    CRITICAL = 2
    MISSING = 3


# "refused" is critical too: nothing can be checked or backed up while the server turns the
# spec's credentials down (heal reports it, and never restarts or recreates for it).
_PROBE_LEVEL = {"healthy": Level.HEALTHY, "degraded": Level.MINOR, "unhealthy": Level.CRITICAL,
                "unreachable": Level.CRITICAL, "refused": Level.CRITICAL}


PAUSED = "paused"


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
    if state.get("Paused"):  # "running" to the engine, but its processes are frozen: it answers nothing
        error = f"paused (docker pause): docker unpause {facts['container']}"
        return ServiceHealth(name, PAUSED, Level.CRITICAL, {**facts, "error": error})
    docker_health = (state.get("Health") or {}).get("Status")
    if docker_health:
        facts["docker_health"] = docker_health
    if streak := (state.get("Health") or {}).get("FailingStreak"):
        facts["failing_streak"] = streak
    result = probe(session, name, doc["Id"], timeout)
    facts |= dict(result.details)
    facts["latency_ms"] = round(result.latency_ms, 1)
    level = _PROBE_LEVEL.get(result.status.value, Level.CRITICAL)
    if docker_health == "unhealthy" and level is Level.HEALTHY:
        level = Level.MINOR
    found = ServiceHealth(name, result.status.value, level, facts)
    if container is None and session.spec.services[name].proxied:
        return with_proxy(session, name, found)
    return found


def with_proxy(session: Session, name: str, found: ServiceHealth) -> ServiceHealth:
    """A blue-green service is reached through its proxy, which publishes its host ports: a
    proxy that is gone, stopped, paused or cut off the service's networks leaves the service
    unreachable from outside however well its own container runs. The worse finding wins."""
    proxy = proxy_name(session.spec.project, name)
    doc = session.container_doc(name, proxy)
    state = (doc or {}).get("State") or {}
    joined = set(((doc or {}).get("NetworkSettings") or {}).get("Networks") or {})
    lacks = [n for n in (network_name(session.spec, n) for n in session.spec.services[name].networks)
             if n not in joined]
    if doc is None:
        status, level, error = "proxy-missing", Level.MISSING, f"no proxy container {proxy}"
    elif not state.get("Running") or state.get("Restarting") or state.get("Paused"):
        status, level = "proxy-stopped", Level.CRITICAL
        error = f"its proxy {proxy} is {state.get('Status')}: nothing serves its host ports"
    elif lacks:
        status, level = "proxy-detached", Level.CRITICAL
        error = f"its proxy {proxy} is not on {', '.join(lacks)}: it cannot reach {name}"
    else:
        return found
    details = {**found.details, "proxy": proxy, "proxy_state": state.get("Status") or "missing"}
    if level <= found.level:
        return replace(found, details=details)
    return ServiceHealth(name, status, level, {**details, "error": error})


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
    if not target.host and kind in (Kind.POSTGRES, Kind.REDIS, Kind.HTTP):
        # On no network it has no address: an empty host is PostgreSQL's local socket (the
        # host's own server, sent the spec's password) and "http://:8000" to the others (QA).
        return ProbeResult(ProbeStatus.UNREACHABLE, {"error": "it has no IP address: its container is on no network "
                                                              "(`reconcile diagnose` says which is missing)"}, 0.0)
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
    names = list(dict.fromkeys(services)) if services else sorted(session.spec.services)  # once each
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


REPLACING = "replacing"


def while_changing(results: list[ServiceHealth], holder: str | None, running: str) -> list[ServiceHealth]:
    """Results taken while an apply (``running``, held by ``holder``) changes the stack: a
    service with no container under its name is most likely the one being swapped (its old
    and new containers carry other names meanwhile), a minor finding (1), not "missing" (3),
    which paged the on-call person in the middle of every deploy (QA). Once the apply ends,
    a service it left without a container is "missing" again."""
    if holder is None:
        return results
    return [ServiceHealth(r.service, REPLACING, Level.MINOR,
                          {**r.details, "error": f"no container under its name while {running} changes the stack "
                                                 f"({holder}): check again once it has finished"})
            if r.level is Level.MISSING and r.status == "missing" else r for r in results]


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
    """Poll until the service is healthy or ``timeout`` passes; returns the last result.

    Returns at once, failing, when waiting longer cannot help: the container stopped, or
    Docker's own health check gave up on it (``docker_gave_up``)."""
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
        if result.status == "stopped" or docker_gave_up(result):
            return result
        time.sleep(interval)


def docker_gave_up(result: ServiceHealth) -> bool:
    """Docker's health check calls the container ``unhealthy`` after failing checks: its
    retries failed in a row after the start period (while it says ``starting``, failures do
    not count yet; a start or restart resets it to ``starting``). The failing streak tells it
    from the ``unhealthy`` Docker sets on ``docker pause`` (streak 0), which the first check
    after an unpause clears. The probe's details say why it fails."""
    return (result.level is not Level.HEALTHY and result.details.get("docker_health") == "unhealthy"
            and int(result.details.get("failing_streak") or 0) > 0)
