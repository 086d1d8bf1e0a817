"""Small builders: what the engine is asked to create for a network, a volume or a service.

Pure functions returning the keyword arguments of the Docker API calls (Kamal's command
builders), so labels and config are decided in one place and tested without an engine.
"""

from __future__ import annotations

import json

from reconciler.plan.display import sensitive_elements
from reconciler.spec.load import LoadedSpec
from reconciler.spec.models import Port
from reconciler.spec.normalise import (
    LABEL_CONFIG,
    LABEL_GENERATION,
    LABEL_IMAGE_ID,
    LABEL_KIND,
    LABEL_PROFILE,
    LABEL_PROJECT,
    LABEL_PROTECT,
    LABEL_ROLE,
    LABEL_SENSITIVE,
    LABEL_SERVICE,
    LABEL_SPEC_HASH,
    LABEL_STATEFUL,
    LABEL_UPSTREAM,
    LABEL_VOLUME,
    config_hash,
    container_name,
    encode_config,
    network_name,
    normalised_config,
    volume_name,
)


def project_labels(loaded: LoadedSpec) -> dict[str, str]:
    return {LABEL_PROJECT: loaded.spec.project}


def network_args(loaded: LoadedSpec, network: str) -> dict:
    declared = loaded.spec.networks[network]
    return {"name": network_name(loaded.spec, network), "driver": declared.driver,
            "internal": declared.internal, "labels": project_labels(loaded)}


def volume_args(loaded: LoadedSpec, volume: str, name: str | None = None, *,
                generation: str = "", bind: str | None = None) -> dict:
    """A named volume; a ``bind`` volume is a local volume bound to the host folder.

    A fresh generation (``generation`` set, ``name`` its engine name) may get its own host
    folder (``bind``): the old generation's folder stays untouched until the new one is verified.
    """
    declared = loaded.spec.volumes[volume]
    opts = dict(declared.driver_opts)
    folder = bind or declared.bind
    if folder:
        opts.update({"type": "none", "o": "bind", "device": folder})
    labels = {**project_labels(loaded), LABEL_VOLUME: volume}
    if generation:
        labels[LABEL_GENERATION] = generation
    return {"name": name or volume_name(loaded.spec, volume), "driver": declared.driver,
            "driver_opts": opts, "labels": labels}


def service_labels(loaded: LoadedSpec, name: str, image_id: str, role: str = "current") -> dict:
    spec = loaded.spec
    service = spec.services[name]
    config = normalised_config(spec, name)
    labels = {
        **service.labels,
        LABEL_PROJECT: spec.project, LABEL_SERVICE: name, LABEL_PROFILE: service.profile,
        LABEL_SPEC_HASH: config_hash(config), LABEL_CONFIG: encode_config(config),
        LABEL_IMAGE_ID: image_id, LABEL_ROLE: role, LABEL_KIND: service.kind.value,
        LABEL_STATEFUL: str(service.stateful).lower(), LABEL_PROTECT: str(service.protect).lower(),
    }
    if sensitive := sensitive_elements(loaded, name):  # where secrets are, for later plans
        labels[LABEL_SENSITIVE] = json.dumps(sensitive, separators=(",", ":"), sort_keys=True)
    return labels


def published(ports: list[Port]) -> dict[str, list]:
    """``port_bindings`` for the engine: ``{"8000/tcp": [("127.0.0.1", 18080)]}``."""
    bindings: dict[str, list] = {}
    for port in ports:
        key = f"{port.container}/{port.protocol}"
        bindings.setdefault(key, []).append((port.host_ip, port.host) if port.host_ip else port.host)
    return bindings


def container_args(loaded: LoadedSpec, name: str, image_id: str, *, container: str | None = None,
                   role: str = "current", volume_names: dict[str, str] | None = None,
                   upstream: str | None = None) -> dict:
    """``create_container`` arguments.

    ``volume_names`` maps logical volumes to the engine volumes to mount: the generation the
    live container uses (so a later recreate keeps it) or a fresh generation; others get
    the canonical ``<project>_<volume>``. ``upstream`` is the extra network alias a proxy
    forwards to (blue-green over HTTP), also kept as a label; such a container publishes no
    host port: its proxy does.
    """
    spec = loaded.spec
    service = spec.services[name]
    volume_names = volume_names or {}
    binds = []  # a list, not a mapping keyed by source: one volume mounted at two paths keeps both
    for mount in service.volumes:
        source = mount.source if mount.is_host_path else volume_names.get(
            mount.source, volume_name(spec, mount.source))
        binds.append(f"{source}:{mount.target}:{'ro' if mount.read_only else 'rw'}")
    port_bindings = {} if service.proxied else published(service.ports)
    networks = [network_name(spec, n) for n in service.networks]
    host_config = {
        "binds": binds, "port_bindings": port_bindings,
        "restart_policy": {"Name": service.restart} if service.restart != "no" else None,
        "mem_limit": service.mem_limit, "init": False,
    }
    labels = service_labels(loaded, name, image_id, role)
    if upstream:
        labels[LABEL_UPSTREAM] = upstream
    return {
        "image": service.image, "name": container or container_name(spec, name),
        "command": service.command, "entrypoint": service.entrypoint,
        "environment": {k: v.get_secret_value() for k, v in service.env.items()},
        "user": service.user, "labels": labels,
        "ports": [(p.container, p.protocol) for p in service.ports],
        "host_config": host_config, "networks": networks, "aliases": [name, *filter(None, [upstream])],
    }
