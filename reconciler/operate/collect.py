"""Gather diagnose facts: the engine (inspect, logs, a probe inside running containers), the
host (free disk, who holds a port) and the state dir (last diagnose's restart counts).

This is the only I/O of diagnose. An unreachable engine is a fact, not an exception: the
rules turn it into a critical issue. Logs, health-check output and the engine's error text are
redacted here, before anything else sees them, with every service's secrets: a container can
print a secret it was given for another service (a database URL).
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from reconciler import dockerio
from reconciler.errors import EngineError
from reconciler.observe.collect import container_from
from reconciler.observe.models import Observed
from reconciler.operate import procnet
from reconciler.operate.facts import (
    ContainerFacts,
    DiskFacts,
    Facts,
    HostFacts,
    MountFacts,
    Probe,
    ServiceFacts,
)
from reconciler.operate.logscan import readable_logs
from reconciler.operate.redact import Redactor
from reconciler.plan import leftovers
from reconciler.session import Session
from reconciler.spec.normalise import container_name, network_name, proxy_name, volume_name

LOG_LINES = 30
HEALTH_PROBES = 3
_MOUNT_SCRIPT = ('for t in "$@"; do if [ -w "$t" ]; then echo "reconcile-w 1 $t"; '
                 'else echo "reconcile-w 0 $t"; fi; done; df -Pk "$@"')


def now_text() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def collect(session: Session, services: list[str] | None = None,
            previous: dict | None = None, now: str | None = None) -> tuple[Facts, dict[str, str]]:
    """Facts about ``services`` (default all) and ``{service: container id}`` of the live ones."""
    now = now or now_text()
    names = services or sorted(session.spec.services)
    try:
        client = session.client
        return _engine_facts(session, client, names, previous or {}, now)
    except EngineError as exc:
        if exc.ref not in ("engine.unreachable",):
            raise
        host = HostFacts(engine_reachable=False, engine_error=exc.message, engine_hint=exc.hint,
                         disks=host_disks(session, None))
        return Facts(session.spec.project, now, host), {}


def _engine_facts(session: Session, client, names: list[str], previous: dict,
                  now: str) -> tuple[Facts, dict[str, str]]:
    spec = session.spec
    docs = {d["Id"]: d for d in dockerio.project_containers(client, spec.project)}
    observed = Observed(spec.project, tuple(container_from(d) for d in docs.values()))
    live = {n: docs[c.id] for n in names if (c := leftovers.live(observed, n)) is not None}
    volumes = {v["Name"]: v for v in dockerio.project_volumes(client, spec.project)}
    images = dockerio.inspect_images(client, sorted({spec.services[n].image for n in names}))
    redact = Redactor.for_spec(session.loaded, running=docs.values())
    with ThreadPoolExecutor(max_workers=8) as pool:
        logs = dict(zip(live, pool.map(lambda n: _logs(client, live[n]["Id"], redact), live)))
        probes = dict(zip(live, pool.map(lambda n: _probe_mounts(session, client, n, live[n]), live)))
    before = previous.get("services") or {}
    services = tuple(
        _service_facts(session, n, live.get(n), volumes, images.get(spec.services[n].image) is not None,
                       logs.get(n, ()), probes.get(n, {}), before.get(n) or {}, redact, docs)
        for n in names)
    host = HostFacts(
        disks=host_disks(session, client),
        port_holders=tuple(procnet.holders(_ports_to_check(services))) if _local_engine() else (),
        networks_present=tuple(sorted(n["Name"] for n in dockerio.project_networks(client, spec.project))),
    )
    return Facts(spec.project, now, host, services), {n: d["Id"] for n, d in live.items()}


def _service_facts(session: Session, name: str, doc: dict | None, volumes: dict, image_present: bool,
                   logs: tuple[str, ...], probe: dict, previous: dict, redact: Redactor,
                   docs: dict) -> ServiceFacts:
    spec = session.spec
    service = spec.services[name]
    container = container_facts(doc, redact) if doc is not None else None
    same = container is not None and previous.get("id") == container.id
    proxy = proxy_name(spec.project, name) if service.proxied else ""
    proxy_doc = next((d for d in docs.values() if proxy and d.get("Name", "").lstrip("/") == proxy), None)
    return ServiceFacts(
        name=name, kind=service.kind.value, container_name=container_name(spec, name),
        image=session.loaded.shown(("services", name, "image"), service.image),
        image_present=image_present,
        networks=tuple(network_name(spec, n) for n in service.networks),
        host_ports=tuple(sorted({p.host for p in service.ports if p.host and p.protocol == "tcp"})),
        mem_limit=service.mem_limit, container=container,
        mounts=tuple(_mount_facts(session, name, doc, volumes, probe)),
        logs=logs, previous_restart_count=previous.get("restart_count") if same else None,
        previous_at=previous.get("at") if same else None, proxy_name=proxy,
        proxy=container_facts(proxy_doc, redact) if proxy_doc is not None else None,
        name_holder=dockerio.foreign_holder(session.client, container_name(spec, name), spec.project)
        if doc is None else "",
    )


def container_facts(doc: dict, redact: Redactor) -> ContainerFacts:
    """The facts of one inspect document; the probes' output and the engine's error are
    redacted (a health check can print what it connects with)."""
    state = doc.get("State") or {}
    health = state.get("Health") or {}
    host_config = doc.get("HostConfig") or {}
    return ContainerFacts(
        id=doc["Id"], name=doc.get("Name", "").lstrip("/"), state=state.get("Status", "dead"),
        exit_code=state.get("ExitCode"), oom_killed=bool(state.get("OOMKilled")),
        error=redact(state.get("Error") or ""), restart_count=int(doc.get("RestartCount") or 0),
        started_at=state.get("StartedAt"), finished_at=state.get("FinishedAt"),
        restart_policy=(host_config.get("RestartPolicy") or {}).get("Name") or "no",
        memory_limit=int(host_config.get("Memory") or 0),
        health=health.get("Status"), failing_streak=int(health.get("FailingStreak") or 0),
        health_log=tuple(Probe(int(p.get("ExitCode", -1)), redact(readable_logs(p.get("Output") or "").strip()),
                               p.get("End", "")) for p in (health.get("Log") or [])[-HEALTH_PROBES:]),
        networks=tuple(sorted(((doc.get("NetworkSettings") or {}).get("Networks") or {}).keys())),
        published=published_ports(doc),
    )


def published_ports(doc: dict) -> tuple[int, ...]:
    """The host ports the engine has bound for a container now (``NetworkSettings.Ports``)."""
    bound = ((doc.get("NetworkSettings") or {}).get("Ports") or {}).values()
    return tuple(sorted({int(b["HostPort"]) for bindings in bound for b in bindings or ()
                         if str(b.get("HostPort") or "").isdigit()}))


def _logs(client, container: str, redact: Redactor) -> tuple[str, ...]:
    try:
        text = dockerio.logs(client, container, LOG_LINES)
    except EngineError:
        return ()
    return tuple(redact(line) for line in text.splitlines() if line.strip())


def _probe_mounts(session: Session, client, name: str, doc: dict) -> dict[str, tuple]:
    """``{target: (writable, size, free)}`` measured inside the running container."""
    state = doc.get("State") or {}
    targets = [m.target for m in session.spec.services[name].volumes]
    if not targets or not state.get("Running") or state.get("Restarting") or state.get("Paused"):
        return {}
    out = bytearray()
    try:
        result = dockerio.exec_stream(client, doc["Id"], ["sh", "-c", _MOUNT_SCRIPT, "sh", *targets],
                                      sink=out.extend)
    except (EngineError, dockerio.StreamAborted):
        return {}
    return parse_mount_probe(out.decode("utf-8", "replace"), targets) if result.exit_code in (0, 1) else {}


def parse_mount_probe(text: str, targets: list[str]) -> dict[str, tuple]:
    """Read ``reconcile-w`` lines and ``df -Pk`` rows (one per target, in order)."""
    writable = {}
    rows = []
    for line in text.splitlines():
        if line.startswith("reconcile-w "):
            flag, _, target = line[len("reconcile-w "):].partition(" ")
            writable[target] = flag == "1"
        elif line and not line.startswith("Filesystem"):
            rows.append(line.split())
    out = {}
    for target, row in zip(targets, rows):
        size = free = None
        if len(row) >= 6 and row[1].isdigit() and row[3].isdigit():
            size, free = int(row[1]) * 1024, int(row[3]) * 1024
        out[target] = (writable.get(target), size, free)
    return out


def _mount_facts(session: Session, name: str, doc: dict | None, volumes: dict,
                 probe: dict) -> list[MountFacts]:
    spec = session.spec
    mounted = {m.get("Destination"): m for m in (doc or {}).get("Mounts") or ()}
    out = []
    for mount in spec.services[name].volumes:
        writable, size, free = probe.get(mount.target, (None, None, None))
        common = dict(target=mount.target, source=mount.source, read_only=mount.read_only,
                      writable=writable, size_bytes=size, free_bytes=free)
        if mount.is_host_path:
            exists = os.path.exists(mount.source) if _local_engine() else True
            out.append(MountFacts(engine_source=mount.source, kind="host", exists=exists, **common))
            continue
        engine = (mounted.get(mount.target) or {}).get("Name") or volume_name(spec, mount.source)
        options = (volumes.get(engine) or {}).get("Options") or {}
        folder = options.get("device") if options.get("o") == "bind" else spec.volumes[mount.source].bind
        exists = engine in volumes and (not folder or not _local_engine() or os.path.isdir(folder))
        out.append(MountFacts(engine_source=folder or engine, kind="bind-volume" if folder else "volume",
                              exists=exists, **common))
    return out


def _ports_to_check(services: tuple[ServiceFacts, ...]) -> list[int]:
    """Host ports of services that are not up: a running (or paused) container holds its own."""
    return sorted({p for s in services for p in s.host_ports
                   if s.container is None or not s.container.holds_ports})


def host_disks(session: Session, client) -> tuple[DiskFacts, ...]:
    """Free space where images and volumes live (the engine's root) and where backups go."""
    places: list[tuple[str, Path]] = [("backups", Path(session.local.root))]
    if client is not None and _local_engine():
        try:
            root = dockerio.engine_info(client).get("DockerRootDir")
        except EngineError:
            root = None
        if root:
            places.insert(0, ("docker-root", Path(root)))
    out = []
    for label, path in places:
        anchor = _existing_ancestor(path)
        try:
            usage = shutil.disk_usage(anchor)
        except OSError:
            continue
        out.append(DiskFacts(label, str(path), usage.total, usage.free))
    return tuple(out)


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _local_engine() -> bool:
    """Host paths and /proc describe the engine's machine only when the engine is local."""
    address = os.environ.get("DOCKER_HOST", "")
    return not address or address.startswith("unix://")
