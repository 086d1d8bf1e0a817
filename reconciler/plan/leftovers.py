"""Containers an interrupted apply left behind, and which container of a service is "live".

A swap (``reconciler.apply.swap``) renames the old container to ``<project>-<service>-old-<t>``
(previous) and makes the new one as ``<project>-<service>-new-<t>`` (candidate); only when
the candidate is healthy (and, for stateful services, verified) is it renamed to the
canonical ``<project>-<service>``. A ``kill -9`` can stop that at any point. The rules that
make the next plan converge, whatever the point:

1. The **live** container of a service is the canonical one; with none, the newest
   previous (it still has the old, untouched data: its volume was never written by anything
   but itself, or a candidate on the same data); with neither, the newest candidate (a
   stateless swap killed after the old one was removed).
2. Every other previous/candidate container of the service is a **leftover** and is removed
   first, before the service's own actions. Removing a container never removes a volume: a
   fresh volume generation a killed candidate was restoring into is kept and listed as
   unused in the apply summary (remove it by hand). So a leftover removal needs no backup
   and is not blocked by ``protect`` (which guards the service, here the live container).
3. A live container that is not canonically named is **adopted**: when its config matches
   the spec, a ``start`` renames it to the canonical name and starts it if needed; when it
   does not, the normal recreate runs from it (the old container is already "previous").
4. **Kept** versions (``-kept-<t>``, stopped older versions of a blue-green service) and a
   service's **proxy** (``-proxy``) are never leftovers: ``reconciler.deploy.planning``
   decides about them (prune beyond the last 2, recreate or repoint the proxy). For a
   blue-green service behind a proxy, leftovers are removed only after the proxy has been
   pointed at the live container, because an interrupted switch can leave the proxy serving
   one of them.
"""

from __future__ import annotations

from reconciler.observe.models import Observed, ObservedContainer, Role
from reconciler.plan.actions import Action, ActionKind

_SWAP_ROLES = frozenset({Role.PREVIOUS, Role.CANDIDATE})


def _newest(containers: list[ObservedContainer]) -> ObservedContainer | None:
    return max(containers, key=lambda c: (c.started_at or "", c.name), default=None)


def live(observed: Observed, service: str) -> ObservedContainer | None:
    """The container that holds the service right now (rule 1)."""
    mine = [c for c in observed.containers if c.service == service and c.project == observed.project]
    for role in (Role.CURRENT, Role.PREVIOUS, Role.CANDIDATE):
        found = _newest([c for c in mine if c.role is role])
        if found is not None:
            return found
    return None


def leftovers(observed: Observed, service: str) -> list[ObservedContainer]:
    """Previous/candidate containers of the service other than the live one (rule 2)."""
    keep = live(observed, service)
    return sorted((c for c in observed.containers
                   if c.service == service and c.project == observed.project
                   and c.role in _SWAP_ROLES and c != keep), key=lambda c: c.name)


def leftover_actions(observed: Observed, service: str, profile: str | None) -> list[Action]:
    return [Action(ActionKind.REMOVE, c.name, _leftover_cause(c, service), profile=profile,
                   container_id=c.id) for c in leftovers(observed, service)]


def _leftover_cause(container: ObservedContainer, service: str) -> str:
    return (f"{container.role.value} container of {service} left by an interrupted apply "
            "(its volumes are kept)")


def adopt_cause(container: ObservedContainer) -> str:
    """Why a live but not canonically named container gets a ``start`` (rule 3)."""
    again = " again" if container.role is Role.PREVIOUS else ""
    return (f"{container.role.value} container {container.name} becomes the live one{again} "
            "(an apply was interrupted)")
