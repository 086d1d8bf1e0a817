"""Pure rules of blue-green deploys: names, the proxy's desired container, kept versions.

No engine here: the planner (through ``planning``) and the executor (``bluegreen``,
``proxy``) both read these, so what a plan promises and what apply does cannot disagree.

* A service's containers are told apart by name (``reconciler.spec.normalise``): the live
  ``<p>-<s>``, a swap's ``-old-<t>``/``-new-<t>``, older versions kept stopped for
  ``reconcile rollback`` as ``-kept-<t>``, and the proxy ``<p>-<s>-proxy``.
* Kept versions are ordered by when they were retired (the engine's ``FinishedAt``: when
  the version stopped serving; then ``Created``, when it was deployed). ``rollback`` brings
  back the most recent one that differs from the live version, and a deploy keeps the
  newest ``KEEP_VERSIONS`` distinct versions (same image and config = same version).
"""

from __future__ import annotations

import re
from pathlib import Path

from reconciler.apply.builders import published
from reconciler.deploy.nginx import CONF_DIR
from reconciler.observe.models import Observed, ObservedContainer, Role
from reconciler.spec.load import LoadedSpec
from reconciler.spec.models import Kind, Service, Strategy
from reconciler.spec.normalise import (
    KEPT_MARK,
    LABEL_CONFIG,
    LABEL_IMAGE_ID,
    LABEL_PROFILE,
    LABEL_PROJECT,
    LABEL_ROLE,
    LABEL_SERVICE,
    LABEL_SPEC_HASH,
    config_hash,
    container_name,
    encode_config,
    network_name,
    proxy_name,
    swap_name,
)

KEEP_VERSIONS = 2
PROXY_FOLDER = "proxy"
_TIME = re.compile(r"^(?P<head>[^.Z+]+)(?:\.(?P<frac>\d+))?")


def blue_green(service: Service) -> bool:
    return service.deploy.strategy is Strategy.BLUE_GREEN


def keep_limit(service: Service) -> int:
    """How many older versions stay stopped: only blue-green services can switch back."""
    return KEEP_VERSIONS if blue_green(service) else 0


def kept_name(project: str, service: str, token: str) -> str:
    return swap_name(project, service, KEPT_MARK, token)


def upstream_alias(service: str, token: str) -> str:
    """The network alias the proxy forwards to: fixed at creation, unlike the container name."""
    return f"{service}-{token}"


def config_folder(loaded: LoadedSpec, service: str) -> Path:
    """The host folder bind-mounted as the proxy's ``conf.d`` (a folder, not a file: an
    atomic rename of a bind-mounted FILE would leave the container on the old inode)."""
    return loaded.state_dir() / PROXY_FOLDER / service


def proxy_config(loaded: LoadedSpec, service: str) -> dict[str, object]:
    """What the proxy container must look like; a change means recreating the proxy."""
    spec = loaded.spec
    declared = spec.services[service]
    return {
        "image": declared.deploy.proxy_image,
        "ports": sorted(str(p) for p in declared.ports),
        "networks": sorted(network_name(spec, n) for n in declared.networks),
        "config_folder": str(config_folder(loaded, service)),
        "restart": declared.restart,
    }


def proxy_hash(loaded: LoadedSpec, service: str) -> str:
    return config_hash(proxy_config(loaded, service))


def proxy_of(observed: Observed, service: str) -> ObservedContainer | None:
    return next((c for c in observed.containers if c.service == service
                 and c.project == observed.project and c.role is Role.PROXY), None)


def kept(observed: Observed, service: str) -> list[ObservedContainer]:
    """The service's kept versions, the most recently retired (stopped) first."""
    mine = [c for c in observed.containers if c.service == service
            and c.project == observed.project and c.role is Role.KEPT]
    return sorted(mine, key=lambda c: (time_key(c.finished_at), time_key(c.created_at), c.name),
                  reverse=True)


def version(container: ObservedContainer) -> tuple[str, str]:
    """Two containers of one service are the same version when image and config are equal."""
    return (container.image_id, container.spec_hash or container.name)


def to_prune(observed: Observed, service: Service, name: str,
             retiring: ObservedContainer | None) -> list[ObservedContainer]:
    """Kept containers beyond the newest ``keep_limit`` distinct versions; ``retiring`` (the
    live one, when the plan replaces it) is about to become the newest of them. Computed
    the same way after the apply, so the next plan prunes nothing more."""
    budget = keep_limit(service)
    seen: set[tuple[str, str]] = set()
    if retiring is not None and budget:
        seen.add(version(retiring))
        budget -= 1
    out = []
    for container in kept(observed, name):
        if budget > 0 and version(container) not in seen:
            seen.add(version(container))
            budget -= 1
        else:
            out.append(container)
    return out


def rollback_target(observed: Observed, name: str, live: ObservedContainer) -> ObservedContainer | None:
    """The most recently retired kept version that differs from the live one."""
    return next((c for c in kept(observed, name) if version(c) != version(live)), None)


def time_key(stamp: str | None) -> str:
    """Engine times (RFC 3339 with 0–9 fraction digits) as text that sorts in time order."""
    match = _TIME.match(stamp or "")
    if not match:
        return ""
    return f"{match['head']}.{(match['frac'] or '').ljust(9, '0')}"


def live_name(loaded: LoadedSpec, service: str) -> str:
    return container_name(loaded.spec, service)


def proxy_container_name(loaded: LoadedSpec, service: str) -> str:
    return proxy_name(loaded.spec.project, service)


def proxy_args(loaded: LoadedSpec, service: str, image_id: str) -> dict:
    """``create_container`` arguments of the proxy (the same shape as ``builders.container_args``).

    Its config folder is mounted read-only; the image's own health check is switched off,
    because the proxy's health is whether it serves the upstream apply expects, which apply
    checks through the control server (``nginx.CONTROL_PATH``).
    """
    spec = loaded.spec
    declared = spec.services[service]
    config = proxy_config(loaded, service)
    labels = {LABEL_PROJECT: spec.project, LABEL_SERVICE: service, LABEL_PROFILE: declared.profile,
              LABEL_ROLE: "proxy", LABEL_SPEC_HASH: config_hash(config),
              LABEL_CONFIG: encode_config(config), LABEL_IMAGE_ID: image_id}
    host_config = {
        "binds": {str(config_folder(loaded, service)): {"bind": CONF_DIR, "mode": "ro"}},
        "port_bindings": published(declared.ports),
        "restart_policy": {"Name": declared.restart} if declared.restart != "no" else None,
        "mem_limit": None, "init": False,
    }
    return {"image": declared.deploy.proxy_image, "name": proxy_name(spec.project, service),
            "command": None, "entrypoint": None, "environment": {}, "user": None, "labels": labels,
            "ports": [(p.container, p.protocol) for p in declared.ports], "host_config": host_config,
            "networks": [network_name(spec, n) for n in declared.networks], "aliases": [],
            "healthcheck": {"test": ["NONE"]}}


def needs_readiness_delay(service: Service, state: dict) -> bool:
    """No probe of its own (HTTP check, or a database kind) and no Docker health check:
    "running" is all we can see, so the new container must stay running for
    ``readiness_delay`` before the old one stops."""
    if service.health.http is not None or service.kind in (Kind.POSTGRES, Kind.REDIS):
        return False
    return not (state.get("Health") or {}).get("Status")
