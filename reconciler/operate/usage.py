"""Resource usage for diagnose: host CPU, memory and disk, and each live container's CPU and
memory, in the seed's ``resource_usage`` shape.

CPU is a rate, so it needs two samples. The engine's own two-sample stats wait a full second
per container; instead one-shot samples of every container and of /proc/stat are taken at
the start and the end of one short window, in parallel, so the whole read costs ``window``
seconds however many services there are.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from reconciler import dockerio
from reconciler.errors import EngineError
from reconciler.operate.facts import DiskFacts, MountFacts

WINDOW_S = 0.5


def resource_usage(client, live: dict[str, str], disks: tuple[DiskFacts, ...],
                   mounts: dict[str, tuple[MountFacts, ...]], window: float = WINDOW_S) -> dict:
    host_before = read_proc_stat()
    first = _sample_all(client, live)
    time.sleep(window if live or host_before else 0)
    second = _sample_all(client, live)
    host_after = read_proc_stat()
    containers = {name: container_usage(first.get(name), second.get(name)) for name in live}
    return {
        "cpu": {"host_percent": cpu_percent(host_before, host_after), "cores": os.cpu_count(),
                "load_average": _loadavg(),
                "containers": {n: u["cpu_percent"] for n, u in containers.items()}},
        "memory": {"host": host_memory(), "containers": {n: u["memory"] for n, u in containers.items()}},
        "disk": {"host": {d.label: disk_dict(d) for d in disks},
                 "volumes": {f"{svc}:{m.target}": _mount_dict(m) for svc, ms in mounts.items()
                             for m in ms if m.size_bytes}},
    }


def host_only(disks: tuple[DiskFacts, ...]) -> dict:
    """When the engine cannot be reached: what the host alone can tell."""
    return {"cpu": {"load_average": _loadavg(), "cores": os.cpu_count()},
            "memory": {"host": host_memory()},
            "disk": {"host": {d.label: disk_dict(d) for d in disks}}}


def _sample_all(client, live: dict[str, str]) -> dict[str, dict]:
    if not live:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, len(live))) as pool:
        found = pool.map(lambda cid: _sample(client, cid), live.values())
        return {n: s for n, s in zip(live, found) if s}


def _sample(client, container: str) -> dict | None:
    try:
        return dockerio.container_stats(client, container)
    except EngineError:
        return None


def container_usage(first: dict | None, second: dict | None) -> dict:
    """CPU percent of one core-equivalent times cores (like ``docker stats``) and memory."""
    second = second or first or {}
    cpu = None
    if first and second:
        used = _cpu_total(second) - _cpu_total(first)
        system = (second.get("cpu_stats") or {}).get("system_cpu_usage", 0) - \
            (first.get("cpu_stats") or {}).get("system_cpu_usage", 0)
        cores = (second.get("cpu_stats") or {}).get("online_cpus") or os.cpu_count() or 1
        cpu = round(used / system * cores * 100, 1) if system > 0 and used >= 0 else None
    memory = second.get("memory_stats") or {}
    usage = memory.get("usage")
    cache = (memory.get("stats") or {}).get("total_inactive_file") or \
        (memory.get("stats") or {}).get("inactive_file") or 0
    used_bytes = max(usage - cache, 0) if usage is not None else None
    limit = memory.get("limit")
    return {"cpu_percent": cpu, "memory": {
        "usage_bytes": used_bytes, "limit_bytes": limit,
        "percent": round(used_bytes / limit * 100, 1) if used_bytes is not None and limit else None}}


def _cpu_total(sample: dict) -> int:
    return int(((sample.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage") or 0)


def read_proc_stat(path: Path = Path("/proc/stat")) -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs."""
    try:
        first = path.read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    values = [int(v) for v in first[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


def cpu_percent(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    if not before or not after or after[1] <= before[1]:
        return None
    return round((after[0] - before[0]) / (after[1] - before[1]) * 100, 1)


def host_memory(path: Path = Path("/proc/meminfo")) -> dict:
    try:
        fields = dict(line.split(":", 1) for line in path.read_text().splitlines() if ":" in line)
    except OSError:
        return {}
    total = _kib(fields.get("MemTotal"))
    available = _kib(fields.get("MemAvailable"))
    if not total or available is None:
        return {}
    return {"total_bytes": total, "available_bytes": available,
            "used_percent": round((total - available) / total * 100, 1)}


def _kib(text: str | None) -> int | None:
    return int(text.split()[0]) * 1024 if text and text.split()[0].isdigit() else None


def disk_dict(disk: DiskFacts) -> dict:
    return {"path": disk.path, "total_bytes": disk.total_bytes, "free_bytes": disk.free_bytes,
            "free_percent": round(disk.free_ratio * 100, 1)}


def _mount_dict(mount: MountFacts) -> dict:
    size, free = mount.size_bytes or 0, mount.free_bytes or 0
    return {"source": mount.source, "total_bytes": size, "free_bytes": free,
            "free_percent": round(free / size * 100, 1) if size else None}


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None
