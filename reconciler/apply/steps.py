"""One small function per action kind. No decisions: the plan said what, these say how.

Each returns the details the journal's ``action-end`` line records. ``dispatch`` is a
``match`` with ``assert_never``, so a new ``ActionKind`` without a step fails type checking.
"""

from __future__ import annotations

from pathlib import Path
from typing import assert_never

from reconciler import dockerio
from reconciler.apply import builders, fallback, gate, networks, orphan, swap, volumes
from reconciler.apply.context import ApplyRun
from reconciler.deploy import bluegreen
from reconciler.errors import ApplyError, EngineError
from reconciler.plan.actions import Action, ActionKind
from reconciler.plan.inplace import memory_bytes
from reconciler.spec.normalise import container_name, role_from_name

DEFAULT_GRACE = 30.0


def dispatch(run: ApplyRun, action: Action) -> dict:
    match action.kind:
        case ActionKind.CREATE_NETWORK:
            return create_network(run, action)
        case ActionKind.CREATE_VOLUME:
            return create_volume(run, action)
        case ActionKind.CREATE:
            return create(run, action)
        case ActionKind.RECREATE:
            return recreate(run, action)
        case ActionKind.UPDATE:
            return update(run, action)
        case ActionKind.START:
            return start(run, action)
        case ActionKind.REMOVE:
            return remove(run, action)
        case ActionKind.BACKUP:
            return backup(run, action)
        case ActionKind.RESTORE:
            return restore(run, action)
        case ActionKind.VERIFY:
            return verify(run, action)
        case ActionKind.SWITCH_TRAFFIC:
            return switch_traffic(run, action)
        case _:
            assert_never(action.kind)


def create_network(run: ApplyRun, action: Action) -> dict:
    args = builders.network_args(run.session.loaded, action.resource)
    return {"network": args["name"], "id": dockerio.create_network(run.session.client, args)}


def create_volume(run: ApplyRun, action: Action) -> dict:
    args = builders.volume_args(run.session.loaded, action.resource)
    folder = args["driver_opts"].get("device") if args["driver_opts"].get("o") == "bind" else None
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True, mode=0o700)
    return {"volume": dockerio.create_volume(run.session.client, args), "folder": folder}


def create(run: ApplyRun, action: Action) -> dict:
    session = run.session
    gate.check_dependencies(session, action.resource)
    image = _image(run, action)
    names = volumes.current(session.loaded, action.resource,
                            dockerio.project_volumes(session.client, session.spec.project), session.state_dir())
    args = builders.container_args(session.loaded, action.resource, image, volume_names=names,
                                   upstream=bluegreen.new_alias(run, action.resource))
    _name_free(session, args["name"])
    run.step(action.id, f"create {args['name']}", **({"volumes": names} if names else {}))
    container = dockerio.create_container(session.client, args)
    try:
        _start_and_wait(run, action, container)
    except (Exception, KeyboardInterrupt):
        _remove_new(run, action, args["name"], container)
        raise
    return {"container": container}


def _remove_new(run: ApplyRun, action: Action, name: str, container: str) -> None:
    """Undo a create that failed (did not start, or never turned healthy), as a swap's candidate
    is undone: exit 2 says the failed step was rolled back, and a container left in a restart
    loop made the next plan say "no changes" (QA). Its last log lines are already taken."""
    run.step(action.id, f"rollback: remove {name} (new: there was none before)", container=container)
    try:
        dockerio.remove_container(run.session.client, container)
    except EngineError as exc:
        run.step(action.id, f"rollback: could not remove {name} ({exc.message}): docker rm -f {name}")


def _name_free(session, name: str) -> None:
    """A container reconcile did not make under the service's name (``docker run --name``
    without its labels) stops the create with what to do, not the engine's Conflict. The plan
    already blocks on one it saw (``plan.names``); this catches one started since."""
    if holder := dockerio.foreign_holder(session.client, name, session.spec.project):
        raise ApplyError(f"cannot create {name}: a container reconcile did not make (no reconcile labels) has "
                         f"that name: {holder}", ref="apply.name-taken",
                         hint=f"look at it (docker inspect {name}); if it is not needed, remove it "
                              f"(docker rm -f {name}) and apply again; nothing of the service was changed")


def recreate(run: ApplyRun, action: Action) -> dict:
    """Blue-green: the new container starts before the old one stops (``reconciler.deploy``).
    Stateless: the whole swap. Stateful: the swap stays open for restore/verify, unless
    the plan has no verify for it (a hand-made plan), when it finishes here."""
    gate.check_dependencies(run.session, action.resource)
    _image(run, action)
    if bluegreen.applies(run, action):
        return bluegreen.recreate(run, action)
    if not action.stateful:
        done = swap.swap_stateless(run, action)
        return {"container": done.new_id, "replaced": done.old_id}
    opened = swap.open_stateful(run, action)
    if run.plan.action(f"{ActionKind.VERIFY.value}:{action.resource}") is None:
        swap.finish(run, action, opened)
    return {"container": opened.new_id, "replaced": opened.old_id, "volumes": opened.fresh or None}


def update(run: ApplyRun, action: Action) -> dict:
    """Put back what the plan names as the spec says (its texts may read ``(sensitive)``):
    ``docker update`` the restart policy and memory limit, reconnect the networks under the
    service's aliases. The same container keeps running, so nothing is backed up."""
    session = run.session
    service = session.spec.services[action.resource]
    fields = {c.field for c in action.changes}
    restart = service.restart if "restart" in fields else None
    memory = memory_bytes(service.mem_limit) if "mem_limit" in fields else None
    if "mem_limit" in fields and memory is None:
        raise ApplyError(f"{action.resource}: a memory limit cannot be removed in place",
                         ref="apply.update", hint="make a new plan with `reconcile plan`: it recreates "
                                                  "the container instead")
    what = ", ".join(str(c) for c in action.changes)
    run.step(action.id, f"update {action.resource} in place: {what}", container=action.container_id)
    dockerio.update_container(session.client, action.container_id, restart=restart, memory=memory)
    joined = []
    if "networks" in fields:
        ids, _ = networks.ensure_networks(session, action.resource)
        joined = networks.rejoin(session, action.container_id, ids, aliases=None, start=False)
    return {"container": action.container_id, "reconnected": joined}


def switch_traffic(run: ApplyRun, action: Action) -> dict:
    """Blue-green: the proxy serves the new container, the old one drains and is kept."""
    return bluegreen.switch_traffic(run, action)


def start(run: ApplyRun, action: Action) -> dict:
    """Start a stopped container; a live container with a swap name gets its canonical name."""
    session = run.session
    gate.check_dependencies(session, action.resource)
    canonical = container_name(session.spec, action.resource)
    doc = dockerio.inspect_container(session.client, action.container_id)
    if doc.get("Name", "").lstrip("/") != canonical:
        run.step(action.id, f"rename {doc['Name'].lstrip('/')} → {canonical}")
        dockerio.rename(session.client, action.container_id, canonical)
    if not (doc.get("State") or {}).get("Running"):
        _start_and_wait(run, action, action.container_id)
    else:
        gate.wait_ready(session, action.resource, action.container_id, gate.timeout_for(session, action.resource))
    return {"container": action.container_id}


def remove(run: ApplyRun, action: Action) -> dict:
    """An orphan: stop it gracefully, then remove it. A leftover of an interrupted swap (its
    resource is a ``-new-``/``-old-`` container name) is removed at once: it is either stopped
    already or an unverified candidate, and a candidate killed mid-initdb ignores SIGINT,
    so a graceful stop would only wait out the grace period. Volumes are never removed."""
    service = run.session.spec.services.get(action.resource)
    grace = service.deploy.stop_grace if service else DEFAULT_GRACE
    leftover = _is_leftover(run, action.resource)
    run.step(action.id, f"{'remove' if leftover else 'stop and remove'} {action.resource}",
             container=action.container_id)
    try:
        if not leftover:
            dockerio.stop(run.session.client, action.container_id, grace)
        dockerio.remove_container(run.session.client, action.container_id)
    except EngineError as exc:
        if exc.ref != "engine.not-found":
            raise
        return {"container": action.container_id, "note": "already gone"}
    return {"container": action.container_id}


def _is_leftover(run: ApplyRun, resource: str) -> bool:
    project = run.session.spec.project
    return any(role_from_name(resource, project, s) in ("candidate", "previous")
               for s in run.session.spec.services)


def backup(run: ApplyRun, action: Action) -> dict:
    """Back up the live container (started first if it is stopped: a dump needs a server).
    A ``fallback`` backup of a service that cannot run uses the latest verified backup instead
    (``reconciler.apply.fallback`` says exactly when)."""
    try:
        return _backup_now(run, action)
    except Exception as exc:
        reason = fallback.broken_reason(run, action, exc)
        if reason is None:
            raise
        return fallback.use_latest_verified(run, action, exc, reason)


def _backup_now(run: ApplyRun, action: Action) -> dict:
    from reconciler.backup.run import backup_services

    session = run.session
    container = action.container_id
    doc = dockerio.inspect_container(session.client, container)
    session = orphan.session_for(session, action.resource, doc)  # a service no longer in the spec
    if not (doc.get("State") or {}).get("Running"):
        _start_and_wait(run, action, container, session)
    backup_run = backup_services(session, [action.resource], reason="pre-apply",
                                 containers={action.resource: container},
                                 progress=lambda text: run.step(action.id, text),
                                 hold_claim=True)  # kept from retention until the apply ends
    run.backups[action.resource] = backup_run
    for warning in backup_run.warnings:
        run.warn(warning)
    entry = backup_run.document["services"][action.resource]
    return {"backup_id": backup_run.backup_id, "file": entry.get("local_path"),
            "s3": backup_run.s3_status, "rows": entry.get("row_count"), "keys": entry.get("key_count")}


def restore(run: ApplyRun, action: Action) -> dict:
    """Restore THIS apply's backup into the new container (never an older one, unless the
    backup step fell back to the latest verified one: then that one)."""
    from reconciler.backup.restore import restore_services

    service, opened = action.resource, run.swaps[action.resource]
    backup_id = _backup_of(run, service)
    result = restore_services(run.session, backup_id, [service], containers={service: opened.new_id},
                              progress=lambda text: run.step(action.id, text))
    stats = result.results[service]
    for note in result.notes:  # e.g. the local copy was corrupt and S3's was used
        run.warn(note)
    return {"backup_id": backup_id, "source": result.sources.get(service),
            "rows": stats.rows_restored, "keys": stats.keys_restored}


def verify(run: ApplyRun, action: Action) -> dict:
    """Check the new container's data against this apply's backup, then finish the swap."""
    from reconciler.backup.verify import verify_services

    service, opened = action.resource, run.swaps[action.resource]
    backup_id = _backup_of(run, service)
    _, reports = verify_services(run.session, backup_id, [service], containers={service: opened.new_id})
    report = reports[service]
    if not report.ok:
        raise ApplyError(f"{service}: the data does not match backup {backup_id}: {report.summary()}",
                         ref="apply.verify", hint="the old container and its data are kept; see above")
    swap.finish(run, action, opened)
    return {"backup_id": backup_id, "checks": len(report.checks)}


def _backup_of(run: ApplyRun, service: str) -> str:
    backup_id = run.backup_id(service)
    if backup_id is None:
        raise ApplyError(f"no backup of {service} was taken in this apply", ref="apply.no-backup",
                         hint="make a new plan with `reconcile plan`")
    return backup_id


def _image(run: ApplyRun, action: Action) -> str:
    """The image id to label the container with, pulling the image when it is not here."""
    client, ref = run.session.client, run.session.spec.services[action.resource].image
    try:
        return dockerio.image_id(client, ref)
    except EngineError as exc:
        if exc.ref != "engine.not-found":
            raise
    run.step(action.id, f"pull {ref}")
    dockerio.pull(client, ref)
    return dockerio.image_id(client, ref)


def _start_and_wait(run: ApplyRun, action: Action, container: str, session=None) -> None:
    session = session or run.session
    run.step(action.id, f"start {action.resource}", container=container)
    dockerio.start(session.client, container)
    timeout = gate.timeout_for(session, action.resource)
    run.step(action.id, f"wait until {action.resource} is healthy (up to {timeout:g}s)")
    gate.wait_ready(session, action.resource, container, timeout)
