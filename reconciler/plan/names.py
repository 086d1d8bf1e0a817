"""Names the plan would give a container that a container reconcile did not make already holds.

A service's container is named ``<project>-<service>`` (its proxy ``<project>-<service>-proxy``).
When someone ran ``docker run --name <project>-<service> …`` by hand, or another tool or project
left a container under that name, the engine refuses the create with a Conflict: apply would
stop midway, after the steps before it had run. The snapshot lists such containers
(``Observed.name_holders``: no reconcile labels, or another project's), and a container labelled
as another of the project's services but not named as reconcile names them (``Role.STRAY``) holds
a name just as well; each one in the way is a ``Blocker`` of the plan, shown with it, and apply
refuses the plan before it changes anything. Pure, like the planner.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from reconciler.deploy import rules
from reconciler.observe.models import Observed, Role
from reconciler.plan.actions import Action, ActionKind, Blocker
from reconciler.plan.display import short_id
from reconciler.spec.load import LoadedSpec
from reconciler.spec.normalise import container_name

REF = "plan.name-taken"
_CREATES = frozenset({ActionKind.CREATE})
_RENAMES = frozenset({ActionKind.RECREATE, ActionKind.START})
"""A recreate or start of a service whose live container is not under its name (an interrupted
apply's ``-old-``/``-new-`` one) ends by renaming a container to it."""


@dataclass(frozen=True)
class _Holder:
    id: str
    image: str
    state: str
    why: str


def blockers(loaded: LoadedSpec, observed: Observed, actions: Iterable[Action]) -> tuple[Blocker, ...]:
    """One ``Blocker`` per service and name it needs that a container reconcile did not make holds."""
    found: dict[tuple[str, str], Blocker] = {}
    for action in actions:
        if action.resource not in loaded.spec.services:
            continue
        target = _target(loaded, observed, action)
        if target is None:
            continue
        name, what = target
        holder = _holder(observed, name)
        if holder is not None and (action.resource, name) not in found:
            found[(action.resource, name)] = _blocker(loaded, action.resource, name, what, holder)
    return tuple(found.values())


def _target(loaded: LoadedSpec, observed: Observed, action: Action) -> tuple[str, str] | None:
    """The name ``action`` gives a container and what the plan says it does with it; None when
    the action names none (or only one with a fresh random token, which nothing holds)."""
    service = action.resource
    if action.kind in _CREATES:
        return container_name(loaded.spec, service), f"apply cannot create the container of {service}"
    if action.kind in _RENAMES:
        return container_name(loaded.spec, service), f"apply cannot give the container of {service} its name"
    if action.kind is ActionKind.SWITCH_TRAFFIC and rules.proxy_of(observed, service) is None:
        return rules.proxy_container_name(loaded, service), f"apply cannot create the proxy of {service}"
    return None


def _holder(observed: Observed, name: str) -> _Holder | None:
    foreign = observed.name_holder(name)
    if foreign is not None:
        why = (f"it belongs to reconcile project {foreign.project}" if foreign.project
               else "it has no reconcile labels")
        return _Holder(foreign.id, foreign.image, foreign.state, why)
    stray = next((c for c in observed.containers if c.name == name and c.role is Role.STRAY), None)
    if stray is not None:
        return _Holder(stray.id, stray.image_ref, stray.state.value,
                       f"it carries this project's labels for service {stray.service}")
    return None


def _blocker(loaded: LoadedSpec, service: str, name: str, what: str, holder: _Holder) -> Blocker:
    seen = f"{short_id(holder.id)} (image {holder.image or '?'}, {holder.state or '?'})"
    return Blocker(
        resource=service, ref=REF,
        message=f"{service}: the name {name} is taken by container {seen}, which reconcile did not make "
                f"({holder.why}): {what}",
        hint=f"look at it (docker inspect {name}); keep it under another name (docker rename {name} "
             f"{name}-by-hand) or, if it is not needed, remove it (docker rm -f {name}), then plan again; or "
             f"give the service another name in the spec (its container is named "
             f"{loaded.spec.project}-<service>)")
