"""Dependencies outside the selected profiles (pure; part of the planner).

``plan --profile app`` acts only on the app, but apply still checks each ``depends_on`` of a
service it creates, recreates or starts (``apply.gate``): a dependency of another profile that
has no container, or whose container is stopped, makes that step fail. The plan cannot start it
(it is not selected), so it says so, rather than show a plan that apply then fails halfway
(QA: "1 to recreate", then exit 2 on "worker depends on cache being healthy").
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from reconciler.observe.models import Observed, State
from reconciler.plan import leftovers
from reconciler.plan.actions import Action, ActionKind
from reconciler.spec.models import Spec

_GATED = frozenset({ActionKind.CREATE, ActionKind.RECREATE, ActionKind.START})
_DOWN = frozenset({State.CREATED, State.EXITED, State.DEAD})


def dependency_warnings(spec: Spec, observed: Observed, scope: Collection[str],
                        actions: Iterable[Action]) -> list[str]:
    """One warning per gated service and dependency of an unselected profile that is not running."""
    gated = sorted({a.resource for a in actions if a.kind in _GATED and a.resource in spec.services})
    warnings = []
    for name in gated:
        for dependency in sorted(spec.services[name].depends_on):
            if dependency in scope:
                continue
            if (state := _down(observed, dependency)) is not None:
                profile = spec.services[dependency].profile
                warnings.append(f"{name} depends on {dependency} (profile {profile}, not selected), which {state}: "
                                f"apply will stop at {name}; apply profile {profile} first")
    return warnings


def _down(observed: Observed, service: str) -> str | None:
    """How the service is not running, or None when it runs (or is restarting: it may come up)."""
    box = leftovers.live(observed, service)
    if box is None:
        return "has no container"
    if box.state in _DOWN:
        return f"is not running ({box.state.value})"
    return None
