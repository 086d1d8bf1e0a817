"""The networks a plan creates, and those in the engine that stand in its way (pure; part of the planner).

A network is created once and never changed: Docker cannot change a network's driver or
``internal`` flag, and removing one takes every container off it. So a network of the spec
that exists but is not as the spec says (``internal: true`` added to a network made open) is a
blocking issue of the plan, not a silent "no changes": a network the spec makes internal to
keep a database off the outside world must not be reported converged while it is not. A
network under the name apply would create that reconcile did not make (``docker network
create`` by hand, another project's) blocks the plan too, as a container under a service's
name does (``plan.names``): the engine would refuse the create halfway through an apply.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from reconciler.observe.models import Observed, ObservedNetwork
from reconciler.plan.actions import Action, ActionKind, Blocker
from reconciler.plan.display import short_id
from reconciler.spec.load import LoadedSpec
from reconciler.spec.models import NetworkSpec, Spec
from reconciler.spec.normalise import network_name

TAKEN = "plan.network-taken"
DIFFERS = "plan.network-differs"
WHOLE_PLAN = frozenset({DIFFERS})
"""Blockers that stop the whole plan: no action of it concerns the network, which stays as it is."""


def used(spec: Spec, scope: Collection[str]) -> list[str]:
    """The declared networks the services in scope join, by name."""
    return sorted({n for s in scope for n in spec.services[s].networks})


def network_actions(spec: Spec, observed: Observed, scope: Collection[str]) -> list[Action]:
    """A create for each network of the services in scope that the engine lacks, or that only a
    network reconcile did not make is named as (the create is blocked: ``network_blockers``)."""
    return [Action(ActionKind.CREATE_NETWORK, net, f"new network {network_name(spec, net)}")
            for net in used(spec, scope) if not _ours(spec, observed.network(network_name(spec, net)))]


def _ours(spec: Spec, live: ObservedNetwork | None) -> bool:
    return live is not None and live.project == spec.project


def network_blockers(loaded: LoadedSpec, observed: Observed, scope: Collection[str]) -> tuple[Blocker, ...]:
    """One ``Blocker`` per network of the services in scope that is not the project's, or not as the spec says."""
    spec, found = loaded.spec, []
    for net in used(spec, scope):
        live = observed.network(network_name(spec, net))
        if live is None:
            continue
        if live.project != spec.project:
            found.append(_taken(spec, net, live))
        elif differences := _differences(spec.networks[net], live, lambda key, value: loaded.shown(
                ("networks", net, key), value)):
            found.append(_differs(spec, net, differences))
    return tuple(found)


def leftover_warnings(spec: Spec, observed: Observed) -> list[str]:
    """The project's networks the spec no longer declares (renamed or removed): apply leaves them
    (it removes no network), so the plan says so rather than let them linger unseen."""
    declared = {network_name(spec, n) for n in spec.networks}
    return [f"network {live.name} is no longer in the spec: apply leaves it (remove it with docker network rm "
            f"{live.name} once no container is on it)"
            for live in sorted(observed.networks, key=lambda n: n.name)
            if live.project == spec.project and live.name not in declared]


def _differences(declared: NetworkSpec, live: ObservedNetwork, shown: Callable[[str, object], str]) -> list[str]:
    """What differs, the spec's side as ``shown`` (an interpolated driver reads ``(sensitive)``, as
    everywhere in a plan: QA, it reached drift's JSON, its webhook and apply's error as it resolved)."""
    out = []
    if live.driver and live.driver != declared.driver:
        out.append(f"driver {live.driver} → {shown('driver', declared.driver)}")
    if live.internal != declared.internal:
        out.append(f"internal {str(live.internal).lower()} → {shown('internal', str(declared.internal).lower())}")
    return out


def _taken(spec: Spec, net: str, live: ObservedNetwork) -> Blocker:
    engine = network_name(spec, net)
    why = f"it belongs to reconcile project {live.project}" if live.project else "it has no reconcile labels"
    return Blocker(
        resource=net, ref=TAKEN,
        message=f"network {net}: the name {engine} is taken by network {short_id(live.id)} (driver {live.driver}), "
                f"which reconcile did not make ({why}): apply cannot create the network",
        hint=f"look at it (docker network inspect {engine}); if it is not needed, remove it (docker network rm "
             f"{engine}), then plan again; or give the network another name in the spec")


def _differs(spec: Spec, net: str, differences: list[str]) -> Blocker:
    engine = network_name(spec, net)
    return Blocker(
        resource=net, ref=DIFFERS,
        message=f"network {net}: {engine} is not as the spec says ({', '.join(differences)}), and apply does "
                "not change a network that exists",
        hint=f"stop the containers on it (docker network inspect {engine} names them) and remove it (docker "
             f"network rm {engine}), then apply: it creates the network as the spec says, reconnects them "
             "and starts them")
