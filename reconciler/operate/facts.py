"""What diagnose knows about the stack, as frozen dataclasses: the rules' only input.

Facts are gathered once by ``collect`` (engine, host, state dir) and hold nothing secret:
log lines are redacted before they are stored here. ``to_dict``/``from_dict`` make a recorded
snapshot (``reconcile diagnose --save-facts``) replayable in unit tests, so every rule is
tested against inputs taken from a real engine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime

NEVER = "0001-01-01T00:00:00Z"


@dataclass(frozen=True)
class Probe:
    """One run of the container's Docker HEALTHCHECK (State.Health.Log)."""

    exit_code: int
    output: str = ""
    end: str = ""


@dataclass(frozen=True)
class ContainerFacts:
    """The live container of a service, from ``docker inspect``."""

    id: str
    name: str
    state: str
    exit_code: int | None = None
    oom_killed: bool = False
    error: str = ""
    restart_count: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    restart_policy: str = ""
    memory_limit: int = 0
    health: str | None = None
    failing_streak: int = 0
    health_log: tuple[Probe, ...] = ()
    networks: tuple[str, ...] = ()
    published: tuple[int, ...] = ()
    """Host ports the engine has bound for it now (none unless it runs)."""

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def holds_ports(self) -> bool:
        """Running or paused: its published ports stay bound either way."""
        return self.state in ("running", "paused")


@dataclass(frozen=True)
class MountFacts:
    """A mount the spec asks for, and what is true of it on the engine and in the container.

    ``kind`` is ``volume`` (a named volume), ``bind-volume`` (a named volume on a host folder)
    or ``host`` (a host path). ``writable``/``size``/``free`` come from inside the running
    container and are None when it is not running.
    """

    target: str
    source: str
    engine_source: str
    kind: str
    read_only: bool = False
    exists: bool = True
    writable: bool | None = None
    size_bytes: int | None = None
    free_bytes: int | None = None


@dataclass(frozen=True)
class ServiceFacts:
    name: str
    kind: str
    container_name: str
    image: str
    image_present: bool = True
    networks: tuple[str, ...] = ()
    host_ports: tuple[int, ...] = ()
    mem_limit: str | None = None
    container: ContainerFacts | None = None
    mounts: tuple[MountFacts, ...] = ()
    logs: tuple[str, ...] = ()
    previous_restart_count: int | None = None
    previous_at: str | None = None
    proxy_name: str = ""
    """A blue-green service's proxy (``<project>-<service>-proxy``), which publishes its host
    ports; empty for a service that publishes its own."""
    proxy: ContainerFacts | None = None
    name_holder: str = ""
    """With no container of the service: a container reconcile did not make (no project label)
    that holds its name, as ``<short id> (<image>, <state>)``; apply cannot create it then."""


@dataclass(frozen=True)
class DiskFacts:
    label: str
    path: str
    total_bytes: int
    free_bytes: int

    @property
    def free_ratio(self) -> float:
        return self.free_bytes / self.total_bytes if self.total_bytes else 1.0


@dataclass(frozen=True)
class PortHolder:
    """A listening socket on a host port, and the process holding it (when it can be named)."""

    port: int
    address: str
    pid: int | None = None
    command: str = ""

    def describe(self) -> str:
        who = f"pid {self.pid} ({self.command})" if self.pid else "another process (pid unknown)"
        if self.command.split(" ", 1)[0].endswith("docker-proxy"):
            who += f"; another container publishes it: docker ps --filter publish={self.port}"
        return f"{self.address}:{self.port} is held by {who}"


@dataclass(frozen=True)
class HostFacts:
    engine_reachable: bool = True
    engine_error: str = ""
    engine_hint: str = ""
    disks: tuple[DiskFacts, ...] = ()
    port_holders: tuple[PortHolder, ...] = ()
    networks_present: tuple[str, ...] = ()


@dataclass(frozen=True)
class Facts:
    project: str
    now: str
    host: HostFacts = field(default_factory=HostFacts)
    services: tuple[ServiceFacts, ...] = ()

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Facts:
        host = data.get("host") or {}
        return cls(
            project=data.get("project", ""), now=data.get("now", ""),
            host=_build(HostFacts, host, disks=[_build(DiskFacts, d) for d in host.get("disks") or ()],
                        port_holders=[_build(PortHolder, p) for p in host.get("port_holders") or ()]),
            services=tuple(_service(s) for s in data.get("services") or ()),
        )


def _service(data: dict) -> ServiceFacts:
    return _build(ServiceFacts, data, container=_container(data.get("container")),
                  proxy=_container(data.get("proxy")),
                  mounts=[_build(MountFacts, m) for m in data.get("mounts") or ()])


def _container(data: dict | None) -> ContainerFacts | None:
    if data is None:
        return None
    return _build(ContainerFacts, data, health_log=[_build(Probe, p) for p in data.get("health_log") or ()])


def _build(cls, data: dict, **nested):
    """``cls`` from a dict, ignoring unknown keys and turning lists into tuples."""
    known = {f.name for f in fields(cls)}
    values = {k: v for k, v in data.items() if k in known}
    values.update(nested)
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def parse_time(text: str | None) -> datetime | None:
    """Docker's RFC 3339 times (nanoseconds, ``Z``); None for empty or the zero time."""
    if not text or text.startswith("0001-01-01"):
        return None
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits):]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def seconds_between(start: str | None, end: str | None) -> float | None:
    first, last = parse_time(start), parse_time(end)
    if first is None or last is None:
        return None
    return (last - first).total_seconds()
