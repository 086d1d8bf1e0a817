"""Health gates: a started container must pass its engine probe before apply moves on.

Timeouts: ``health.timeout`` (default 5 min) after a create or start; for a recreate,
``deploy.health_timeout`` when the spec sets it (the lab's api: 60 s), else ``health.timeout``.
Polling every ``health.interval`` (default 2 s). A container that exits, restarts again
and again (a crash loop under ``restart: unless-stopped``), or that its image's own Docker
health check calls ``unhealthy`` after its start period, fails at once instead of after the
whole timeout: waiting longer cannot help and the operator wants its logs now.
"""

from __future__ import annotations

import time

from reconciler import dockerio, health
from reconciler.errors import ApplyError
from reconciler.health import Level, ServiceHealth
from reconciler.session import Session
from reconciler.spec.models import Condition

CRASH_LOOP_RESTARTS = 2
LOG_LINES = 30


class NotReady(ApplyError):
    """A container did not become healthy; carries its last log lines."""

    ref = "apply.unhealthy"

    def __init__(self, message: str, *, logs: str = "", hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.logs = logs


def timeout_for(session: Session, service: str, recreate: bool = False) -> float:
    spec = session.spec.services[service]
    if recreate and "health_timeout" in spec.deploy.model_fields_set:
        return spec.deploy.health_timeout
    return spec.health.timeout


def wait_ready(session: Session, service: str, container: str, timeout: float) -> ServiceHealth:
    """Poll until healthy; ``NotReady`` (with the container's last log lines) otherwise."""
    interval = session.spec.services[service].health.interval
    deadline = time.monotonic() + timeout
    while True:
        result = _check(session, service, container, interval)
        if result.level is Level.HEALTHY or _lacks_only_databases(result):
            return result
        if _hopeless(result) or time.monotonic() >= deadline:
            raise NotReady(f"{service}: container {result.details.get('container') or container[:12]} "
                           f"is not healthy ({_describe(result)})",
                           logs=last_logs(session, container),
                           hint="its last log lines are shown above")
        time.sleep(interval)


def _check(session: Session, service: str, container: str, interval: float) -> ServiceHealth:
    try:
        return health.check_service(session, service, container, timeout=min(5.0, max(interval, 1.0)))
    except Exception as exc:  # noqa: BLE001 - a probe error while a server starts is "not yet"
        return ServiceHealth(service, "unreachable", Level.CRITICAL, {"error": type(exc).__name__})


def _lacks_only_databases(result: ServiceHealth) -> bool:
    """PostgreSQL took the spec's login and lacks only databases the spec names: a fresh
    server before the restore that creates them. It is ready; ``health`` still says refused
    while they are missing, and a restore's verify checks that every table came back."""
    return result.status == "refused" and bool(result.details.get("missing_databases"))


def _hopeless(result: ServiceHealth) -> bool:
    """Nothing more to wait for: gone, stopped, crash-looping, or called unhealthy by its own
    Docker health check past its start period (as Compose's ``service_healthy`` reads it)."""
    if result.level is Level.MISSING or result.status == "stopped" or health.docker_gave_up(result):
        return True
    return result.status == "restarting" and int(result.details.get("restarts") or 0) >= CRASH_LOOP_RESTARTS


def _describe(result: ServiceHealth) -> str:
    shown = {k: v for k, v in result.details.items() if k in ("exit_code", "restarts", "error", "url",
                                                                "status_code", "docker_health", "oom_killed")}
    extra = ", ".join(f"{k} {v}" for k, v in shown.items() if v not in (None, "", False))
    return result.status + (f": {extra}" if extra else "")


def last_logs(session: Session, container: str, lines: int = LOG_LINES) -> str:
    try:
        return dockerio.logs(session.client, container, lines)
    except Exception:  # noqa: BLE001 - logs are a courtesy; the failure is already known
        return ""


def check_dependencies(session: Session, service: str) -> None:
    """``depends_on`` conditions of ``service`` hold now (``healthy`` is waited for)."""
    for dependency, condition in sorted(session.spec.services[service].depends_on.items()):
        if condition is Condition.STARTED:
            doc = session.container_doc(dependency)
            if not doc or not (doc.get("State") or {}).get("Running"):
                raise ApplyError(f"{service} depends on {dependency} being started, and it is not",
                                 ref="apply.dependency",
                                 hint=f"check {dependency} with `reconcile health`; nothing of {service} was changed")
            continue
        doc = session.container_doc(dependency)
        if doc is None:
            raise ApplyError(f"{service} depends on {dependency}, which has no container",
                             ref="apply.dependency", hint="apply its profile first")
        try:
            wait_ready(session, dependency, doc["Id"], timeout_for(session, dependency))
        except NotReady as exc:
            raise ApplyError(f"{service} depends on {dependency} being healthy: {exc.message}",
                             ref="apply.dependency",
                             hint=f"nothing of {service} was changed; see `reconcile health`") from None
