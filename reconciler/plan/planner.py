"""Decide what to do: a pure function from a loaded spec and one observed snapshot to a Plan.

Kopf-style cause detection: each situation of a service (missing, changed, rebuilt, changed
in place by ``docker update``, stopped, unhealthy, orphaned) is recognised by one small
function and becomes typed actions with a cause in words. Nothing here talks to Docker or
the clock, so the same inputs always give the same plan, and golden tests can pin it down.
What may be shown of a value is decided in ``reconciler.plan.display``; this module only
decides what happens and in which order.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace

from reconciler.deploy import planning
from reconciler.errors import PlanError
from reconciler.observe.models import Health, Observed, ObservedContainer, Role, State
from reconciler.plan import inplace, leftovers, names, networks, outside, safety
from reconciler.plan.actions import Action, ActionKind, Change, Plan
from reconciler.plan.carryover import fresh_cause, moved_blockers
from reconciler.plan.display import SENSITIVE, Views, changed_fields, short_id
from reconciler.spec.load import LoadedSpec
from reconciler.spec.models import BACKUPABLE_KINDS, Kind, Spec
from reconciler.spec.normalise import (
    config_hash,
    normalised_config,
    volume_name,
    volume_of,
)

INFRASTRUCTURE = "infrastructure"
NO_VOLUME = ("no volume is declared for its data: the new container starts on an empty anonymous volume of its "
             "image; restore from the backup")
"""Why a stateful service with no ``volumes`` is restored after any recreate (QA: verify found its
data gone and rolled back, so apply could never change it)."""
_STOPPED = frozenset({State.CREATED, State.EXITED, State.DEAD})
_CANNOT_RUN = frozenset({State.RESTARTING, State.EXITED, State.DEAD})


@dataclass(frozen=True)
class _Context:
    """Everything a decision may look at; configs are normalised once per service."""

    loaded: LoadedSpec
    observed: Observed
    selected: frozenset[str]
    scope: tuple[str, ...]
    configs: dict[str, dict] = field(default_factory=dict)
    unhealthy: Mapping[str, str] = field(default_factory=dict)

    @property
    def spec(self) -> Spec:
        return self.loaded.spec


@dataclass(frozen=True)
class _Decision:
    """What a service needs; ``fresh_cause`` says why its data cannot carry over, if so."""

    kind: ActionKind
    cause: str
    changes: tuple[Change, ...] = ()
    fresh_cause: str | None = None
    fallback: bool = False
    updates: tuple[Change, ...] = ()
    """In-place changes (``docker update``) to make before the main action, a start."""


def make_plan(loaded: LoadedSpec, observed: Observed, profiles: Collection[str] = (),
              unhealthy: Mapping[str, str] | None = None) -> Plan:
    """The actions that turn ``observed`` into the spec, ordered and safety-checked.

    ``unhealthy`` maps services that heal could not fix in place (still unhealthy after a
    restart, restarting in a loop, cut off from a deleted network) to why; each gets a
    recreate (with backup and verify when stateful) whatever its state, so healing is
    planned like any other change and the plan stays the one source of truth.

    What would make an action fail midway (a container reconcile did not make under the name
    a service's container gets) is the plan's ``blocking``, not an error: the plan is shown
    with it, and apply refuses it before changing anything.
    """
    spec = loaded.spec
    selected = frozenset(profiles)
    scope = tuple(n for n in sorted(spec.services)
                  if not selected or spec.services[n].profile in selected)
    ctx = _Context(loaded, observed, selected, scope,
                   {n: normalised_config(spec, n) for n in scope}, dict(unhealthy or {}))
    warnings = [f"profile {p} selects no service" for p in sorted(selected)
                if not any(s.profile == p for s in spec.services.values())]
    actions = [*_network_actions(ctx), *_volume_actions(ctx), *_orphan_actions(ctx)]
    last_of: dict[str, str] = {}
    for name in service_order(spec, scope):
        group = _service_actions(ctx, name, {a.id for a in actions}, last_of, warnings)
        if group:
            actions.extend(group)
            last_of[name] = group[-1].id
    _strays(ctx, actions, warnings)
    warnings.extend(outside.dependency_warnings(spec, observed, scope, actions))
    warnings.extend(networks.leftover_warnings(spec, observed))
    plan = Plan(project=spec.project, actions=tuple(actions), fingerprint=observed.fingerprint(),
                profiles=tuple(sorted(selected)), warnings=tuple(warnings),
                spec_hash=_plan_spec_hash(ctx),
                blocking=names.blockers(loaded, observed, actions) + moved_blockers(ctx, actions)
                + networks.network_blockers(loaded, observed, scope))
    safety.check(plan)
    return plan


def service_order(spec: Spec, scope: Collection[str]) -> list[str]:
    """Dependencies first, infrastructure before other profiles, then by name.

    The loader rejects cycles, but a plan must never hang: when nothing is ready the
    remaining services are taken in rank order.
    """
    def rank(name: str) -> tuple[int, str]:
        return (0 if spec.services[name].profile == INFRASTRUCTURE else 1, name)

    deps = {n: {d for d in spec.services[n].depends_on if d in scope and d != n} for n in scope}
    order: list[str] = []
    done: set[str] = set()
    while len(order) < len(deps):
        waiting = [n for n in deps if n not in done]
        ready = [n for n in waiting if deps[n] <= done] or waiting
        chosen = min(ready, key=rank)
        order.append(chosen)
        done.add(chosen)
    return order


def _plan_spec_hash(ctx: _Context) -> str:
    """What a saved plan must still match to run as reviewed: the spec as apply will read it,
    not only the containers' configs (QA applied a reviewed plan after moving the backup
    folder, turning S3 off and dropping the critical-table check, unrefused). Every setting
    outside ``services``, every setting of the services the plan covers, the images of all
    (the engine state a plan is fingerprinted on reads them), and the container configs (env
    values as the salted digests the containers' labels keep). Env values themselves are
    dumped masked; the file's path is left out, so a plan applies from another checkout.

    Keyed (HMAC) with the engine's ID, which no output shows: anyone can rebuild the rest of
    the document from the repository, and would otherwise test guesses of a weak secret
    against the hash of a plan posted in a pull request. A saved plan is checked against the
    same engine (its fingerprint already ties it to one), so the key is the same there."""
    spec = ctx.spec
    doc = {"containers": {n: config_hash(ctx.configs[n]) for n in ctx.scope},
           "services": {n: spec.services[n].model_dump(mode="json") for n in ctx.scope},
           "images": {n: s.image for n, s in spec.services.items()},
           "spec": spec.model_dump(mode="json", exclude={"source", "services"})}
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    key = f"reconcile spec hash/{ctx.observed.engine_id}".encode()
    return "sha256:" + hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


def engine_tag(observed: Observed) -> str:
    """Which engine a saved plan was made on, without its ID (the spec hash's key): the spec
    hash differs on another engine, and apply must not call that an edited spec (QA)."""
    key = f"reconcile engine/{observed.engine_id}".encode()
    return "sha256:" + hmac.new(key, b"engine", hashlib.sha256).hexdigest()


# -- networks and volumes ---------------------------------------------------------------

def _network_actions(ctx: _Context) -> list[Action]:
    return networks.network_actions(ctx.spec, ctx.observed, ctx.scope)


def _volume_actions(ctx: _Context) -> list[Action]:
    used = sorted({m.source for s in ctx.scope for m in ctx.spec.services[s].volumes
                   if not m.is_host_path})
    actions = []
    for vol in used:
        engine = volume_name(ctx.spec, vol)
        if any(volume_of(v.name, ctx.spec.project) == vol for v in ctx.observed.volumes):
            continue  # the canonical volume or a generation of it (fresh-volume recreates)
        cause = f"new volume {engine}"
        bind = ctx.spec.volumes[vol].bind
        if bind:
            cause += f" on host folder {ctx.loaded.shown(('volumes', vol, 'bind'), bind)}"
        actions.append(Action(ActionKind.CREATE_VOLUME, vol, cause))
    return actions


# -- strays -------------------------------------------------------------------------------

_STARTS = frozenset({ActionKind.CREATE, ActionKind.RECREATE, ActionKind.START})


def _strays(ctx: _Context, actions: list[Action], warnings: list[str]) -> None:
    """Containers labelled as one of the project's services that reconcile did not make: never
    taken for the service (``Role.STRAY``), only warned about. A running one on a volume that a
    container this plan creates or starts would mount stops the plan: two servers on one data
    folder corrupt it."""
    spec = ctx.spec
    starting = {a.resource for a in actions if a.kind in _STARTS and a.resource in spec.services}
    for stray in sorted((c for c in ctx.observed.containers
                         if c.role is Role.STRAY and c.project == spec.project), key=lambda c: c.name):
        warnings.append(f"container {stray.name} carries this project's labels for service {stray.service} "
                        "but was not made by reconcile: left alone (remove it, or its labels)")
        if stray.state is not State.RUNNING:
            continue
        used = {volume_of(m.source, spec.project) or m.source for m in stray.mounts if m.type == "volume"}
        for name in sorted(starting):
            shared = sorted(used & {m.source for m in spec.services[name].volumes if m.source in spec.volumes})
            if shared:
                raise PlanError(f"container {stray.name} (labelled as service {stray.service}, not made by "
                                f"reconcile) runs on volume {', '.join(shared)}, which the container this plan "
                                f"starts for {name} would mount too", ref="plan.stray-container",
                                hint=f"stop or remove {stray.name} first (two servers on one data folder "
                                     "corrupt it); nothing was changed")


# -- orphans ------------------------------------------------------------------------------

def _orphan_actions(ctx: _Context) -> list[Action]:
    """Containers whose service left the spec; never those of unselected profiles."""
    actions: list[Action] = []
    taken: set[str] = set()
    for container in sorted(ctx.observed.containers, key=lambda c: (c.service or "", c.name)):
        if container.service in ctx.spec.services or container.project != ctx.spec.project:
            continue
        if container.role is Role.STRAY:  # not reconcile's to remove (``_strays`` warns)
            continue
        if ctx.selected and container.profile not in ctx.selected:
            continue
        resource = _orphan_resource(container, taken)
        taken.add(resource)
        common = dict(resource=resource, profile=container.profile, stateful=container.stateful,
                      protected=container.protected, container_id=container.id)
        deps: tuple[str, ...] = ()
        if container.stateful:
            backup = Action(ActionKind.BACKUP, cause="back up the data before the container is removed",
                            **common)
            actions.append(backup)
            deps = (backup.id,)
        actions.append(Action(ActionKind.REMOVE, cause=_orphan_cause(container), depends_on=deps,
                              **common))
    return actions


def _orphan_resource(container: ObservedContainer, taken: set[str]) -> str:
    """The service name for its live container, else the container name (ids stay unique)."""
    if container.service and container.role is Role.CURRENT and container.service not in taken:
        return container.service
    return container.name


def _orphan_cause(container: ObservedContainer) -> str:
    if not container.service:
        return f"container {container.name} has no reconcile.service label"
    if container.role is not Role.CURRENT:
        return (f"{container.role.value} container of service {container.service}, "
                "which is no longer in the spec")
    return f"service {container.service} is no longer in the spec"


# -- services -----------------------------------------------------------------------------

def _service_actions(ctx: _Context, name: str, infra_ids: set[str], last_of: dict[str, str],
                     warnings: list[str]) -> list[Action]:
    """A service's group: leftovers → backup → create/recreate/start → restore → verify, with
    the blue-green parts (traffic switch, proxy, kept versions) added by ``deploy.planning``."""
    service = ctx.spec.services[name]
    removals = leftovers.leftover_actions(ctx.observed, name, service.profile)
    decision = _decide(ctx, name, warnings)
    group: list[Action] = []
    main = None
    if decision is not None:
        main = _main_group(ctx, name, decision, _service_deps(ctx, name, infra_ids, last_of),
                           group, warnings)
    return planning.arrange(ctx.loaded, ctx.observed, name, removals, group, main)


def _main_group(ctx: _Context, name: str, decision: _Decision, deps: list[str], group: list[Action],
                warnings: list[str]) -> Action:
    """Append backup → main → restore → verify to ``group``; returns the main action."""
    service = ctx.spec.services[name]
    current = leftovers.live(ctx.observed, name)
    common = dict(resource=name, profile=service.profile, stateful=service.stateful,
                  protected=service.protect, container_id=current.id if current else None)
    guarded = decision.kind is ActionKind.RECREATE and service.stateful
    if guarded and decision.fresh_cause is None and not service.volumes:
        decision = replace(decision, fresh_cause=NO_VOLUME)
    if guarded:
        cause = "back up the data before the container is replaced"
        if decision.fallback:
            cause = ("back up what can be read; if the server cannot run, the latest verified backup "
                     "is restored instead (changes made since it are lost)")
        group.append(Action(ActionKind.BACKUP, **common, cause=cause, fallback=decision.fallback))
        deps.insert(0, group[0].id)
    if decision.updates:
        group.append(Action(ActionKind.UPDATE, cause=inplace.cause_of(decision.updates),
                            changes=decision.updates, depends_on=tuple(deps), **common))
        deps.append(group[-1].id)
    main = Action(decision.kind, cause=decision.cause, changes=decision.changes,
                  depends_on=tuple(deps), fresh_volume=decision.fresh_cause is not None, **common)
    group.append(main)
    if guarded:
        group.extend(_after_recreate(ctx, name, decision, group[0], main, common))
    elif decision.fresh_cause:
        reason = decision.fresh_cause.split(";")[0]
        warnings.append(f"{name}: {reason}; it is not stateful, so its old data is neither backed up "
                        "nor restored (set stateful: true to keep it)")
    return main


def _service_deps(ctx: _Context, name: str, infra_ids: set[str], last_of: dict[str, str]) -> list[str]:
    """The planned networks and volumes it uses, and the last step of each planned dependency.

    Waiting for a dependency's last step (its verify, after a stateful recreate) is what the
    decision matrix asks: infrastructure is backed up, replaced, restored and verified before
    the app that uses it is touched.
    """
    service = ctx.spec.services[name]
    wanted = [f"{ActionKind.CREATE_NETWORK.value}:{n}" for n in service.networks]
    wanted += [f"{ActionKind.CREATE_VOLUME.value}:{m.source}" for m in service.volumes]
    deps = [i for i in dict.fromkeys(wanted) if i in infra_ids]
    return deps + [last_of[d] for d in sorted(service.depends_on) if d in last_of]


def _after_recreate(ctx: _Context, name: str, decision: _Decision, backup: Action, main: Action,
                    common: dict) -> list[Action]:
    """Restore when the data cannot carry over, then verify. Both act on the new container,
    whose id is not known yet, so they carry none."""
    common = {**common, "container_id": None}
    out = []
    last = main
    if decision.fresh_cause:
        last = Action(ActionKind.RESTORE, cause=decision.fresh_cause, depends_on=(backup.id, main.id),
                      fresh_volume=True, **common)
        out.append(last)
    what = "the restored data" if decision.fresh_cause else "the data after the recreate"
    if ctx.spec.services[name].kind is Kind.POSTGRES:
        what += " (row counts, critical tables)"
    out.append(Action(ActionKind.VERIFY, cause=f"check {what}", depends_on=(last.id,), **common))
    return out


def _decide(ctx: _Context, name: str, warnings: list[str]) -> _Decision | None:
    current = leftovers.live(ctx.observed, name)
    config = ctx.configs[name]
    if current is None:
        return _Decision(ActionKind.CREATE, "new service" + _pull_note(ctx, name))
    if current.spec_hash != config_hash(config):
        return _config_recreate(ctx, name, current, warnings)
    image = ctx.observed.image(str(config["image"]))
    if image is not None and current.image_id and image.id != current.image_id:
        return _rebuilt_recreate(ctx, name, current, image.id, warnings)
    return _decide_same_config(ctx, name, current, warnings)


def _decide_same_config(ctx: _Context, name: str, current: ObservedContainer,
                        warnings: list[str]) -> _Decision | None:
    """Config and image as the spec says: adopt, heal or start it, and converge what was
    changed in place (a recreate only when that cannot be undone in place)."""
    settings = inplace.compare(Views(ctx.loaded, name, current.sensitive), ctx.spec.services[name], current,
                               [n.name for n in ctx.observed.networks])
    if settings.blocked and name not in ctx.unhealthy:
        return _Decision(ActionKind.RECREATE, settings.cause, settings.changes)
    if (by_hand := _ports_set_by_hand(current)) is not None:
        shown = Views(ctx.loaded, name, current.sensitive).scrubbed
        return _Decision(ActionKind.RECREATE, shown(f"published ports of the live container are not the ones it "
                                                    f"was made with (re-run by hand): {by_hand}"))
    if hand_set := _env_set_by_hand(ctx.configs[name], current):
        keys = ", ".join(hand_set)
        return _Decision(ActionKind.RECREATE, f"env {keys} of the live container is not what the spec sets "
                         "(the container was re-run by hand)",
                         tuple(Change(f"env.{key}", SENSITIVE, SENSITIVE) for key in hand_set))
    if current.command_by_hand:
        fields = " and ".join(current.command_by_hand)
        return _Decision(ActionKind.RECREATE, f"{fields} of the live container is not what the spec sets "
                         "(the container was re-run by hand)")
    if current.role is not Role.CURRENT:
        return _Decision(ActionKind.START, leftovers.adopt_cause(current), updates=settings.changes)
    if name in ctx.unhealthy:
        return _unhealthy_recreate(ctx, name, current)
    if current.state in _STOPPED:
        return _Decision(ActionKind.START, _stopped_cause(current), updates=settings.changes)
    if (warning := _health_warning(name, current)) is not None:
        warnings.append(warning)
    if settings.changes:
        return _Decision(ActionKind.UPDATE, settings.cause, settings.changes)
    return None


def _ports_set_by_hand(current: ObservedContainer) -> str | None:
    """What the live container publishes that its own config label does not say, and the
    reverse: a container re-run by hand with its labels copied (``-p 0.0.0.0:…`` for
    ``127.0.0.1:…``) kept its config label, so only its live bindings tell (QA: drift passed a
    database published on every interface). None when they agree, or the label predates ports."""
    made = (current.config or {}).get("ports")
    if not isinstance(made, list):
        return None
    live, wanted = set(current.ports), {str(p) for p in made}
    if live == wanted:
        return None
    parts = ([f"published {', '.join(sorted(live - wanted))}"] if live - wanted else []) + \
        ([f"not published {', '.join(sorted(wanted - live))}"] if wanted - live else [])
    return "; ".join(parts)


def _env_set_by_hand(config: dict, current: ObservedContainer) -> list[str]:
    """Env keys whose value in the running container differs from the spec's (both digests)."""
    wanted = config.get("env") or {}
    return sorted(key for key, seen in (current.env_seen or {}).items() if key in wanted and seen != wanted[key])


UNHEALTHY_CAUSE = "unhealthy: "
"""How the cause of a recreate for an unhealthy service begins: its rollback puts back a container
that was not healthy before either (``apply.rollback``)."""


def _unhealthy_recreate(ctx: _Context, name: str, current: ObservedContainer) -> _Decision:
    """Heal could not fix it in place. A service that runs but stays unhealthy, or that the
    engine cannot start (a deleted network…), keeps its volume: its data is backed up and
    verified as after any recreate. A stateful service whose server crashes on start again
    and again (``_crash_looped``) most likely cannot use its data directory: the new container
    starts on a fresh volume (the old one is kept) and the data is restored, from a backup
    taken now if the server can still be read, else from the latest verified backup
    (``fallback``, said in the backup's cause so the operator sees it before confirming)."""
    cause = f"{UNHEALTHY_CAUSE}{ctx.unhealthy[name]}"
    service = ctx.spec.services[name]
    has_volume = any(not m.is_host_path for m in service.volumes)
    if not (_crash_looped(current) and service.stateful and has_volume
            and service.kind in BACKUPABLE_KINDS):
        return _Decision(ActionKind.RECREATE, cause)
    return _Decision(ActionKind.RECREATE, cause, fallback=True,
                     fresh_cause="it crashes on its data: the new container starts on a fresh "
                                 "volume (the old one is kept); restore from the backup")


def _crash_looped(current: ObservedContainer) -> bool:
    """The server dies on its own, again and again: the engine restarts it (or did, until heal
    stopped the loop). Not a container stopped by a signal or one the engine could not start."""
    return (current.state in _CANNOT_RUN and current.restart_count > 0
            and current.exit_code not in (None, 0))


def _pull_note(ctx: _Context, name: str) -> str:
    ref = str(ctx.configs[name]["image"])
    if ref not in ctx.observed.missing_images:
        return ""
    return f"; image {ctx.loaded.shown(('services', name, 'image'), ref)} will be pulled"


def _config_recreate(ctx: _Context, name: str, current: ObservedContainer,
                     warnings: list[str]) -> _Decision:
    new = ctx.configs[name]
    views = Views(ctx.loaded, name, current.sensitive)
    old = current.config
    changes = tuple(views.change(f, old, new) for f in changed_fields(old, new)) if old else ()
    image = next((c for c in changes if c.field == "image"), None)
    rest = [c.field for c in changes if c.field != "image"]
    parts = []
    if image is not None:
        new_id = ctx.observed.image(str(new["image"]))
        ids = _ids_text(current.image_id, new_id.id if new_id else "")
        parts.append(f"image {image.before} → {image.after}{ids}")
    if rest:
        parts.append(f"{rest[0]} changed" if len(rest) == 1 else f"config changed: {', '.join(rest)}")
    rebuilt = _rebuilt_too(ctx, name, current) if image is None else None
    if rebuilt:
        parts.append(rebuilt)
    if not parts:
        parts.append("spec hash changed (the container carries no readable config label)"
                     if not old else "spec hash changed")
    cause = "; ".join(parts) + _pull_note(ctx, name)
    return _Decision(ActionKind.RECREATE, cause, changes,
                     fresh_cause(ctx, name, current, views, warnings, image is not None or bool(rebuilt)))


def _rebuilt_too(ctx: _Context, name: str, current: ObservedContainer) -> str | None:
    """The same image reference now names another image: a recreate for a config change runs
    that build too, and its cause must say so (QA: a reviewed "env.MODE changed" deployed a
    rebuilt image nobody saw in the plan)."""
    image = ctx.observed.image(str(ctx.configs[name]["image"]))
    if image is None or not current.image_id or image.id == current.image_id:
        return None
    ref = ctx.loaded.shown(("services", name, "image"), ctx.configs[name]["image"])
    return f"image {ref} was rebuilt{_ids_text(current.image_id, image.id)}"


def _rebuilt_recreate(ctx: _Context, name: str, current: ObservedContainer, new_id: str,
                      warnings: list[str]) -> _Decision:
    ref = ctx.loaded.shown(("services", name, "image"), ctx.configs[name]["image"])
    cause = f"image {ref} was rebuilt{_ids_text(current.image_id, new_id)}"
    change = Change("image_id", short_id(current.image_id), short_id(new_id))
    return _Decision(ActionKind.RECREATE, cause, (change,),
                     fresh_cause(ctx, name, current, Views(ctx.loaded, name), warnings, True))


def _ids_text(old: str, new: str) -> str:
    return f" ({short_id(old)} → {short_id(new)})" if old and new and old != new else ""


def _stopped_cause(current: ObservedContainer) -> str:
    if current.state is State.CREATED:
        return "created but never started"
    details = []
    if current.exit_code is not None:
        details.append(f"exited {current.exit_code}")
    if current.oom_killed:
        details.append("OOM-killed")
    word = "dead" if current.state is State.DEAD else "stopped"
    return f"{word} ({', '.join(details)})" if details else word


def _health_warning(name: str, current: ObservedContainer) -> str | None:
    """Running but not well: apply heals it; plan only says so (no action without a cause)."""
    unhealthy = current.state is State.RUNNING and current.health is Health.UNHEALTHY
    if not unhealthy and current.state is State.RUNNING:
        return None
    details = [] if current.state is State.RUNNING else [f"state: {current.state.value}"]
    if current.health is not Health.NONE:
        details.append(f"health: {current.health.value}")
    if current.restart_count:
        details.append(f"{current.restart_count} restart{'s' if current.restart_count != 1 else ''}")
    word = "unhealthy" if unhealthy else current.state.value
    return f"{name} is {word} ({', '.join(details)}): apply will heal it"
