"""One read-only snapshot of the engine, as frozen dataclasses with labels already parsed.

Collected once per run by ``collect.py``; the planner decides from this alone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum


class State(StrEnum):
    CREATED = "created"
    RUNNING = "running"
    RESTARTING = "restarting"
    PAUSED = "paused"
    EXITED = "exited"
    DEAD = "dead"
    REMOVING = "removing"


class Health(StrEnum):
    NONE = "none"
    STARTING = "starting"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


class Role(StrEnum):
    """Why a container of a service exists: the live one, the old or new one of a swap in
    flight, an older version kept stopped for rollback, or the proxy in front of the service."""

    CURRENT = "current"
    PREVIOUS = "previous"
    CANDIDATE = "candidate"
    KEPT = "kept"
    PROXY = "proxy"
    # labelled as one of the project's services, but not named as any container reconcile makes
    # (started by hand, a clone with copied labels): never the service, never backed up,
    # stopped, replaced or removed; the plan warns about it
    STRAY = "stray"


@dataclass(frozen=True)
class ObservedMount:
    source: str
    target: str
    type: str
    read_only: bool = False


@dataclass(frozen=True)
class ObservedContainer:
    id: str
    name: str
    project: str
    service: str | None
    profile: str | None
    role: Role
    spec_hash: str | None
    config: dict | None
    image_ref: str
    image_id: str
    state: State
    health: Health
    exit_code: int | None = None
    oom_killed: bool = False
    restart_count: int = 0
    started_at: str | None = None
    mounts: tuple[ObservedMount, ...] = ()
    ports: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()
    kind: str | None = None
    stateful: bool = False
    protected: bool = False
    created_at: str | None = None
    finished_at: str | None = None
    upstream: str | None = None  # a proxy: the id of the container its config points at
    restart_policy: str | None = None
    """The live restart policy (``no`` when none); None when the snapshot does not say."""
    memory_limit: int | None = None
    """The live memory limit in bytes; None when unlimited."""
    sensitive: dict[str, list[int]] | None = None
    """Which elements of ``config`` were interpolated (``plan.display.sensitive_elements``)."""
    env_seen: dict[str, str] | None = None
    """For each env key of ``config``: the digest of the value the container RUNS with ('' when
    it lacks the key); differs from the label's when the container was re-run by hand."""
    command_by_hand: tuple[str, ...] = ()
    """``command`` and/or ``entrypoint`` when the container RUNS another one than its config
    label records (re-run by hand with the labels copied): compared only where the spec set one."""

    @property
    def running(self) -> bool:
        return self.state is State.RUNNING


@dataclass(frozen=True)
class ObservedNetwork:
    name: str
    id: str
    driver: str
    project: str | None = None
    """Its ``reconcile.project`` label: another project's, or None, for a network named like one of
    the project's that reconcile did not make (``plan.networks`` blocks the plan on it)."""
    internal: bool = False


@dataclass(frozen=True)
class ObservedVolume:
    name: str
    driver: str
    project: str | None = None
    bind: str | None = None


@dataclass(frozen=True)
class ObservedImage:
    """A local image the spec refers to; ``pg_major`` read from its env, when it says;
    ``entrypoint`` and ``command``: what a container runs when its config sets neither."""

    ref: str
    id: str
    pg_major: int | None = None
    entrypoint: tuple[str, ...] = ()
    command: tuple[str, ...] = ()


@dataclass(frozen=True)
class NameHolder:
    """A container that is not the project's (no reconcile labels, or another project's) under a
    name of the project's form (``<project>-…``). Never touched; the planner only checks whether
    it holds a name the plan would create a container under (``docker run --name`` by hand)."""

    name: str
    id: str
    image: str
    state: str
    project: str | None = None
    """The ``reconcile.project`` label of another project, if it has one."""


@dataclass(frozen=True)
class Observed:
    project: str
    containers: tuple[ObservedContainer, ...] = ()
    networks: tuple[ObservedNetwork, ...] = ()
    volumes: tuple[ObservedVolume, ...] = ()
    images: tuple[ObservedImage, ...] = ()
    missing_images: tuple[str, ...] = ()
    engine_version: str = ""
    name_holders: tuple[NameHolder, ...] = ()
    engine_id: str = field(default="", repr=False)  # keys a plan's spec hash: never shown
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def image(self, ref: str) -> ObservedImage | None:
        return next((i for i in self.images if i.ref == ref), None)

    def name_holder(self, name: str) -> NameHolder | None:
        return next((h for h in self.name_holders if h.name == name), None)

    def current(self, service: str) -> ObservedContainer | None:
        found = [c for c in self.containers if c.service == service and c.role is Role.CURRENT]
        return found[0] if found else None

    def network(self, name: str) -> ObservedNetwork | None:
        return next((n for n in self.networks if n.name == name), None)

    def volume(self, name: str) -> ObservedVolume | None:
        return next((v for v in self.volumes if v.name == name), None)

    def fingerprint(self) -> str:
        """What a saved plan was made from; any change in these facts makes the plan stale."""
        facts = {
            "containers": sorted((c.id, c.state.value, c.spec_hash or "", c.image_id, c.role.value,
                                  c.restart_policy or "", c.memory_limit or 0, sorted(c.networks),
                                  sorted((c.env_seen or {}).items()), list(c.command_by_hand))
                                 + ((c.upstream,) if c.upstream else ()) for c in self.containers),
            "networks": sorted(n.id for n in self.networks),
            "volumes": sorted(v.name for v in self.volumes),
            "images": sorted((i.ref, i.id) for i in self.images),
        }
        return "sha256:" + hashlib.sha256(json.dumps(facts).encode()).hexdigest()

    def to_dict(self) -> dict:
        """JSON-ready form: golden test cases are written in this shape."""
        data = asdict(self)
        data.pop("extra", None)
        return json.loads(json.dumps(data, default=str))
