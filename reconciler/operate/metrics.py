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
from typing import TYPE_CHECKING

from reconciler.errors import ReconcileError

if TYPE_CHECKING:
    from reconciler.operate.gather import ApplyFact, BackupFact

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


@dataclass(frozen=True)
class StackFacts:
    """What one ``drift --metrics-file`` run knows. ``drift`` or ``health`` is None when the run
    could not judge it (an apply is changing the stack; the engine cannot be reached): their
    series are then left out, never written as a "no drift" or "healthy" nobody saw.

    ``profiles`` are the run's ``--profile`` values: such a run covers those profiles'
    services only, and every series it writes carries a ``profile`` label, so files written
    by runs with different profiles never hold the same series (node_exporter's textfile
    collector refuses a series it collected before)."""

    project: str
    profiles: tuple[str, ...] = ()
    engine_up: bool = True
    apply_running: bool = False
    drift: dict[str, bool] | None = None
    health: dict[str, int] | None = None
    backups: tuple[BackupFact, ...] = ()
    last_apply: ApplyFact | None = None  # None: the apply series are left out

    @property
    def labels(self) -> dict[str, str]:
        """The labels every series of the run starts with."""
        if not self.profiles:
            return {"project": self.project}
        return {"project": self.project, "profile": ",".join(sorted(set(self.profiles)))}


def stack_metrics(facts: StackFacts) -> list[Metric]:
    """The series of ``reconcile drift --metrics-file``, in the order they are written."""
    return [*_run_metrics(facts), *_service_metrics(facts), *_backup_metrics(facts), *_apply_metrics(facts)]


def _run_metrics(facts: StackFacts) -> list[Metric]:
    base = facts.labels
    return [
        Metric("reconcile_engine_up", "1 when the run reached the Docker engine, 0 when it could not "
               "(drift and health are then not reported).", samples=(Sample.of(int(facts.engine_up), **base),)),
        Metric("reconcile_apply_running", "1 while an apply, restore, rollback or heal holds the project's "
               "lock (drift is then not judged), else 0.", samples=(Sample.of(int(facts.apply_running), **base),)),
    ]


def _service_metrics(facts: StackFacts) -> list[Metric]:
    base = facts.labels
    return [
        Metric("reconcile_drift", "1 when the service differs from the spec (a plan would change it).",
               samples=tuple(Sample.of(int(v), **base, service=s) for s, v in sorted((facts.drift or {}).items()))),
        Metric("reconcile_service_health",
               "Service health: 0 healthy, 1 minor, 2 critical, 3 container missing.",
               samples=tuple(Sample.of(v, **base, service=s) for s, v in sorted((facts.health or {}).items()))),
    ]


def _backup_metrics(facts: StackFacts) -> list[Metric]:
    base = facts.labels
    return [
        Metric("reconcile_last_backup_timestamp_seconds",
               "Unix time of the newest backup of the service in the location.",
               samples=tuple(Sample.of(b.epoch, **base, service=b.service, location=b.location)
                             for b in facts.backups)),
        Metric("reconcile_last_backup_size_bytes", "Size of the newest backup file of the service.",
               samples=tuple(Sample.of(b.size, **base, service=b.service, location=b.location)
                             for b in facts.backups)),
    ]


def _apply_metrics(facts: StackFacts) -> list[Metric]:
    base, applied = facts.labels, [] if facts.last_apply is None else [facts.last_apply]
    return [
        Metric("reconcile_last_apply_success", "1 when the last apply succeeded (ok or warnings).",
               samples=tuple(Sample.of(int(a.success), **base) for a in applied)),
        Metric("reconcile_last_apply_duration_seconds", "Duration of the last apply.",
               samples=tuple(Sample.of(a.duration_s, **base) for a in applied if a.duration_s is not None)),
        Metric("reconcile_last_apply_timestamp_seconds", "Unix time the last apply finished (or started).",
               samples=tuple(Sample.of(a.epoch, **base) for a in applied if a.epoch is not None)),
    ]


def write_file(path: Path, metrics: Iterable[Metric]) -> Path:
    """``write_atomic`` of the rendered ``metrics``, its failures as errors that say what to do."""
    path = Path(path)
    if path.is_dir():
        raise ReconcileError(f"cannot write the metrics to {path}: it is a folder", ref="drift.metrics-file",
                             hint=f"give a file name, e.g. {path / 'reconcile.prom'}")
    try:
        return write_atomic(path, render(metrics))
    except OSError as exc:
        raise ReconcileError(f"cannot write the metrics to {path}: {exc.strerror or exc}",
                             ref="drift.metrics-file", hint="choose a file in a folder you can write to "
                             "(node_exporter's textfile folder)") from None
