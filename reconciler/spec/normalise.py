"""The canonical form of a service's container config, its hash, and the label names.

Docker is the state store (DESIGN.md principle 3): every container reconcile makes carries
these labels. The hash covers only fields that must force a recreate; depends_on, profile,
health, deploy, backup, stateful and protect can change without touching the container,
except that a blue-green HTTP service's ports belong to its proxy (its container publishes
none), so switching to or from that mode changes the container's ``ports``.
Env values are stored as salted digests so the config label never holds a secret.
Declared volumes are named by their LOGICAL name plus definition, not the engine name: after
a fresh-volume recreate the container mounts a new generation (``<project>_<vol>-<token>``)
of the same logical volume, and that must not read as a config change.
"""

from __future__ import annotations

import hashlib
import json
import re

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
LABEL_VOLUME = "reconcile.volume"
LABEL_GENERATION = "reconcile.generation"
LABEL_UPSTREAM = "reconcile.upstream"
LABEL_SENSITIVE = "reconcile.sensitive"  # which config elements were interpolated (plan/display)

CANDIDATE_MARK = "new"
PREVIOUS_MARK = "old"
KEPT_MARK = "kept"
PROXY_SUFFIX = "proxy"
_TOKEN = re.compile(r"^[0-9a-f]{6}$")


def volume_name(spec: Spec, volume: str) -> str:
    """The engine's name for a declared volume (Compose's ``project_volume``)."""
    return f"{spec.project}_{volume}"


def network_name(spec: Spec, network: str) -> str:
    return f"{spec.project}_{network}"


def container_name(spec: Spec, service: str) -> str:
    return f"{spec.project}-{service}"


def swap_name(project: str, service: str, mark: str, token: str) -> str:
    """``<project>-<service>-new-<token>`` (candidate) or ``-old-<token>`` (previous).

    Container roles are told by NAME, not by label, because labels cannot change after a
    container is made while a rename is one atomic engine call: a swap can be interrupted
    at any point and the names alone still say which container is which.
    """
    return f"{project}-{service}-{mark}-{token}"


def proxy_name(project: str, service: str) -> str:
    """``<project>-<service>-proxy``: the proxy in front of a blue-green HTTP service."""
    return f"{project}-{service}-{PROXY_SUFFIX}"


def role_from_name(name: str, project: str, service: str | None) -> str | None:
    """``current``, ``candidate``, ``previous``, ``kept`` or ``proxy`` when ``name`` follows the
    naming rule, else None. ``kept`` (``-kept-<token>``) is an older version kept stopped for
    ``reconcile rollback``; unlike ``previous`` it is not a leftover of an interrupted apply."""
    if not service or not project:
        return None
    base = f"{project}-{service}"
    if name == base:
        return "current"
    if name == proxy_name(project, service):
        return "proxy"
    head, _, token = name.rpartition("-")
    if not _TOKEN.match(token):
        return None
    if head == f"{base}-{CANDIDATE_MARK}":
        return "candidate"
    if head == f"{base}-{PREVIOUS_MARK}":
        return "previous"
    if head == f"{base}-{KEPT_MARK}":
        return "kept"
    return None


def generation_name(spec: Spec, volume: str, token: str) -> str:
    """A fresh generation of a declared volume: ``<project>_<volume>-<token>``."""
    return f"{volume_name(spec, volume)}-{token}"


def volume_of(engine_name: str, project: str) -> str | None:
    """The logical volume an engine volume name is a generation of (or the canonical one)."""
    prefix = f"{project}_"
    if not engine_name.startswith(prefix):
        return None
    rest = engine_name[len(prefix):]
    head, sep, token = rest.rpartition("-")
    return head if sep and _TOKEN.match(token) else rest


def _env_digest(spec: Spec, service: str, key: str, value: str) -> str:
    return env_digest(spec.project, service, key, value)


def env_digest(project: str, service: str, key: str, value: str) -> str:
    """What a container's config label keeps of an env value: a salted digest, never the value."""
    salted = f"{project}/{service}/{key}={value}".encode()
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
            entry["source"] = mount.source  # logical: the engine volume may be a generation
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
        "ports": [] if service.proxied else sorted(str(p) for p in service.ports),
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
