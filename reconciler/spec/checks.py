"""Cross-checks that no single field can make: references, cycles, port clashes, backups."""

from __future__ import annotations

import difflib
import posixpath
from collections.abc import Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from reconciler.errors import Location, SpecError
from reconciler.spec.models import BACKUPABLE_KINDS, Kind, Spec, Strategy

Locate = Callable[[tuple], Location]


def cross_check(spec: Spec, locate: Locate) -> list[SpecError]:
    errors: list[SpecError] = []
    for check in (_unknown_dependencies, _cycles, _port_clashes, _undeclared_references, _mounted_twice,
                  _backupable, _backup_databases, _shared_data, _app_depends_only_known_profiles, _blue_green,
                  _retention, _s3):
        errors.extend(check(spec, locate))
    return errors


def _unknown_dependencies(spec: Spec, locate: Locate) -> list[SpecError]:
    errors = []
    for name, service in spec.services.items():
        for dep in service.depends_on:
            if dep == name:
                errors.append(SpecError(f"service {name} depends on itself", ref="spec.cycle",
                                        location=locate(("services", name, "depends_on", dep)),
                                        hint="remove the entry"))
            elif dep not in spec.services:
                errors.append(SpecError(
                    f"service {name} depends on unknown service {dep!r}", ref="spec.unknown-service",
                    location=locate(("services", name, "depends_on", dep)),
                    hint=_meant(dep, spec.services) + f"declared services: {', '.join(sorted(spec.services))}"))
    return errors


def _meant(name: str, declared) -> str:
    close = difflib.get_close_matches(name, sorted(declared), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? " if close else ""


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """One dependency cycle as a path that starts and ends on the same name, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, [])):
            if nxt not in graph or nxt == node:
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def _cycles(spec: Spec, locate: Locate) -> list[SpecError]:
    cycle = find_cycle({name: list(s.depends_on) for name, s in spec.services.items()})
    if not cycle:
        return []
    return [SpecError(f"dependency cycle: {' → '.join(cycle)}", ref="spec.cycle",
                      location=locate(("services", cycle[0], "depends_on", cycle[1])),
                      hint="break the cycle: one of these services must not wait for the other")]


def _port_clashes(spec: Spec, locate: Locate) -> list[SpecError]:
    taken: dict[tuple[int, str], list[tuple[str, str]]] = {}  # every binding so far, not only the first
    errors = []
    for name, service in spec.services.items():
        for index, port in enumerate(service.ports):
            if port.host is None:
                continue
            bound = taken.setdefault((port.host, port.protocol), [])
            ip = port.host_ip or "0.0.0.0"
            other = next((o for o in bound if o[1] == ip or "0.0.0.0" in (ip, o[1])), None)
            if other:
                errors.append(_port_clash(other[0], name, f"{port.host}/{port.protocol}",
                                          locate(("services", name, "ports", index))))
            else:
                bound.append((name, ip))
    return errors


def _port_clash(first: str, second: str, port: str, where: Location) -> SpecError:
    if first == second:
        return SpecError(f"service {second} publishes host port {port} twice", ref="spec.port-clash",
                         location=where, hint="remove one of the two entries, or give it another host port")
    return SpecError(f"services {first} and {second} both publish host port {port}", ref="spec.port-clash",
                     location=where, hint="give one of them another host port")


def _undeclared_references(spec: Spec, locate: Locate) -> list[SpecError]:
    errors = []
    for name, service in spec.services.items():
        for index, mount in enumerate(service.volumes):
            if not mount.is_host_path and mount.source not in spec.volumes:
                errors.append(SpecError(
                    f"service {name} mounts undeclared volume {mount.source!r}",
                    ref="spec.undeclared-volume", location=locate(("services", name, "volumes", index)),
                    hint=_close(mount.source, spec.volumes, f"declare it under top-level volumes: "
                                                             f"({mount.source}: {{}}) or use an absolute host path")))
        for index, network in enumerate(service.networks):
            if network in service.networks[:index]:  # the engine refuses a second join
                errors.append(SpecError(
                    f"service {name} joins network {network!r} twice", ref="spec.network-twice",
                    location=locate(("services", name, "networks", index)), hint="remove one of the two entries"))
            elif network not in spec.networks:
                errors.append(SpecError(
                    f"service {name} joins undeclared network {network!r}",
                    ref="spec.undeclared-network", location=locate(("services", name, "networks", index)),
                    hint=_close(network, spec.networks, f"declare it under top-level networks: ({network}: {{}})")))
    return errors


def _close(name: str, declared, advice: str) -> str:
    """A declared name it is likely a typo of, first: declaring the typo would give the
    service a new, empty volume or network."""
    close = difflib.get_close_matches(name, sorted(declared), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? (else {advice})" if close else advice


def _backupable(spec: Spec, locate: Locate) -> list[SpecError]:
    errors = []
    for name, service in spec.services.items():
        if not service.stateful:
            continue
        where = locate(("services", name, "stateful"))
        if service.kind not in BACKUPABLE_KINDS:
            errors.append(SpecError(
                f"service {name} is stateful but kind {service.kind.value} cannot be backed up",
                ref="spec.not-backupable", location=where,
                hint="use kind postgres, redis or generic (volume archive), or drop stateful"))
        elif service.kind is Kind.GENERIC and not service.volumes:
            errors.append(SpecError(
                f"service {name} is stateful but has no volume to back up", location=where,
                ref="spec.not-backupable", hint="mount its data on a declared volume"))
    return errors


def _backup_databases(spec: Spec, locate: Locate) -> list[SpecError]:
    """A database listed twice was dumped twice into one backup that no restore could load
    (the second copy's schema clashes with the first); an empty name named nothing."""
    errors = []
    for name, service in spec.services.items():
        listed = service.backup.databases
        for index, database in enumerate(listed):
            where = locate(("services", name, "backup", "databases", index))
            if not database:
                errors.append(SpecError(f"service {name} lists an empty database name in backup.databases",
                                        ref="spec.database-name", location=where,
                                        hint="write the database's name, or remove the entry"))
            elif database in listed[:index]:
                errors.append(SpecError(f"service {name} lists database {database!r} twice in backup.databases",
                                        ref="spec.database-twice", location=where,
                                        hint="remove one of the two entries"))
    return errors


def _mounted_twice(spec: Spec, locate: Locate) -> list[SpecError]:
    """Docker refuses a container with two mounts at one path ("Duplicate mount point"): said
    here, at the second, not by the engine halfway through an apply."""
    errors = []
    for name, service in spec.services.items():
        targets: set[str] = set()
        for index, mount in enumerate(service.volumes):
            target = posixpath.normpath(mount.target)
            if target in targets:
                errors.append(SpecError(
                    f"service {name} has two mounts at one path in the container", ref="spec.mount-twice",
                    location=locate(("services", name, "volumes", index)),
                    hint="give each mount its own path in the container (the part after ':')"))
            targets.add(target)
    return errors


def _shared_data(spec: Spec, locate: Locate) -> list[SpecError]:
    """Each stateful service's data is backed up, replaced and restored as its own: on a volume
    (or host folder) another stateful service also writes, a restore of one would put its backup
    in place of the other's newer data, and two database servers on one folder corrupt it."""
    owner: dict[str, str] = {}
    errors = []
    for name, service in spec.services.items():
        if not service.stateful:
            continue
        for index, mount in enumerate(service.volumes):
            declared = spec.volumes.get(mount.source)
            folder = mount.source if mount.is_host_path else declared.bind if declared else None
            data = posixpath.normpath(folder) if folder else mount.source  # a bound volume is its folder
            other = owner.setdefault(data, name) if not mount.read_only else name
            if other != name:
                what = "the same host folder" if folder else f"volume {mount.source}"  # a path may be interpolated
                errors.append(SpecError(
                    f"stateful services {other} and {name} both write to {what}",
                    ref="spec.shared-data", location=locate(("services", name, "volumes", index)),
                    hint="give each stateful service its own volume (a restore of one would replace the "
                         "other's data), or mount it read-only (:ro) in one of them"))
    return errors


def _app_depends_only_known_profiles(spec: Spec, locate: Locate) -> list[SpecError]:
    """Infrastructure must not wait for the app: apply brings infrastructure up first."""
    errors = []
    for name, service in spec.services.items():
        if service.profile != "infrastructure":
            continue
        for dep in service.depends_on:
            other = spec.services.get(dep)
            if other is not None and other.profile == "app":
                errors.append(SpecError(
                    f"infrastructure service {name} depends on app service {dep}",
                    ref="spec.profile-order", location=locate(("services", name, "depends_on", dep)),
                    hint="infrastructure is converged before the app; move the dependency the other way"))
    return errors


def _blue_green(spec: Spec, locate: Locate) -> list[SpecError]:
    """Blue-green runs the old and new container side by side: never on shared data, never
    both binding a host port; behind a proxy, the proxy reaches the app over a network."""
    errors = []
    for name, service in spec.services.items():
        if service.deploy.strategy is not Strategy.BLUE_GREEN:
            continue
        where = locate(("services", name, "deploy", "strategy"))
        problem = _blue_green_problem(spec, name)
        if problem:
            errors.append(SpecError(f"service {name} cannot use blue-green: {problem[0]}",
                                    ref="spec.blue-green", location=where, hint=problem[1]))
    return errors


def _blue_green_problem(spec: Spec, name: str) -> tuple[str, str] | None:
    service = spec.services[name]
    if service.stateful:
        return ("it is stateful, and two servers must not run on the same data",
                "use strategy: recreate (apply backs up, replaces, restores and verifies it)")
    if not service.proxied and any(p.host for p in service.ports):
        return (("it publishes a host port and has no health.http, so no proxy can hold the port "
                 "while both versions run"), "add health.http (a proxy then holds the port) or use recreate")
    if service.proxied and not service.networks:
        return ("its proxy reaches it over a project network, and it joins none",
                "add it to a network declared under networks:")
    if service.proxied and any(p.protocol != "tcp" for p in service.ports):
        return "the proxy forwards HTTP over TCP only", "use strategy: recreate for UDP ports"
    clash = f"{spec.project}-{name}-proxy"
    if any(f"{spec.project}-{other}" == clash for other in spec.services):
        return (f"its proxy would be named {clash}, like another service's container",
                "rename one of the two services")
    return None


def _retention(spec: Spec, locate: Locate) -> list[SpecError]:
    """What prune would refuse at every backup is refused here, once, with the place to fix."""
    retention = spec.backup.retention
    errors = []
    if not retention.keeps_anything:
        errors.append(SpecError(
            "backup.retention keeps nothing: daily, weekly and monthly are all 0",
            ref="spec.retention", location=locate(("backup", "retention")),
            hint="keep at least one backup (e.g. daily: 7); to keep every backup, run "
                 "`reconcile backup --no-prune`; to drop them all, delete them by hand"))
    if not _is_zone(retention.timezone):
        errors.append(SpecError(
            "backup.retention.timezone is not a known time zone", ref="spec.timezone",
            location=locate(("backup", "retention", "timezone")), hint=_zone_hint(retention.timezone)))
    return errors


def _s3(spec: Spec, locate: Locate) -> list[SpecError]:
    """An enabled S3 store without a bucket fails every backup's copy: said here, not then."""
    s3 = spec.backup.s3
    if not s3.enabled or s3.bucket.strip():
        return []
    written = "bucket" in s3.model_fields_set  # at its line, where an error can name its ${env:…}
    return [SpecError("backup.s3 is enabled but names no bucket", ref="spec.s3-bucket",
                      location=locate(("backup", "s3", "bucket") if written else ("backup", "s3")),
                      hint="set backup.s3.bucket (it must exist), or enabled: false")]


def _is_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder such as "Europe"
        return False
    return True


def _zone_hint(name: str) -> str:
    """The value is not echoed (it may be interpolated); a close zone name is offered."""
    zones = sorted(available_timezones() | {"UTC"})
    close = [zone for zone in zones if zone.lower() == name.lower()] or \
        difflib.get_close_matches(name, zones, n=1, cutoff=0.8)
    advice = "use an IANA name such as UTC or Europe/Berlin"
    return f"did you mean {close[0]!r}? ({advice})" if close else advice
