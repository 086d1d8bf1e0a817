"""What a plan does for blue-green services: the traffic switch, the proxy, kept versions.

Called by the planner for every service, after it has decided the service's own actions
(``arrange``); pure, like the planner. For a service that is not blue-green and has no
proxy or kept containers, the actions come back unchanged, so plans of other stacks are
exactly what they were.

For a blue-green service behind a proxy (``health.http``), the plan reads::

    ~ recreate        api  image app:1 → app:2
    = switch-traffic  api  point lab-api-proxy at the new container, drain 2s, stop the old one …
    - remove          lab-api-kept-1a2b3c  older version of api (only the last 2 are kept …)

``switch-traffic`` also stands alone when the proxy is missing, stopped, changed, or serves
a container other than the live one (an interrupted apply, a hand edit). Leftovers of an
interrupted swap are removed after the switch, since the proxy may still be serving one.
"""

from __future__ import annotations

from dataclasses import replace

from reconciler.deploy import rules
from reconciler.observe.models import Observed, ObservedContainer
from reconciler.plan import leftovers
from reconciler.plan.actions import Action, ActionKind
from reconciler.spec.durations import format_duration
from reconciler.spec.load import LoadedSpec
from reconciler.spec.models import Service

_STARTS_NEW = frozenset({ActionKind.CREATE, ActionKind.RECREATE})


def arrange(loaded: LoadedSpec, observed: Observed, name: str, removals: list[Action],
            group: list[Action], main: Action | None) -> list[Action]:
    """The service's whole group: ``removals`` are its leftovers, ``group`` its backup →
    main → restore → verify as the planner made them, ``main`` the main action in it."""
    service = loaded.spec.services[name]
    before = _drop_proxy(loaded, observed, name)
    if main is not None:
        group = [_main(service, a, before) if a is main else a for a in group]
        main = next(a for a in group if a.id == main.id)
    switch = _switch(loaded, observed, name, main) if service.proxied else None
    replaces = main is not None and main.kind is ActionKind.RECREATE and rules.blue_green(service)
    retiring = leftovers.live(observed, name) if replaces else None
    last = switch or main
    prunes = [_prune(c, name, service, last) for c in rules.to_prune(observed, service, name, retiring)]
    if switch is None:
        return [*removals, *before, *group, *prunes]
    after = [replace(a, depends_on=(*a.depends_on, switch.id)) for a in removals]
    return [*before, *group, switch, *after, *prunes]


def _drop_proxy(loaded: LoadedSpec, observed: Observed, name: str) -> list[Action]:
    """A proxy left from when the service was blue-green over HTTP: its ports go back to
    the service's own container, which can only bind them once the proxy is gone."""
    proxy = rules.proxy_of(observed, name)
    if proxy is None or loaded.spec.services[name].proxied:
        return []
    return [Action(ActionKind.REMOVE, proxy.name, profile=proxy.profile, container_id=proxy.id,
                   cause=f"{name} no longer runs behind a proxy: its ports move back to its container")]


def _main(service: Service, main: Action, before: list[Action]) -> Action:
    """The main action, told how it deploys and made to wait for a proxy removal."""
    cause = main.cause
    if main.kind is ActionKind.RECREATE and rules.blue_green(service) and not service.proxied:
        cause += "; blue-green: the new container starts and is ready before the old one stops"
        if rules.keep_limit(service):
            cause += " (the old one is kept for rollback)"
    deps = (*main.depends_on, *(a.id for a in before))
    return replace(main, cause=cause, depends_on=deps)


def _switch(loaded: LoadedSpec, observed: Observed, name: str, main: Action | None) -> Action | None:
    service = loaded.spec.services[name]
    proxy = rules.proxy_of(observed, name)
    pname = rules.proxy_container_name(loaded, name)
    parts = _proxy_parts(loaded, name, proxy, pname)
    live = leftovers.live(observed, name)
    if main is not None and main.kind in _STARTS_NEW:
        deploy = _deploy_part(service, main, pname, live)
        parts = [*parts, deploy] if main.kind is ActionKind.CREATE else [deploy, *parts]
    elif live is not None and proxy is not None and not parts and proxy.upstream != live.id:
        parts.append(f"{pname} serves {_served(observed, proxy)}, not {live.name}: point it at {live.name}")
    elif parts and live is not None:
        parts.append(f"serving {live.name}")
    if not parts:
        return None
    deps = (main.id,) if main is not None else ()
    return Action(ActionKind.SWITCH_TRAFFIC, name, "; ".join(parts), depends_on=deps,
                  profile=service.profile, container_id=proxy.id if proxy else None)


def _deploy_part(service: Service, main: Action, pname: str, live: ObservedContainer | None) -> str:
    if main.kind is ActionKind.CREATE or live is None:
        return "serving the new container"
    text = (f"point {pname} at the new container, drain {format_duration(service.deploy.drain)}, "
            "stop the old one")
    if live.ports:
        text += (" (first blue-green deploy: its host ports move to the proxy, so the old "
                 "container stops before the proxy starts: a short gap)")
    return text + (" (kept for rollback)" if rules.keep_limit(service) else "")


def _proxy_parts(loaded: LoadedSpec, name: str, proxy: ObservedContainer | None, pname: str) -> list[str]:
    """What must happen to the proxy container itself, in words (empty: nothing)."""
    if proxy is None:
        image = loaded.shown(("services", name, "deploy", "proxy_image"),
                             loaded.spec.services[name].deploy.proxy_image)
        return [f"create proxy {pname} ({image}) publishing {_ports(loaded, name)}"]
    if proxy.spec_hash != rules.proxy_hash(loaded, name):
        want = rules.proxy_config(loaded, name)
        changed = sorted(k for k in want if (proxy.config or {}).get(k) != want[k])
        what = ", ".join(changed) if proxy.config else "its config"
        return [f"recreate proxy {pname}: {what} changed (the old one serves until the new one does; "
                "a short gap only on a host port they share)"]
    if not proxy.running:
        return [f"start proxy {pname} ({proxy.state.value})"]
    return []


def _ports(loaded: LoadedSpec, name: str) -> str:
    ports = loaded.spec.services[name].ports
    shown = [loaded.shown(("services", name, "ports", i), str(p)) for i, p in enumerate(ports)]
    return ", ".join(shown) or "no port"


def _served(observed: Observed, proxy: ObservedContainer) -> str:
    if proxy.upstream is None:
        return "an unknown container"
    found = next((c for c in observed.containers if c.id == proxy.upstream), None)
    return found.name if found else f"a container that is gone ({proxy.upstream[:12]})"


def _prune(container: ObservedContainer, name: str, service: Service, last: Action | None) -> Action:
    limit = rules.keep_limit(service)
    why = (f"only the last {limit} versions are kept for `reconcile rollback`" if limit
           else "only blue-green services keep older versions")
    return Action(ActionKind.REMOVE, container.name, profile=container.profile,
                  container_id=container.id, depends_on=(last.id,) if last else (),
                  cause=f"older version of {name}: {why}")
