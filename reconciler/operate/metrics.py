"""Prometheus text-format metrics for node_exporter's textfile collector.

node_exporter reads every ``*.prom`` file in its folder on each scrape, so a half-written
file would be scraped as garbage or as missing series. ``write_atomic`` writes a temporary
file in the same folder (``.<name>.<random>.tmp``: not ``*.prom``, so never collected),
fsyncs it, sets mode 0644 and renames it over the target: a scrape sees the old file or the
new one, never a part.

Rendering is pure: ``Metric`` in, exposition text out, with label values escaped as the
format requires (backslash, double quote, newline).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

MODE = 0o644


@dataclass(frozen=True)
class Sample:
    labels: tuple[tuple[str, str], ...]
    value: float

    @classmethod
    def of(cls, value: float, **labels: str) -> Sample:
        return cls(tuple(labels.items()), value)


@dataclass(frozen=True)
class Metric:
    name: str
    help: str
    type: str = "gauge"
    samples: tuple[Sample, ...] = field(default_factory=tuple)


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def render(metrics: Iterable[Metric]) -> str:
    """One HELP and TYPE line per metric, then its samples; metrics without samples are left
    out (a TYPE with no series would only confuse)."""
    lines: list[str] = []
    for metric in metrics:
        if not metric.samples:
            continue
        lines.append(f"# HELP {metric.name} {escape_help(metric.help)}")
        lines.append(f"# TYPE {metric.name} {metric.type}")
        for sample in metric.samples:
            labels = ",".join(f'{k}="{escape_label(str(v))}"' for k, v in sample.labels)
            lines.append(f"{metric.name}{{{labels}}} {format_value(sample.value)}" if labels
                         else f"{metric.name} {format_value(sample.value)}")
    return "\n".join(lines) + "\n" if lines else ""


def write_atomic(path: Path, text: str) -> Path:
    """Replace ``path`` with ``text`` in one rename; on any error the old file stays and the
    temporary file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)  # not the umask's 0777
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, MODE)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def stack_metrics(project: str, drift: dict[str, bool], health: dict[str, int],
                  backups: Iterable, last_apply) -> list[Metric]:
    """The series of ``reconcile drift --metrics-file``; ``backups`` are ``gather.BackupFact``s,
    ``last_apply`` a ``gather.ApplyFact`` or None (then the apply series are left out)."""
    backups = list(backups)
    applied = [] if last_apply is None else [last_apply]
    return [
        Metric("reconcile_drift", "1 when the service differs from the spec (a plan would change it).",
               samples=tuple(Sample.of(int(v), project=project, service=s) for s, v in sorted(drift.items()))),
        Metric("reconcile_service_health",
               "Service health: 0 healthy, 1 minor, 2 critical, 3 container missing.",
               samples=tuple(Sample.of(v, project=project, service=s) for s, v in sorted(health.items()))),
        Metric("reconcile_last_backup_timestamp_seconds",
               "Unix time of the newest backup of the service in the location.",
               samples=tuple(Sample.of(b.epoch, project=project, service=b.service, location=b.location)
                             for b in backups)),
        Metric("reconcile_last_backup_size_bytes", "Size of the newest backup file of the service.",
               samples=tuple(Sample.of(b.size, project=project, service=b.service, location=b.location)
                             for b in backups)),
        Metric("reconcile_last_apply_success", "1 when the last apply succeeded (ok or warnings).",
               samples=tuple(Sample.of(int(a.success), project=project) for a in applied)),
        Metric("reconcile_last_apply_duration_seconds", "Duration of the last apply.",
               samples=tuple(Sample.of(a.duration_s, project=project) for a in applied
                             if a.duration_s is not None)),
        Metric("reconcile_last_apply_timestamp_seconds", "Unix time the last apply finished (or started).",
               samples=tuple(Sample.of(a.epoch, project=project) for a in applied if a.epoch is not None)),
    ]
