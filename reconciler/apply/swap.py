"""Replace a service's container: old → ``previous``, new ``candidate`` → canonical.

Stateless (``swap_stateless``): rename the old one ``<p>-<s>-old-<t>`` → create the candidate
``<p>-<s>-new-<t>`` → stop the old one gracefully (``deploy.stop_grace``) → start the candidate
→ wait healthy → rename the candidate to ``<p>-<s>`` → remove the old one.

Stateful (``open_stateful`` … ``finish``): rename and stop the old one first (its data must
not change under the backup just taken, and the new server must not share a live data
directory) → fresh volume generations when the data cannot carry over → create and start
the candidate → wait healthy. The swap then stays open through ``restore`` and ``verify``;
``finish`` renames the candidate and removes the old container only after verify passed.

Every engine call is journaled as a ``step`` line first, so a killed apply leaves a record
a person can follow, and ``Swap`` holds what rollback needs.
"""

from __future__ import annotations

import secrets

from reconciler import dockerio
from reconciler.apply import builders, gate, volumes
from reconciler.apply.context import ApplyRun, Swap
from reconciler.observe.collect import container_from
from reconciler.plan.actions import Action, ActionKind
from reconciler.spec.normalise import CANDIDATE_MARK, PREVIOUS_MARK, container_name, swap_name


def begin(run: ApplyRun, action: Action) -> Swap:
    """Look at the old container and rename it ``previous`` (one atomic engine call)."""
    session = run.session
    service = action.resource
    old = container_from(dockerio.inspect_container(session.client, action.container_id)) \
        if action.container_id else None
    token = secrets.token_hex(3)
    project = session.spec.project
    swap = Swap(service=service, token=token, canonical=container_name(session.spec, service),
                old_id=old.id if old else None, old_name=old.name if old else "",
                previous_name=swap_name(project, service, PREVIOUS_MARK, token),
                old_running=bool(old and old.running),
                old_volumes=volumes.in_use(session.loaded, service, old.mounts) if old else {},
                old_config=old.config if old else None)
    run.swaps[service] = swap
    if old is not None and f"-{PREVIOUS_MARK}-" in old.name:
        swap.previous_name, swap.renamed = old.name, True  # already previous (an interrupted apply)
    elif old is not None:
        run.step(action.id, f"rename {old.name} → {swap.previous_name}", container=old.id)
        dockerio.rename(session.client, old.id, swap.previous_name)
        swap.renamed = True
    return swap


def create_candidate(run: ApplyRun, action: Action, swap: Swap) -> None:
    session = run.session
    names = dict(swap.old_volumes)
    if action.fresh_volume:
        names.update(make_generations(run, action, swap))
    swap.new_name = swap_name(session.spec.project, swap.service, CANDIDATE_MARK, swap.token)
    image = dockerio.image_id(session.client, session.spec.services[swap.service].image)
    args = builders.container_args(session.loaded, swap.service, image, container=swap.new_name,
                                   role="candidate", volume_names=names)
    run.step(action.id, f"create {swap.new_name}", volumes=names)
    swap.new_id = dockerio.create_container(session.client, args)


def make_generations(run: ApplyRun, action: Action, swap: Swap) -> dict[str, str]:
    """Fresh volume generations for the candidate; the old ones stay with the old container.
    A volume newly declared for the service, which this run created, is empty already."""
    session = run.session
    made = {}
    for logical in volumes.fresh_logicals(session.loaded, swap.service, swap.old_config):
        if run.plan.action(f"{ActionKind.CREATE_VOLUME.value}:{logical}") is not None:
            continue  # a volume this run created holds nothing yet: the candidate takes it as it is
        args, folder = volumes.generation_args(session.loaded, logical, swap.token)
        if folder is not None:
            volumes.ensure_folder(folder)
            swap.fresh_folders.append(str(folder))
        run.step(action.id, f"create fresh volume {args['name']}", volume=args["name"],
                 folder=str(folder) if folder else None)
        dockerio.create_volume(session.client, args)
        swap.fresh[logical] = made[logical] = args["name"]
    return made


def stop_old(run: ApplyRun, action: Action, swap: Swap) -> None:
    """Stop the old container; also when it is restarting in a loop, or the engine could bring
    it back on the same data as its replacement."""
    if swap.old_id is None:
        return
    if not swap.old_running and not _restarting(run, swap.old_id):
        return
    grace = run.session.spec.services[swap.service].deploy.stop_grace
    run.step(action.id, f"stop {swap.previous_name} (grace {grace:g}s)", container=swap.old_id)
    dockerio.stop(run.session.client, swap.old_id, grace)
    swap.stopped = True


def _restarting(run: ApplyRun, container: str) -> bool:
    state = dockerio.inspect_container(run.session.client, container).get("State") or {}
    return bool(state.get("Restarting")) or state.get("Status") == "restarting"


def start_candidate(run: ApplyRun, action: Action, swap: Swap) -> None:
    run.step(action.id, f"start {swap.new_name}", container=swap.new_id)
    dockerio.start(run.session.client, swap.new_id)
    timeout = gate.timeout_for(run.session, swap.service, recreate=True)
    run.step(action.id, f"wait until {swap.service} is healthy (up to {timeout:g}s)")
    gate.wait_ready(run.session, swap.service, swap.new_id, timeout)


def finish(run: ApplyRun, action: Action, swap: Swap) -> None:
    """The candidate is good: give it the canonical name, then remove the old container. In
    that order: a rename the engine refuses leaves the old one for the rollback to put back
    (QA: removed first, the rollback then removed the candidate as well, and its hint said to
    rename and start the old one, which was gone)."""
    client = run.session.client
    run.step(action.id, f"rename {swap.new_name} → {swap.canonical}", container=swap.new_id)
    dockerio.rename(client, swap.new_id, swap.canonical)
    if swap.old_id is not None:
        run.step(action.id, f"remove {swap.previous_name}", container=swap.old_id)
        dockerio.remove_container(client, swap.old_id)
    swap.finished = True
    volumes.record_current(run.session.state_dir(), swap.fresh)
    for logical, engine in swap.fresh.items():
        old = swap.old_volumes.get(logical)
        if old and old != engine:
            run.kept_volumes.append(old)


def swap_stateless(run: ApplyRun, action: Action) -> Swap:
    swap = begin(run, action)
    create_candidate(run, action, swap)
    stop_old(run, action, swap)
    start_candidate(run, action, swap)
    finish(run, action, swap)
    return swap


def open_stateful(run: ApplyRun, action: Action) -> Swap:
    swap = begin(run, action)
    stop_old(run, action, swap)
    create_candidate(run, action, swap)
    start_candidate(run, action, swap)
    return swap
