"""Take one read-only snapshot of the engine for a project (the only reader of Docker state)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from reconciler.observe.codec import sensitive_map
from reconciler.observe.models import (
    Health,
    NameHolder,
    Observed,
    ObservedContainer,
    ObservedImage,
    ObservedMount,
    ObservedNetwork,
    ObservedVolume,
    Role,
    State,
)
from reconciler.spec.normalise import (
    LABEL_CONFIG,
    LABEL_KIND,
    LABEL_PROFILE,
    LABEL_PROJECT,
    LABEL_PROTECT,
    LABEL_ROLE,
    LABEL_SENSITIVE,
    LABEL_SERVICE,
    LABEL_SPEC_HASH,
    LABEL_STATEFUL,
    env_digest,
    role_from_name,
)


def observe(client, project: str, image_refs: Iterable[str] = ()) -> Observed:
    """Containers, networks and volumes labelled with ``project``, plus the spec's images."""
    from reconciler import dockerio

    return from_raw(project, dockerio.project_snapshot(client, project, image_refs))


def from_raw(project: str, raw: dict) -> Observed:
    """The typed snapshot from the engine's own documents (``dockerio.project_snapshot``)."""
    images = raw["images"]
    network_ids = {doc["Name"]: doc["Id"] for doc in raw["networks"]}
    return Observed(
        project=project,
        containers=tuple(sorted((container_from(doc, network_ids) for doc in raw["containers"]),
                                key=lambda c: (c.service or "", c.name))),
        networks=tuple(network_from(doc) for doc in raw["networks"]),
        volumes=tuple(volume_from(doc) for doc in raw["volumes"]),
        images=tuple(image_from(ref, doc) for ref, doc in images.items() if doc is not None),
        missing_images=tuple(ref for ref, doc in images.items() if doc is None),
        engine_version="",
        engine_id=str(raw.get("engine_id") or ""),
        name_holders=tuple(sorted((h for doc in raw.get("name_holders") or () for h in holders_from(doc)),
                                  key=lambda h: h.name)),
    )


def holders_from(doc: dict) -> list[NameHolder]:
    """One per name of a listed container that is not the project's (``dockerio.name_holders``)."""
    return [NameHolder(name=name.lstrip("/"), id=doc["Id"], image=doc.get("Image") or "",
                       state=doc.get("State") or "", project=doc.get("Project") or None)
            for name in doc.get("Names") or ()]


def container_from(doc: dict, network_ids: dict[str, str] | None = None) -> ObservedContainer:
    """``network_ids`` (the engine's networks, name to id) drops an endpoint on a network deleted
    since and made again under the same name (``_joined``)."""
    config = doc.get("Config") or {}
    labels = config.get("Labels") or {}
    state = doc.get("State") or {}
    health = (state.get("Health") or {}).get("Status") or "none"
    role = _role(doc.get("Name", "").lstrip("/"), labels)
    host_config = doc.get("HostConfig") or {}
    made = _config(labels.get(LABEL_CONFIG))
    return ObservedContainer(
        id=doc["Id"],
        name=doc.get("Name", "").lstrip("/"),
        project=labels.get(LABEL_PROJECT, ""),
        service=labels.get(LABEL_SERVICE),
        profile=labels.get(LABEL_PROFILE),
        role=role,
        spec_hash=labels.get(LABEL_SPEC_HASH),
        config=made,
        sensitive=sensitive_map(labels.get(LABEL_SENSITIVE)),
        image_ref=config.get("Image", ""),
        image_id=doc.get("Image", ""),
        state=_enum(State, state.get("Status"), State.DEAD),
        health=_enum(Health, health, Health.NONE),
        exit_code=state.get("ExitCode"),
        oom_killed=bool(state.get("OOMKilled")),
        restart_count=int(doc.get("RestartCount") or 0),
        started_at=state.get("StartedAt"),
        mounts=tuple(_mount(m) for m in doc.get("Mounts") or ()),
        ports=_ports(host_config),
        networks=_joined(doc, network_ids or {}),
        kind=labels.get(LABEL_KIND),
        stateful=labels.get(LABEL_STATEFUL) == "true",
        protected=labels.get(LABEL_PROTECT) == "true",
        created_at=doc.get("Created"),
        finished_at=state.get("FinishedAt"),
        upstream=_proxy_upstream(doc) if role is Role.PROXY else None,
        env_seen=_env_seen(config, labels, made),
        command_by_hand=_command_by_hand(config, made),
        restart_policy=(host_config.get("RestartPolicy") or {}).get("Name") or "no",
        memory_limit=int(host_config.get("Memory") or 0) or None,
    )


def _env_seen(config: dict, labels: dict, made: dict | None) -> dict[str, str] | None:
    """Digests of the env values the container runs with, for the keys its config label
    (``made``) names (the image adds others): a container re-run by hand with another value
    shows here."""
    made = (made or {}).get("env")
    if not isinstance(made, dict) or not made:
        return None
    running = dict(item.split("=", 1) for item in config.get("Env") or () if isinstance(item, str) and "=" in item)
    project, service = labels.get(LABEL_PROJECT, ""), labels.get(LABEL_SERVICE) or ""
    return {key: env_digest(project, service, key, running[key]) if key in running else "" for key in made}


def _command_by_hand(config: dict, made: dict | None) -> tuple[str, ...]:
    """The fields of ``command``/``entrypoint`` the spec set (``made``) that the container does
    not run with: re-run by hand with the labels copied (QA: drift missed a worker run with
    another command). One the spec left to the image is not compared (the image's may change)."""
    live = {"command": config.get("Cmd"), "entrypoint": config.get("Entrypoint")}
    return tuple(name for name in ("command", "entrypoint")
                 if isinstance((made or {}).get(name), list) and list(live[name] or []) != made[name])


def _proxy_upstream(doc: dict) -> str | None:
    """The container id a proxy's config serves, read from its bind-mounted config folder.

    That file is what nginx loaded (apply writes it, tests it with ``nginx -t`` and reloads,
    restoring the old one when the test fails); None when it cannot be read here.
    """
    from reconciler.deploy import nginx

    for mount in doc.get("Mounts") or ():
        if mount.get("Destination") == nginx.CONF_DIR and mount.get("Source"):
            try:
                text = (Path(mount["Source"]) / nginx.CONF_FILE).read_text(encoding="utf-8")
            except OSError:
                return None
            found = nginx.parse_upstream(text)
            return found.container_id if found else None
    return None


def _role(name: str, labels: dict) -> Role:
    """From the container's NAME (renames are how apply swaps roles). One whose name follows no
    rule is a stray, whatever its labels say: a container started by hand with the project's
    labels (or a clone of one) must never be taken for the service, backed up in its place,
    replaced or removed. A service label alone (no name rule) keeps its orphan meaning."""
    if not labels.get(LABEL_SERVICE):
        return _enum(Role, labels.get(LABEL_ROLE), Role.CURRENT)
    by_name = role_from_name(name, labels.get(LABEL_PROJECT, ""), labels.get(LABEL_SERVICE))
    return Role(by_name) if by_name else Role.STRAY


def _enum(enum, value, default):
    try:
        return enum(value)
    except ValueError:
        return default


def _config(text: str | None) -> dict | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _mount(doc: dict) -> ObservedMount:
    source = doc.get("Name") if doc.get("Type") == "volume" else doc.get("Source")
    return ObservedMount(source=source or "", target=doc.get("Destination", ""),
                         type=doc.get("Type", ""), read_only=not doc.get("RW", True))


def _ports(host_config: dict) -> tuple[str, ...]:
    out = []
    for container_port, bindings in (host_config.get("PortBindings") or {}).items():
        for binding in bindings or ():
            ip = binding.get("HostIp") or ""
            host = binding.get("HostPort") or ""
            out.append(f"{ip + ':' if ip else ''}{host + ':' if host else ''}{container_port}")
    return tuple(sorted(out))


def _joined(doc: dict, network_ids: dict[str, str]) -> tuple[str, ...]:
    """The networks the container has an endpoint on. An endpoint keeps the id of the network it
    was made on: after ``docker network rm`` and a create under the same name (apply or heal
    made it again for another service) it is on no network, and the container cannot start
    until it is joined again, so it is not counted as on it (QA: the second stopped service on a
    re-made network failed to start, its rejoin dropped as done)."""
    endpoints = (doc.get("NetworkSettings") or {}).get("Networks") or {}
    return tuple(sorted(name for name, endpoint in endpoints.items()
                        if not (name in network_ids and (endpoint or {}).get("NetworkID")
                                and endpoint["NetworkID"] != network_ids[name])))


def network_from(doc: dict) -> ObservedNetwork:
    labels = doc.get("Labels") or {}
    return ObservedNetwork(name=doc["Name"], id=doc["Id"], driver=doc.get("Driver", ""),
                           project=labels.get(LABEL_PROJECT), internal=bool(doc.get("Internal")))


def volume_from(doc: dict) -> ObservedVolume:
    labels = doc.get("Labels") or {}
    options = doc.get("Options") or {}
    bind = options.get("device") if options.get("o") == "bind" else None
    return ObservedVolume(name=doc["Name"], driver=doc.get("Driver", ""),
                          project=labels.get(LABEL_PROJECT), bind=bind)


def image_from(ref: str, doc: dict) -> ObservedImage:
    config = doc.get("Config") or {}
    major = next((e.split("=", 1)[1] for e in config.get("Env") or [] if e.startswith("PG_MAJOR=")), None)
    return ObservedImage(ref=ref, id=doc["Id"], pg_major=int(major) if major and major.isdigit() else None,
                         entrypoint=tuple(config.get("Entrypoint") or ()), command=tuple(config.get("Cmd") or ()))
