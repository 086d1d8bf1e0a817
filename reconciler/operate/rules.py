"""Diagnose rules: small pure functions from ``Facts`` to ``Issue``s, no I/O.

Each rule looks at one kind of trouble and says it once, with the evidence and a fix a
person can act on. Where two rules could explain the same symptom (a container that never
started because its port was taken), the engine's start error is classified first
(``logscan.start_error_kind``) and only the specific rule reports it.
"""

from __future__ import annotations

from collections.abc import Callable

from reconciler.operate import logscan
from reconciler.operate.facts import ContainerFacts, Facts, MountFacts, ServiceFacts, seconds_between
from reconciler.operate.issues import ENGINE, HOST, Issue, Severity, sort_issues

DISK_WARNING = 0.20
DISK_CRITICAL = 0.05
LOOP_RESTARTS = 3
LOOP_UPTIME_S = 120.0
PROBE_OUTPUT = 300

C, W = Severity.CRITICAL, Severity.WARNING
ServiceRule = Callable[[ServiceFacts, Facts], list[Issue]]
HostRule = Callable[[Facts], list[Issue]]


def diagnose(facts: Facts) -> list[Issue]:
    """Every rule over every service, worst first. An unreachable engine is the only finding
    about the engine (nothing else can be known), but host disks are still checked."""
    if not facts.host.engine_reachable:
        return sort_issues(engine_unreachable(facts) + disk_space(facts))
    found = [i for rule in HOST_RULES for i in rule(facts)]
    for service in facts.services:
        found.extend(i for rule in SERVICE_RULES for i in rule(service, facts))
    return sort_issues(found)


def _issue(service: str, severity: Severity, issue: str, details: str, fix: str, rule: str) -> Issue:
    return Issue(service, severity, issue, details, fix, rule)


def _apply_fix(name: str) -> str:
    return f"`reconcile apply` starts it again (or: docker start {name})"


# -- engine and host ---------------------------------------------------------------------

def engine_unreachable(facts: Facts) -> list[Issue]:
    if facts.host.engine_reachable:
        return []
    return [_issue(ENGINE, C, "Docker engine unreachable", facts.host.engine_error or "no answer",
                   facts.host.engine_hint or "start the engine (sudo systemctl start docker) or set "
                   "DOCKER_HOST", "engine-unreachable")]


def disk_space(facts: Facts) -> list[Issue]:
    out = []
    for disk in facts.host.disks:
        if disk.free_ratio >= DISK_WARNING:
            continue
        severity = C if disk.free_ratio < DISK_CRITICAL else W
        fix = ("remove unused images and build cache (docker system prune), and old backups "
               "(`reconcile backups prune`)" if disk.label != "backups" else
               "apply retention (`reconcile backups prune`) or move backups to a larger disk")
        out.append(_issue(HOST, severity, f"low disk space ({disk.label})",
                          f"{disk.path}: {_pct(disk.free_ratio)} free ({_size(disk.free_bytes)} of "
                          f"{_size(disk.total_bytes)})", fix, "disk-space"))
    return out


# -- the container itself ---------------------------------------------------------------

def container_missing(service: ServiceFacts, facts: Facts) -> list[Issue]:
    if service.container is not None:
        return []
    if service.name_holder:
        return [_issue(service.name, C, "name taken", f"{service.container_name} is a container reconcile did not "
                       f"make (no reconcile labels): {service.name_holder}",
                       f"look at it (docker inspect {service.container_name}); if it is not needed, remove it "
                       f"(docker rm -f {service.container_name}), then `reconcile apply` creates the service",
                       "name-taken")]
    return [_issue(service.name, C, "container missing", f"no container {service.container_name}",
                   "`reconcile apply` creates it (stateful services: restore with `reconcile "
                   "restore` if the data volume is new)", "container-missing")]


def container_exited(service: ServiceFacts, facts: Facts) -> list[Issue]:
    """Stopped, dead, or never started; not a start failure another rule explains."""
    box = service.container
    if box is None or box.state not in ("exited", "dead", "created"):
        return []
    if logscan.start_error_kind(box.error) or box.oom_killed:
        return []
    if box.state == "created":
        detail = f"engine error: {box.error}" if box.error else "created but never started"
        return [_issue(service.name, C, "container never started", detail,
                       _apply_fix(box.name), "container-exited")]
    return [_issue(service.name, C, f"container {box.state}", _exit_words(box),
                   _exit_fix(service, box), "container-exited")]


def container_paused(service: ServiceFacts, facts: Facts) -> list[Issue]:
    """``docker pause``: the engine calls it up, but its processes are frozen and answer nothing."""
    box = service.container
    if box is None or box.state != "paused":
        return []
    return [_issue(service.name, C, "container paused",
                   f"{box.name} is paused (docker pause): its processes are frozen, it answers nothing",
                   f"`reconcile heal` or `reconcile apply` unpauses it (or: docker unpause {box.name})",
                   "container-paused")]


def oom_killed(service: ServiceFacts, facts: Facts) -> list[Issue]:
    """The kernel killed it for memory: exited, or being restarted into the same fate."""
    box = service.container
    if box is None or not box.oom_killed or (box.running and box.state != "restarting"):
        return []
    limit = service.mem_limit or (_size(box.memory_limit) if box.memory_limit else "none")
    return [_issue(service.name, C, "container OOM-killed",
                   f"killed by the kernel's OOM killer (exit code {box.exit_code}, state "
                   f"{box.state}); memory limit {limit}",
                   f"raise mem_limit of {service.name} in the spec (now {limit}) or make it use "
                   "less memory, then `reconcile apply`", "oom-killed")]


def _exit_words(box: ContainerFacts) -> str:
    code = box.exit_code
    words = {0: "the process ended (exit code 0): stopped by hand or it finished",
             137: "killed with SIGKILL (exit code 137): docker kill, or a stop that timed out",
             143: "stopped with SIGTERM (exit code 143)"}.get(code, f"exited with code {code}")
    extra = f"; engine error: {box.error}" if box.error else ""
    return f"{words}; finished at {box.finished_at}{extra}" if box.finished_at else words + extra


def _exit_fix(service: ServiceFacts, box: ContainerFacts) -> str:
    if box.exit_code in (0, 137, 143):
        return _apply_fix(box.name)
    return (f"read the last log lines of {service.name} below and fix the cause, then "
            + _apply_fix(box.name))


def restart_loop(service: ServiceFacts, facts: Facts) -> list[Issue]:
    """Restarting now, restarted often with a short uptime, or more restarts than last time."""
    box = service.container
    if box is None:
        return []
    uptime = seconds_between(box.started_at, facts.now)
    short = uptime is not None and uptime < LOOP_UPTIME_S
    rise = (box.restart_count - service.previous_restart_count
            if service.previous_restart_count is not None else 0)
    looping = box.state == "restarting" or (box.restart_count >= LOOP_RESTARTS and (short or not box.running))
    if not looping and rise <= 0:
        return []
    since = f"; {rise} since the last diagnose ({service.previous_at})" if rise > 0 else ""
    # a running container's exit code is Docker's 0, not its last exit's (QA: "last exit code 0"
    # of one OOM-killed, 137, at each restart)
    exited = f", last exit code {box.exit_code}" if not box.running else f", up since {box.started_at}"
    details = f"{box.restart_count} restarts, state {box.state}{exited}{since}"
    # One crash the engine recovered from at once is no loop: heal would stop a service that
    # runs again and recreate it (QA). Two or more within the short uptime are.
    severity = C if looping or rise >= LOOP_RESTARTS or (short and rise >= 2) else W
    fix = (f"the process keeps failing: read the last log lines of {service.name} below, fix the "
           "command or configuration in the spec, then `reconcile apply` (a plain restart will "
           "not help)") if severity is C else (
           f"it runs again; read the last log lines of {service.name} below for why it stopped")
    return [_issue(service.name, severity, "restart loop" if severity is C else "restarted",
                   details, fix, "restart-loop")]


def healthcheck_failing(service: ServiceFacts, facts: Facts) -> list[Issue]:
    box = service.container
    if box is None or not box.running or box.health != "unhealthy":
        return []
    last = box.health_log[-1] if box.health_log else None
    output = " ".join((last.output if last else "").split())[-PROBE_OUTPUT:] or "(no output)"
    details = (f"Docker health check failing {box.failing_streak} times in a row; last probe "
               f"exit code {last.exit_code if last else '?'}: {output}")
    return [_issue(service.name, C, "health check failing", details,
                   f"`reconcile health {service.name}` runs the deep probe; read the logs below; "
                   "`reconcile apply` restarts it and recreates it (with a backup) if that does "
                   "not help", "healthcheck")]


# -- ports, mounts, images, networks --------------------------------------------------------

def port_conflict(service: ServiceFacts, facts: Facts) -> list[Issue]:
    """A host port of the service held by another process. A blue-green service's host ports
    are published by its own proxy: the proxy holding them is how it should be."""
    box = service.container
    if box is not None and box.holds_ports:
        return _bind_error_inside(service)
    found = logscan.bind_error([box.error] if box and box.error else [])
    own = set(service.proxy.published) if service.proxy is not None and service.proxy.holds_ports else set()
    holders = [h for h in facts.host.port_holders if h.port in service.host_ports and h.port not in own]
    if found is None and not holders:
        return []
    port = found[1] if found and found[1] else (holders[0].port if holders else None)
    named = [h for h in holders if port is None or h.port == port] or holders
    who = "; ".join(h.describe() for h in named) or "the holder could not be named"
    details = f"{found[0]}; {who}" if found else who
    where = f"host port {port}" if port else "a host port"
    fix = (f"stop the process holding {where} (reconcile never kills it), or publish "
           f"{service.name} on another host port in the spec, then `reconcile apply`")
    return [_issue(service.name, C, f"port conflict on {where}", details, fix, "port-conflict")]


def _bind_error_inside(service: ServiceFacts) -> list[Issue]:
    found = logscan.bind_error(list(service.logs[-20:]))
    if found is None:
        return []
    return [_issue(service.name, W, "address already in use (in its logs)", found[0],
                   "two processes in the container want the same port: check its command and "
                   "port settings", "port-conflict")]


def mounts(service: ServiceFacts, facts: Facts) -> list[Issue]:
    out: list[Issue] = []
    for mount in service.mounts:
        out.extend(_mount_issues(service, mount))
    if not any(i.rule == "volume-full" for i in out):
        line = logscan.no_space(service.logs[-20:])
        if line:
            out.append(_issue(service.name, C, "no space left (in its logs)", line,
                              "free space on the volume or disk it writes to (see resource_usage)",
                              "volume-full"))
    return out


def _mount_issues(service: ServiceFacts, mount: MountFacts) -> list[Issue]:
    what = f"{_mount_noun(mount)} {mount.source} ({mount.target})"
    if not mount.exists:
        fix = (f"create the host folder {mount.engine_source} (owned by the service's user), "
               "or restore it, then `reconcile apply`" if mount.kind != "volume" else
               "`reconcile apply` creates it; its data is gone: `reconcile restore` afterwards")
        return [_issue(service.name, C, f"{_mount_noun(mount)} missing", f"{what}: not found",
                       fix, "mount-missing")]
    if mount.writable is False and not mount.read_only:
        return [_issue(service.name, C, f"{_mount_noun(mount)} not writable",
                       f"{what} is not writable by the container's user",
                       "give the folder to the service's user (chown) or check it is not mounted "
                       "read-only, then restart the service", "mount-not-writable")]
    if mount.free_bytes is None or not mount.size_bytes or mount.read_only:
        return []
    ratio = mount.free_bytes / mount.size_bytes
    if ratio >= DISK_WARNING:
        return []
    severity = C if ratio < DISK_CRITICAL else W
    title = f"{_mount_noun(mount)} full" if severity is C else f"{_mount_noun(mount)} low on space"
    return [_issue(service.name, severity, title,
                   f"{what}: {_pct(ratio)} free ({_size(mount.free_bytes)} of "
                   f"{_size(mount.size_bytes)})",
                   "free space on it (old data, logs) or make it larger (for a tmpfs volume: "
                   "driver_opts o=size=…, which needs a recreate), then restart the service; "
                   "reconcile does not delete data to make room", "volume-full")]


def _mount_noun(mount: MountFacts) -> str:
    return "host folder" if mount.kind == "host" else "volume"


def image_missing(service: ServiceFacts, facts: Facts) -> list[Issue]:
    if service.image_present:
        return []
    box = service.container
    severity = W if box is not None and box.running else C
    details = (f"image {service.image} is not present locally" +
               ("; the running container keeps its copy, but a recreate needs the image"
                if severity is W else ""))
    return [_issue(service.name, severity, "image missing locally", details,
                   f"pull or build it (docker pull {service.image}; in the lab: bash lab/images.sh)",
                   "image-missing")]


def network_missing(service: ServiceFacts, facts: Facts) -> list[Issue]:
    present = set(facts.host.networks_present)
    gone = [n for n in service.networks if n not in present]
    box = service.container
    if not gone and not (box and logscan.start_error_kind(box.error) == "network"):
        return []
    names = ", ".join(gone) or "a network it was attached to"
    engine = f"; engine error: {box.error}" if box and box.error else ""
    return [_issue(service.name, C, "network missing", f"network {names} does not exist{engine}",
                   f"`reconcile apply` creates {names} again; the container still points at the "
                   f"deleted network, so if it then fails to start remove it (docker rm "
                   f"{service.container_name}) and apply again", "network-missing")]


def config_error(service: ServiceFacts, facts: Facts) -> list[Issue]:
    """Critical while it hurts: the service is down, looping, unhealthy, just restarted, or the
    error is the last thing it printed; an old line from a service that recovered is a warning."""
    box = service.container
    uptime = seconds_between(box.started_at, facts.now) if box else None
    failing = (box is None or not box.running or box.state == "restarting" or box.health == "unhealthy"
               or (box.restart_count > 0 and uptime is not None and uptime < LOOP_UPTIME_S))
    return [_issue(service.name, C if failing or e.newest else W, "configuration error",
                   f"{e.cause}: {e.line}", e.fix, "config-error")
            for e in logscan.config_errors(service.logs)]


def _pct(ratio: float) -> str:
    return f"{ratio * 100:.1f} %"


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)


def network_detached(service: ServiceFacts, facts: Facts) -> list[Issue]:
    """A running container cut off a network of its spec (``docker network disconnect``):
    the services on that network cannot reach it by name, though it looks healthy."""
    box = service.container
    if box is None or box.state != "running":
        return []
    present = set(facts.host.networks_present)
    detached = [n for n in service.networks if n in present and n not in box.networks]
    if not detached:
        return []
    names = ", ".join(detached)
    return [_issue(service.name, C, "not on its network",
                   f"{box.name} is not attached to {names}: the services on it cannot reach it",
                   f"`reconcile heal` reconnects it to {names} under its service name", "network-detached")]


def proxy_down(service: ServiceFacts, facts: Facts) -> list[Issue]:
    """A blue-green service's proxy publishes its host ports: gone, stopped, paused or cut off
    the service's networks, the service cannot be reached from outside, however well its own
    container runs."""
    if not service.proxy_name:
        return []
    box, name = service.proxy, service.proxy_name
    ports = ", ".join(str(p) for p in service.host_ports) or "its host ports"
    if box is None:
        return [_issue(service.name, C, "proxy missing", f"no container {name}: nothing serves host port "
                       f"{ports}", f"`reconcile apply` creates {name}", "proxy-missing")]
    if box.state == "paused":
        return [_issue(service.name, C, "proxy paused", f"{name} is paused: host port {ports} answers "
                       "nothing", f"`reconcile heal` unpauses it (or: docker unpause {name})", "proxy-paused")]
    if box.state != "running":
        return [_issue(service.name, C, f"proxy {box.state}",
                       f"{name} is {box.state} (exit code {box.exit_code}): nothing serves host port {ports}",
                       f"`reconcile heal` starts it (or `reconcile apply`; by hand: docker start {name})",
                       "proxy-stopped")]
    present = set(facts.host.networks_present)
    detached = [n for n in service.networks if n in present and n not in box.networks]
    if not detached:
        return []
    return [_issue(service.name, C, "proxy not on its network",
                   f"{name} is not attached to {', '.join(detached)}: it cannot reach {service.name}, "
                   f"host port {ports} fails", f"`reconcile heal` reconnects it to {', '.join(detached)}",
                   "proxy-detached")]


HOST_RULES: tuple[HostRule, ...] = (engine_unreachable, disk_space)
SERVICE_RULES: tuple[ServiceRule, ...] = (
    container_missing, container_exited, container_paused, oom_killed, restart_loop, healthcheck_failing,
    port_conflict, mounts, image_missing, network_missing, network_detached, proxy_down, config_error,
)
