"""Observed state from plain data: the inverse of ``Observed.to_dict``.

Golden plan cases write the engine's state in YAML; a saved snapshot may come back as JSON.
Both are written by people or older versions, so reading is tolerant: every field but the
obvious ones has a default, unknown enum values fall back to the safe reading, and a
container may give its facts as the engine's ``labels`` instead of as fields. A container
that does not give its live restart policy or memory limit has those its config label
records (as reconcile made it: not changed in place since).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import Enum
from typing import TypeVar

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
from reconciler.plan.inplace import memory_bytes
from reconciler.spec.normalise import (
    LABEL_CONFIG,
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
)

E = TypeVar("E", bound=Enum)

# label → field, for containers described by their labels (as ``docker inspect`` shows them)
_LABEL_FIELDS = {
    LABEL_PROJECT: "project", LABEL_SERVICE: "service", LABEL_PROFILE: "profile",
    LABEL_ROLE: "role", LABEL_SPEC_HASH: "spec_hash", LABEL_CONFIG: "config",
    LABEL_IMAGE_ID: "image_id", LABEL_KIND: "kind", LABEL_STATEFUL: "stateful",
    LABEL_PROTECT: "protected", LABEL_SENSITIVE: "sensitive",
}


def observed_from_dict(data: Mapping | None) -> Observed:
    """An ``Observed`` snapshot; missing lists are empty, a missing project is ''."""
    data = data or {}
    project = str(data.get("project") or "")
    return Observed(
        project=project,
        containers=tuple(container_from_dict(c, project) for c in data.get("containers") or ()),
        networks=tuple(network_from_dict(n, project) for n in data.get("networks") or ()),
        volumes=tuple(volume_from_dict(v) for v in data.get("volumes") or ()),
        images=tuple(image_from_dict(i) for i in data.get("images") or ()),
        missing_images=tuple(str(r) for r in data.get("missing_images") or ()),
        engine_version=str(data.get("engine_version") or ""),
        engine_id=str(data.get("engine_id") or ""),
        name_holders=tuple(holder_from_dict(h) for h in data.get("name_holders") or ()),
    )


def holder_from_dict(data: Mapping) -> NameHolder:
    """A container that is not the project's: its name, and what the plan names it by."""
    name = str(data["name"])
    return NameHolder(name=name, id=str(data.get("id") or name), image=str(data.get("image") or ""),
                      state=str(data.get("state") or "running"), project=_text_or_none(data.get("project")))


def fields_from_labels(labels: Mapping[str, str]) -> dict[str, object]:
    """Container fields carried by reconcile's labels (booleans are the text ``true``)."""
    out: dict[str, object] = {}
    for label, name in _LABEL_FIELDS.items():
        if label in labels:
            out[name] = labels[label]
    for name in ("stateful", "protected"):
        if name in out:
            out[name] = str(out[name]).lower() == "true"
    return out


def container_from_dict(data: Mapping, project: str = "") -> ObservedContainer:
    """Explicit fields win over labels; a container with neither is a bare engine container."""
    merged = {**fields_from_labels(data.get("labels") or {}),
              **{k: v for k, v in data.items() if k != "labels"}}
    name = str(merged.get("name") or merged.get("id") or "")
    return ObservedContainer(
        id=str(merged.get("id") or name),
        name=name,
        project=str(merged.get("project") or project),
        service=_text_or_none(merged.get("service")),
        profile=_text_or_none(merged.get("profile")),
        role=_enum(Role, merged.get("role"), Role.CURRENT),
        spec_hash=_text_or_none(merged.get("spec_hash")),
        config=_config(merged.get("config")),
        sensitive=sensitive_map(merged.get("sensitive")),
        image_ref=str(merged.get("image_ref") or ""),
        image_id=str(merged.get("image_id") or ""),
        state=_enum(State, merged.get("state"), State.RUNNING),
        health=_enum(Health, merged.get("health"), Health.NONE),
        exit_code=_int_or_none(merged.get("exit_code")),
        oom_killed=bool(merged.get("oom_killed", False)),
        restart_count=int(merged.get("restart_count") or 0),
        started_at=_text_or_none(merged.get("started_at")),
        mounts=tuple(_mount(m) for m in merged.get("mounts") or ()),
        ports=tuple(str(p) for p in merged.get("ports") or ()),
        networks=tuple(str(n) for n in merged.get("networks") or ()),
        kind=_text_or_none(merged.get("kind")),
        stateful=bool(merged.get("stateful", False)),
        protected=bool(merged.get("protected", False)),
        created_at=_text_or_none(merged.get("created_at")),
        finished_at=_text_or_none(merged.get("finished_at")),
        upstream=_text_or_none(merged.get("upstream")),
        command_by_hand=tuple(str(f) for f in merged.get("command_by_hand") or ()),
        **_in_place_settings(merged),
    )


def _in_place_settings(merged: Mapping) -> dict[str, object]:
    """``restart_policy`` and ``memory_limit`` as given, else as the config label records
    them; with neither, the restart policy is unknown (not compared) and there is no limit."""
    made = _config(merged.get("config")) or {}
    restart = merged["restart_policy"] if "restart_policy" in merged else made.get("restart")
    if "memory_limit" in merged:
        memory = _int_or_none(merged["memory_limit"]) or None
    else:
        memory = memory_bytes(_text_or_none(made.get("mem_limit")))
    return {"restart_policy": _text_or_none(restart), "memory_limit": memory}


def network_from_dict(data: Mapping, project: str = "") -> ObservedNetwork:
    """A network without ``project`` is the snapshot's own; ``project: null`` is one nobody labelled."""
    name = str(data["name"])
    return ObservedNetwork(name=name, id=str(data.get("id") or name),
                           driver=str(data.get("driver") or "bridge"),
                           project=_text_or_none(data.get("project", project)),
                           internal=data.get("internal") is True)


def volume_from_dict(data: Mapping) -> ObservedVolume:
    return ObservedVolume(name=str(data["name"]), driver=str(data.get("driver") or "local"),
                          project=_text_or_none(data.get("project")),
                          bind=_text_or_none(data.get("bind")))


def image_from_dict(data: Mapping) -> ObservedImage:
    major = data.get("pg_major")
    return ObservedImage(ref=str(data["ref"]), id=str(data["id"]),
                         pg_major=int(major) if major is not None else None,
                         entrypoint=tuple(str(a) for a in data.get("entrypoint") or ()),
                         command=tuple(str(a) for a in data.get("command") or ()))


def _mount(data: Mapping | str) -> ObservedMount:
    """A mount as a mapping, or as the short ``source:/target[:ro]`` text people write."""
    if isinstance(data, str):
        source, _, rest = data.partition(":")
        target, _, mode = rest.partition(":")
        kind = "bind" if source.startswith("/") else "volume"
        return ObservedMount(source=source, target=target, type=kind, read_only=mode == "ro")
    return ObservedMount(source=str(data.get("source") or ""), target=str(data.get("target") or ""),
                         type=str(data.get("type") or "volume"),
                         read_only=bool(data.get("read_only", False)))


def _config(value: object) -> dict | None:
    """The config label: a mapping already, or its JSON text; anything else is unknown."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return dict(value) if isinstance(value, Mapping) else None


def sensitive_map(value: object) -> dict[str, list[int]] | None:
    """The sensitive-elements label (JSON text or a mapping): ``{field: [index, …]}``; None when
    absent or malformed (the plan then hides old elements by its older rules)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if not isinstance(value, Mapping):
        return None
    out = {}
    for name, indexes in value.items():
        if not isinstance(indexes, list) or not all(isinstance(i, int) for i in indexes):
            return None
        out[str(name)] = list(indexes)
    return out


def _enum(enum: type[E], value: object, default: E) -> E:
    try:
        return enum(value)
    except ValueError:
        return default


def _text_or_none(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def _int_or_none(value: object) -> int | None:
    return None if value is None or value == "" else int(value)
