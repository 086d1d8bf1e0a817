"""The canonical form of a service's container config, its hash, and the label names.

Docker is the state store (DESIGN.md principle 3): every container reconcile makes carries
these labels. The hash covers only fields that must force a recreate; depends_on, profile,
health, deploy, backup, stateful and protect can change without touching the container.
Env values are stored as salted digests so the config label never holds a secret.
"""

from __future__ import annotations

import hashlib
import json

from reconciler.spec.models import Service, Spec

LABEL_PROJECT = "reconcile.project"
LABEL_SERVICE = "reconcile.service"
LABEL_PROFILE = "reconcile.profile"
LABEL_SPEC_HASH = "reconcile.spec-hash"
LABEL_CONFIG = "reconcile.config"
LABEL_IMAGE_ID = "reconcile.image-id"
LABEL_ROLE = "reconcile.role"
LABEL_KIND = "reconcile.kind"
LABEL_STATEFUL = "reconcile.stateful"
LABEL_PROTECT = "reconcile.protect"


def volume_name(spec: Spec, volume: str) -> str:
    """The engine's name for a declared volume (Compose's ``project_volume``)."""
    return f"{spec.project}_{volume}"


def network_name(spec: Spec, network: str) -> str:
    return f"{spec.project}_{network}"


def container_name(spec: Spec, service: str) -> str:
    return f"{spec.project}-{service}"


def _env_digest(spec: Spec, service: str, key: str, value: str) -> str:
    salted = f"{spec.project}/{service}/{key}={value}".encode()
    return "sha256:" + hashlib.sha256(salted).hexdigest()[:16]


def normalised_config(spec: Spec, name: str) -> dict[str, object]:
    """What the container must look like; equal configs mean no recreate."""
    service: Service = spec.services[name]
    volumes = []
    for mount in service.volumes:
        entry: dict[str, object] = {"target": mount.target, "read_only": mount.read_only}
        if mount.is_host_path:
            entry["source"] = mount.source
        else:
            declared = spec.volumes[mount.source]
            entry["source"] = volume_name(spec, mount.source)
            entry["definition"] = declared.model_dump(mode="json")
        volumes.append(entry)
    return {
        "image": service.image,
        "command": service.command,
        "entrypoint": service.entrypoint,
        "env": {k: _env_digest(spec, name, k, v.get_secret_value())
                for k, v in sorted(service.env.items())},
        "volumes": volumes,
        "networks": sorted(network_name(spec, n) for n in service.networks),
        "ports": sorted(str(p) for p in service.ports),
        "restart": service.restart,
        "user": service.user,
        "mem_limit": service.mem_limit,
        "labels": dict(sorted(service.labels.items())),
    }


def config_hash(config: dict[str, object]) -> str:
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def encode_config(config: dict[str, object]) -> str:
    return json.dumps(config, sort_keys=True, separators=(",", ":"))
