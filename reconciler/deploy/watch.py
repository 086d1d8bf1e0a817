"""Checks of a blue-green deploy's new container around the traffic switch (QA).

* ``ports_answer`` — before traffic moves: every container port the proxy forwards to must
  accept connections (a health check on another port says nothing about them).
* ``drain`` / ``still_serving`` — while the old container drains and right before it stops:
  the new one must still run, not have restarted since it was ready, and pass its health
  check; otherwise the rollout is undone while the old one still runs.
"""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING

from reconciler import dockerio, health
from reconciler.apply import gate
from reconciler.apply.context import ApplyRun
from reconciler.engines.base import container_ip

if TYPE_CHECKING:
    from reconciler.deploy.bluegreen import Rollout

PORT_WAIT = 5.0  # seconds a healthy new container has to open the ports the proxy forwards to


def ports_answer(run: ApplyRun, action_id: str, service: str, doc: dict, candidate: bool = True) -> None:
    """The proxy forwards each of the spec's container ports to the same port of the
    container ``doc``: each must accept connections before traffic moves there. Its health
    check may use another port (QA: ``ports: …:9000`` for an app listening on 8000 passed,
    exit 0, and the proxy answered 502 from then on)."""
    ports = sorted({p.container for p in run.session.spec.services[service].ports if p.protocol == "tcp"})
    if not ports:
        return
    name = doc.get("Name", "").lstrip("/")
    run.step(action_id, f"check that {name} accepts connections on port {', '.join(map(str, ports))} "
             "(the proxy forwards there)", container=doc["Id"])
    ip, deadline = container_ip(doc), time.monotonic() + PORT_WAIT
    while closed := [p for p in ports if not _accepts(ip, p)]:
        if time.monotonic() >= deadline:
            raise gate.NotReady(f"{service}: {name} does not accept connections on port "
                                f"{', '.join(map(str, closed))}, where the proxy would send its traffic",
                                logs=gate.last_logs(run.session, doc["Id"]) if candidate else "",
                                hint="the container port in the service's ports: must be one the app listens on; "
                                     "traffic was not moved")
        time.sleep(0.2)


def _accepts(ip: str, port: int) -> bool:
    try:
        socket.create_connection((ip, port), timeout=1.0).close()
    except OSError:
        return False
    return True


def drain(run: ApplyRun, rollout: Rollout, seconds: float) -> None:
    """Sleep ``seconds``, watching the new container: a crash stops the wait at once."""
    deadline = time.monotonic() + seconds
    step = max(0.2, min(run.session.spec.services[rollout.service].health.interval, 1.0))
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(step, left))
        still_serving(run, rollout, probe=False)


def still_serving(run: ApplyRun, rollout: Rollout, probe: bool) -> None:
    """``NotReady`` when the new container stopped, restarted since it was ready, or (with
    ``probe``) fails its health check: the old one must not stop for it."""
    session = run.session
    doc = dockerio.inspect_container(session.client, rollout.new_id)
    state = doc.get("State") or {}
    restarts = int(doc.get("RestartCount") or 0)
    problem = None
    if not state.get("Running") or state.get("Restarting"):
        problem = f"stopped (exit code {state.get('ExitCode')})"
    elif restarts != rollout.new_restarts:
        problem = f"restarted {restarts - rollout.new_restarts} time(s) (it crashed)"
    elif probe and (found := _failing(session, rollout)) is not None:
        problem = f"fails its health check ({found})"
    if problem is not None:
        raise gate.NotReady(f"{rollout.service}: {rollout.new_name} was ready, then {problem} before "
                            f"{rollout.previous_name} stopped", logs=gate.last_logs(session, rollout.new_id),
                            hint="its last log lines are shown above")


def _failing(session, rollout: Rollout) -> str | None:
    """One health check of the new container: None when it passes, else what it says."""
    interval = session.spec.services[rollout.service].health.interval
    result = health.check_service(session, rollout.service, rollout.new_id, timeout=min(5.0, max(interval, 1.0)))
    if result.level in (health.Level.HEALTHY, health.Level.MINOR):
        return None
    details = result.details
    detail = details.get("error") or (f"HTTP {details['status_code']}" if details.get("status_code") else "")
    return f"{result.status}: {detail}" if detail else result.status
