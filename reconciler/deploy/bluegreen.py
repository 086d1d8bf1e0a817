"""One blue-green replacement: the new container is ready before the old one stops.

    open      create the candidate ``<p>-<s>-new-<t>`` (or start a kept version, for
              ``reconcile rollback``) → wait until ready (its health check; with none, running
              for ``deploy.readiness_delay``), and behind a proxy, accepting connections on
              each port the proxy forwards to. The old container is untouched: a candidate
              that never gets ready is removed and traffic never moved (exit 2).
    promote   rename old → ``-old-<t>``, new → ``<p>-<s>``. Names say which container is
              which at every point, so an apply killed here converges on the next run
              (``reconciler.plan.leftovers``; the proxy's recorded upstream covers the rest).
    switch    behind a proxy: point it at the new container's alias (``proxy.point``). The
              rollout counts as switched from the moment the proxy is touched, not when
              ``point`` returns: nginx may already serve the new container when a signal or
              a confirm timeout stops it there.
    retire    drain (``deploy.drain``, proxy only), watching the new one (``watch``: a crash
              or a failed health check then is undone) → stop the old one with SIGTERM and
              ``deploy.stop_grace`` → restart policy ``no`` → rename it ``-kept-<t>``.

Any failure before the old container is retired is undone (``undo``): the proxy is pointed
back at the old container and confirmed to serve it (``proxy.point_back``) before anything
is stopped or removed, the names are swapped back, the new container is removed (a kept one
is stopped again); an old container whose stop was under way is first waited for and started
again. Failures while tidying the retired container only warn: traffic already moved; a
Ctrl-C there waits for the tidy, then says the new version serves (``finish``).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from reconciler import dockerio
from reconciler.apply import builders, gate, volumes
from reconciler.apply.context import ApplyRun
from reconciler.apply.signals import finishing
from reconciler.deploy import proxy, rules, watch
from reconciler.errors import ApplyError, CriticalError, EngineError, ReconcileError
from reconciler.observe.collect import container_from
from reconciler.observe.models import ObservedContainer
from reconciler.plan.actions import Action, ActionKind
from reconciler.spec.normalise import (
    CANDIDATE_MARK,
    PREVIOUS_MARK,
    container_name,
    swap_name,
)


@dataclass
class Rollout:
    """A blue-green replacement in flight; what ``undo`` needs, mirrored in the journal."""

    service: str
    token: str
    canonical: str
    proxied: bool
    old_id: str
    old_name: str
    previous_name: str
    kept_name: str
    old_restart: str
    old_running: bool = True
    old_ports: bool = False
    new_id: str | None = None
    new_name: str = ""
    new_restart: str = ""
    new_restarts: int = 0  # the new container's restart count when it was found ready
    reused: bool = False
    promoted: bool = False
    switched: bool = False  # the proxy may serve the new container (set before it is touched)
    served: bool = False  # it ever did: an undo stops it gracefully (in-flight requests finish)
    old_stopping: bool = False  # its stop was asked for (it may still be in its grace period)
    old_stopped: bool = False
    finished: bool = False

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v not in (None, "", False)}


def applies(run: ApplyRun, action: Action) -> bool:
    service = run.session.spec.services.get(action.resource)
    return service is not None and rules.blue_green(service) and not action.stateful


def new_alias(run: ApplyRun, service: str) -> str | None:
    """The upstream alias of a new container of ``service`` (None when it has no proxy)."""
    return rules.upstream_alias(service, secrets.token_hex(3)) if run.session.spec.services[service].proxied else None


# -- apply's steps -------------------------------------------------------------------------

def recreate(run: ApplyRun, action: Action) -> dict:
    """The plan's ``recreate``: open; the ``switch-traffic`` action finishes it, or here
    when the plan has none for this service (no proxy, or a hand-made plan)."""
    rollout = open_candidate(run, action)
    if run.plan.action(f"{ActionKind.SWITCH_TRAFFIC.value}:{action.resource}") is None:
        finish(run, action.id, rollout)
    return {"container": rollout.new_id, "replaced": rollout.old_id}


def switch_traffic(run: ApplyRun, action: Action) -> dict:
    """The plan's ``switch-traffic``: finish the open replacement, else point the proxy at
    the live container (proxy missing, stopped, changed, or serving another container)."""
    rollout = run.rollouts.get(action.resource)
    if isinstance(rollout, Rollout) and not rollout.finished:
        details = finish(run, action.id, rollout)
        return {"container": rollout.new_id, "kept": rollout.kept_name, **details}
    live = run.session.container_doc(action.resource)
    if live is None or not (live.get("State") or {}).get("Running"):
        raise ApplyError(f"{action.resource} has no running container to send traffic to",
                         ref="apply.no-upstream", hint="run plan again: the engine changed")
    watch.ports_answer(run, action.id, action.resource, live, candidate=False)
    return proxy.point(run, action.id, action.resource, live)


# -- the steps -------------------------------------------------------------------------------

def open_candidate(run: ApplyRun, action: Action) -> Rollout:
    session = run.session
    old = container_from(dockerio.inspect_container(session.client, action.container_id))
    rollout = _rollout(run, action.resource, old, secrets.token_hex(3))
    run.rollouts[action.resource] = rollout
    image = dockerio.image_id(session.client, session.spec.services[action.resource].image)
    rollout.new_name = swap_name(session.spec.project, action.resource, CANDIDATE_MARK, rollout.token)
    args = builders.container_args(session.loaded, action.resource, image, container=rollout.new_name,
                                   role="candidate", upstream=new_alias(run, action.resource),
                                   volume_names=volumes.in_use(session.loaded, action.resource, old.mounts))
    run.step(action.id, f"create {rollout.new_name}")
    rollout.new_id = dockerio.create_container(session.client, args)
    start_and_wait(run, action.id, rollout)
    return rollout


def open_kept(run: ApplyRun, action_id: str, current: ObservedContainer, kept: ObservedContainer) -> Rollout:
    """``reconcile rollback``: the newest kept version becomes the new container."""
    rollout = _rollout(run, kept.service or "", current, secrets.token_hex(3))
    run.rollouts[rollout.service] = rollout
    rollout.new_id, rollout.new_name, rollout.reused = kept.id, kept.name, True
    rollout.new_restart = str((kept.config or {}).get("restart") or "unless-stopped")
    _set_restart(run, rollout.new_id, rollout.new_restart)
    start_and_wait(run, action_id, rollout)
    return rollout


def _rollout(run: ApplyRun, service: str, old: ObservedContainer, token: str) -> Rollout:
    project = run.session.spec.project
    return Rollout(service=service, token=token, canonical=container_name(run.session.spec, service),
                   proxied=run.session.spec.services[service].proxied, old_id=old.id,
                   old_name=old.name, previous_name=swap_name(project, service, PREVIOUS_MARK, token),
                   kept_name=rules.kept_name(project, service, token),
                   old_restart=str((old.config or {}).get("restart") or "unless-stopped"),
                   old_running=old.running, old_ports=bool(old.ports))


def start_and_wait(run: ApplyRun, action_id: str, rollout: Rollout) -> None:
    session, service = run.session, rollout.service
    run.step(action_id, f"start {rollout.new_name}", container=rollout.new_id)
    dockerio.start(session.client, rollout.new_id)
    timeout = gate.timeout_for(session, service, recreate=True)
    run.step(action_id, f"wait until {rollout.new_name} is ready (up to {timeout:g}s)")
    gate.wait_ready(session, service, rollout.new_id, timeout)
    doc = dockerio.inspect_container(session.client, rollout.new_id)
    if rules.needs_readiness_delay(session.spec.services[service], doc.get("State") or {}):
        _readiness_delay(run, action_id, rollout)
        doc = dockerio.inspect_container(session.client, rollout.new_id)
    rollout.new_restarts = int(doc.get("RestartCount") or 0)
    if rollout.proxied:
        watch.ports_answer(run, action_id, rollout.service, doc)


def _readiness_delay(run: ApplyRun, action_id: str, rollout: Rollout) -> None:
    """No health signal: it must stay up (no exit, no restart) for ``readiness_delay``."""
    session = run.session
    delay = session.spec.services[rollout.service].deploy.readiness_delay
    run.step(action_id, f"{rollout.new_name} has no health check: it must keep running for {delay:g}s")
    before = dockerio.inspect_container(session.client, rollout.new_id)
    time.sleep(delay)
    after = dockerio.inspect_container(session.client, rollout.new_id)
    state = after.get("State") or {}
    if not state.get("Running") or after.get("RestartCount", 0) != before.get("RestartCount", 0):
        raise gate.NotReady(f"{rollout.service}: {rollout.new_name} did not keep running for {delay:g}s "
                            f"(state {state.get('Status')}, exit code {state.get('ExitCode')})",
                            logs=gate.last_logs(session, rollout.new_id), hint="its last log lines are shown above")


def complete(run: ApplyRun, action_id: str, rollout: Rollout) -> dict:
    promote(run, action_id, rollout)
    details = switch(run, action_id, rollout) if rollout.proxied else {}
    retire(run, action_id, rollout)
    return details


def promote(run: ApplyRun, action_id: str, rollout: Rollout) -> None:
    client = run.session.client
    if rollout.old_name == rollout.canonical:
        run.step(action_id, f"rename {rollout.old_name} → {rollout.previous_name}", container=rollout.old_id)
        dockerio.rename(client, rollout.old_id, rollout.previous_name)
    else:
        rollout.previous_name = rollout.old_name  # already renamed by an interrupted apply
    run.step(action_id, f"rename {rollout.new_name} → {rollout.canonical}", container=rollout.new_id)
    dockerio.rename(client, rollout.new_id, rollout.canonical)
    rollout.promoted = True


def switch(run: ApplyRun, action_id: str, rollout: Rollout) -> dict:
    target = dockerio.inspect_container(run.session.client, rollout.new_id)
    free = (lambda: stop_old(run, action_id, rollout, " to free its host ports for the proxy")) \
        if rollout.old_ports else None
    rollout.switched = rollout.served = True  # from here on nginx may serve the new one: an undo points it back
    return proxy.point(run, action_id, rollout.service, target, before_start=free)


def stop_old(run: ApplyRun, action_id: str, rollout: Rollout, why: str = "") -> None:
    if rollout.old_stopped:
        return
    grace = run.session.spec.services[rollout.service].deploy.stop_grace
    run.step(action_id, f"stop {rollout.previous_name} (SIGTERM, grace {grace:g}s){why}",
             container=rollout.old_id)
    rollout.old_stopping = True  # a signal during the stop leaves it exiting: the undo must wait and restart it
    dockerio.stop(run.session.client, rollout.old_id, grace)
    rollout.old_stopped = True


def retire(run: ApplyRun, action_id: str, rollout: Rollout) -> None:
    """Drain, stop, keep. After the stop, failures are warnings: the new one serves.

    The new container must still serve when the old one stops: one that crashed (or was
    restarted by its restart policy) during the drain is undone while the old one still runs
    (QA: a version that died 3 s after its health check was kept, exit 0, requests failing)."""
    drain = run.session.spec.services[rollout.service].deploy.drain
    if rollout.proxied and not rollout.old_stopped and drain > 0:
        run.step(action_id, f"drain {rollout.previous_name} for {drain:g}s (it finishes in-flight requests)")
        watch.drain(run, rollout, drain)
    watch.still_serving(run, rollout, probe=True)
    stop_old(run, action_id, rollout)
    rollout.finished = True
    try:  # a Ctrl-C here waits: it must not leave the old one half-kept (restart policy, name)
        with finishing("keeping the old version", then_stop=True):
            _set_restart(run, rollout.old_id, "no")
            run.step(action_id, f"rename {rollout.previous_name} → {rollout.kept_name} (kept for rollback)",
                     container=rollout.old_id)
            dockerio.rename(run.session.client, rollout.old_id, rollout.kept_name)
    except EngineError as exc:
        run.warn(f"{rollout.service}: the old container {rollout.previous_name} could not be kept "
                 f"({exc.message}); the next apply removes it")


def finish(run: ApplyRun, action_id: str, rollout: Rollout) -> dict:
    """``complete``, and a Ctrl-C that lands once the new version serves (nothing left to
    undo) said as it is: not "failed", which read as the deploy undone (QA)."""
    try:
        return complete(run, action_id, rollout)
    except KeyboardInterrupt:
        if not rollout.finished:
            raise
        raise ApplyError(f"interrupted once {rollout.service} had switched: {rollout.canonical} serves the "
                         f"version it switched to, the one before is kept as {rollout.kept_name}",
                         ref="apply.interrupted",
                         hint=f"run the command again for what is left; `reconcile rollback {rollout.service}` "
                              "puts the previous version back") from None


def _set_restart(run: ApplyRun, container: str, policy: str) -> None:
    dockerio.set_restart_policy(run.session.client, container, policy)


# -- undo ------------------------------------------------------------------------------------

def undo(run: ApplyRun, rollout: Rollout, action_id: str, error: BaseException) -> ApplyError:
    """Put everything back as it was; ``CriticalError`` (exit 3) if that fails too."""
    reason = "interrupted" if isinstance(error, KeyboardInterrupt) else \
        getattr(error, "message", None) or f"{type(error).__name__}: {error}"
    run.record("rollback-begin", service=rollout.service, reason=reason, rollout=rollout.as_dict())
    try:
        with finishing("the rollback"):
            traffic = _undo(run, rollout, action_id)
    except (ReconcileError, OSError) as exc:
        detail = getattr(exc, "message", None) or str(exc)
        run.record("rollback-end", service=rollout.service, status="failed", error=detail)
        return CriticalError(f"{reason}; undoing it failed too ({detail})", ref="apply.rollback-failed",
                             hint=manual_steps(rollout))
    rollout.finished = True
    run.record("rollback-end", service=rollout.service, status="ok")
    serves = "still serves" if rollout.old_running else "is as it was (it was not running)"
    if rollout.old_running and (down := _proxy_down(run, rollout)):
        serves = f"still runs, but {down}"
    return ApplyError(f"{reason}; rolled back: {rollout.canonical} {serves} ({traffic})",
                      ref="apply.rolled-back",
                      hint="nothing was lost; run apply again" if reason == "interrupted"
                      else "nothing was lost; fix the cause shown above and try again")


def _proxy_down(run: ApplyRun, rollout: Rollout) -> str:
    """Why nothing serves the service's host ports after the undo, or "" (QA: "still serves"
    while its proxy had been removed by hand before the apply)."""
    if not rollout.proxied or rollout.old_ports:
        return ""
    name = rules.proxy_container_name(run.session.loaded, rollout.service)
    try:
        doc = dockerio.inspect_container(run.session.client, name)
    except EngineError:
        doc = None
    state = (doc or {}).get("State") or {}
    if state.get("Running") and not state.get("Restarting"):
        return ""
    what = "missing" if doc is None else (state.get("Status") or "not running")
    fix = "an apply of the spec it ran under creates it" if doc is None else "`reconcile heal` starts it"
    return f"its proxy {name} is {what} (so it was before this apply): nothing serves its host ports; {fix}"


def _undo(run: ApplyRun, rollout: Rollout, action_id: str) -> str:
    """Undo in an order that never leaves the proxy sending to a stopped or removed
    container; returns what became of the traffic, in words, for the message."""
    client, service = run.session.client, rollout.service
    traffic = "traffic never moved"
    if rollout.old_ports:
        proxy.remove(run, action_id, service)  # a first deploy's proxy holds the old one's ports
        if rollout.switched:
            traffic = "the proxy was removed: it publishes its own host ports again"
    if rollout.old_stopping and not rollout.old_stopped:
        grace = run.session.spec.services[service].deploy.stop_grace
        run.step(action_id, f"undo: wait until {rollout.old_name} has stopped (its stop was under way)",
                 container=rollout.old_id)
        dockerio.stop(client, rollout.old_id, grace)  # it got SIGTERM: it exits in its grace period
    old = dockerio.inspect_container(client, rollout.old_id)
    if rollout.old_running and not (old.get("State") or {}).get("Running"):
        run.step(action_id, f"undo: start {rollout.old_name}", container=rollout.old_id)
        _set_restart(run, rollout.old_id, rollout.old_restart)
        dockerio.start(client, rollout.old_id)
        gate.wait_ready(run.session, service, rollout.old_id, gate.timeout_for(run.session, service))
        rollout.old_stopped = False
    if rollout.switched and not rollout.old_ports:
        proxy.point_back(run, action_id, service, old)  # confirmed, before anything stops
        rollout.switched = False
        traffic = "the proxy was pointed back at it, confirmed"
    if rollout.promoted:
        run.step(action_id, f"undo: rename {rollout.canonical} → {rollout.new_name}", container=rollout.new_id)
        dockerio.rename(client, rollout.new_id, rollout.new_name)
        if rollout.old_name != rollout.previous_name:
            run.step(action_id, f"undo: rename {rollout.previous_name} → {rollout.old_name}",
                     container=rollout.old_id)
            dockerio.rename(client, rollout.old_id, rollout.old_name)
        rollout.promoted = False
    _drop_new(run, rollout, action_id)
    return traffic


def _drop_new(run: ApplyRun, rollout: Rollout, action_id: str) -> None:
    """Remove the candidate; a kept version brought back is stopped and kept again."""
    if rollout.new_id is None:
        return
    client = run.session.client
    if rollout.reused:
        run.step(action_id, f"undo: stop {rollout.new_name} (it stays kept)", container=rollout.new_id)
        dockerio.stop(client, rollout.new_id, run.session.spec.services[rollout.service].deploy.stop_grace)
        _set_restart(run, rollout.new_id, "no")
    else:
        if rollout.served:  # the proxy's old workers may still wait on it (QA: a request cut, 502)
            grace = run.session.spec.services[rollout.service].deploy.stop_grace
            run.step(action_id, f"undo: stop {rollout.new_name} (SIGTERM, grace {grace:g}s: its in-flight "
                     "requests finish)", container=rollout.new_id)
            dockerio.stop(client, rollout.new_id, grace)
        run.step(action_id, f"undo: remove {rollout.new_name}", container=rollout.new_id)
        dockerio.remove_container(client, rollout.new_id)
        rollout.new_id = None


def manual_steps(rollout: Rollout) -> str:
    """What a person types to get the old container serving again, names spelt out."""
    lines = ["recover by hand:"]
    if rollout.promoted:
        lines += [f"  docker rename {rollout.canonical} {rollout.new_name}",
                  f"  docker rename {rollout.previous_name} {rollout.canonical}"]
    lines.append(f"  docker start {rollout.canonical}     # the old version (no-op if it runs)")
    if rollout.proxied:
        lines.append(f"  reconcile apply     # points the proxy at {rollout.canonical} again")
    if rollout.new_id and not rollout.reused:
        lines.append(f"  docker rm -f {rollout.new_name}     # the new container")
    return "\n".join(lines)
