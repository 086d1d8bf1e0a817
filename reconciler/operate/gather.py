"""Facts that drift's metrics and ``status`` share: health levels, last backups per service and
location, the last apply.

Each reader degrades to a warning instead of failing: metrics every 15 minutes are worth
more with one series missing than not written at all.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from reconciler.apply.journal import RUNNING, ApplyRecord, history
from reconciler.errors import ReconcileError
from reconciler.health import Level, ServiceHealth, check_service
from reconciler.operate.metrics import StackFacts
from reconciler.session import Session
from reconciler.spec.load import LoadedSpec
from reconciler.spec.models import Spec
from reconciler.storage.prune import parse_timestamp


@dataclass(frozen=True)
class BackupFact:
    service: str
    location: str
    backup_id: str
    timestamp: str
    epoch: float
    size: int


@dataclass(frozen=True)
class ApplyFact:
    apply_id: str
    result: str
    success: bool | None  # None while it runs: neither succeeded nor failed yet
    started: str
    finished: str | None
    epoch: float | None
    duration_s: float | None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def health_of(session: Session, services: list[str]) -> dict[str, ServiceHealth]:
    """Deep health per service; a probe that cannot run counts as critical, not as a crash."""
    out = {}
    for name in services:
        try:
            out[name] = check_service(session, name)
        except Exception as exc:  # noqa: BLE001 - reported as the service's state
            out[name] = ServiceHealth(name, "error", Level.CRITICAL,
                                      {"error": getattr(exc, "message", type(exc).__name__)})
    return out


def last_backups(session: Session, warnings: list[str]) -> list[BackupFact]:
    """The newest backup of each service in each location (``local``, ``s3``)."""
    from reconciler.backup import metadata

    project = session.spec.project
    local_docs = _docs(lambda: metadata.load_all(session.local, project=project), "local", warnings)
    found = _newest(local_docs, "local")
    if session.spec.backup.s3.enabled:
        s3_docs = _docs(lambda: metadata.load_all(session.s3, project=project), "S3", warnings)
        if s3_docs is None:  # S3 unreachable: what the local metadata says was copied
            s3_docs = [d for d in local_docs or [] if (d.get("storage") or {}).get("s3") == "ok"]
        found += _newest(s3_docs, "s3")
    return found


def _docs(read, where: str, warnings: list[str]) -> list[dict] | None:
    try:
        return read()
    except ReconcileError as exc:
        warnings.append(f"cannot read the {where} backup metadata: {exc.message}")
        return None


def _newest(docs: list[dict] | None, location: str) -> list[BackupFact]:
    newest: dict[str, BackupFact] = {}
    for doc in docs or []:
        try:
            epoch = parse_timestamp(doc.get("timestamp")).timestamp()
        except (ValueError, TypeError):
            continue
        for service, entry in (doc.get("services") or {}).items():
            fact = BackupFact(service, location, str(doc.get("backup_id", "")), doc["timestamp"], epoch,
                              int(entry.get("size") or 0))
            if service not in newest or epoch >= newest[service].epoch:
                newest[service] = fact
    return sorted(newest.values(), key=lambda f: f.service)


def last_apply(state_dir: Path, *, running: bool = False, profiles: Collection[str] = ()) -> ApplyFact | None:
    """The newest apply that ended (the metrics' last apply: one in progress has no outcome
    yet, and is not a failure); with ``running``, an apply in progress if there is one
    (``status`` shows it as ``running``); with ``profiles``, the newest that covered one of
    them (an apply limited to other profiles did not touch their services)."""
    records = [r for r in history(state_dir)
               if (running or r.result != RUNNING) and _covers(r.profiles, profiles)]
    return _apply_fact(records[-1]) if records else None


def _covers(applied: Collection[str], wanted: Collection[str]) -> bool:
    return not applied or not wanted or bool(set(applied) & set(wanted))


def _apply_fact(record: ApplyRecord) -> ApplyFact:
    when = record.finished or record.started
    try:
        epoch = parse_timestamp(when).timestamp()
    except (ValueError, TypeError):
        epoch = None
    success = None if record.result == RUNNING else record.result in ("ok", "warnings")
    return ApplyFact(record.apply_id, record.result, success,
                     record.started, record.finished, epoch, record.duration_s)


def applied_services(state_dir: Path, limit: int = 50) -> dict[str, str]:
    """When each service was last changed by an apply (its action finished ok): newest
    ``limit`` journals only, so a long history does not slow ``status`` down."""
    from reconciler.apply.journal import read_records

    folder = state_dir / "journal"
    files = sorted(folder.glob("*.jsonl"))[-limit:] if folder.is_dir() else []
    out: dict[str, str] = {}
    for path in files:
        for record in read_records(path):
            if record.get("event") == "action-end" and record.get("status", "ok") == "ok":
                resource = str(record.get("action", "")).partition(":")[2]
                if resource:
                    out[resource] = record.get("ts", "")
    return out


# -- what ``drift --metrics-file`` writes ----------------------------------------------------

def scope_of(spec: Spec, profiles: Collection[str]) -> list[str]:
    """The services a run limited to ``profiles`` covers (all of them without profiles)."""
    return [name for name, service in sorted(spec.services.items()) if not profiles or service.profile in profiles]


def metrics_facts(session: Session, profiles: Collection[str], drift: dict[str, bool] | None,
                  apply_running: bool, warnings: list[str]) -> StackFacts:
    """A run that reached the engine: health of the services in scope, their newest backups,
    the last apply that covered them; ``drift`` None when it was not judged."""
    scope = scope_of(session.spec, profiles)
    health = {name: int(result.level) for name, result in health_of(session, scope).items()}
    return StackFacts(session.spec.project, tuple(profiles), engine_up=True, apply_running=apply_running,
                      drift=drift, health=health, **_stored_facts(session, scope, profiles, warnings))


def facts_without_engine(loaded: LoadedSpec, profiles: Collection[str], warnings: list[str]) -> StackFacts:
    """A run that could not reach the engine: only what is known without it (the stores'
    backup metadata, the journal, the lock), so the file stops saying "healthy" and "no drift"
    about a stack nobody could see."""
    from reconciler.apply.lock import held_by

    session = Session(loaded)  # connects only when asked to, and nothing here asks
    running = held_by(loaded.state_dir(), loaded.spec.project) is not None
    return StackFacts(loaded.spec.project, tuple(profiles), engine_up=False, apply_running=running,
                      **_stored_facts(session, scope_of(loaded.spec, profiles), profiles, warnings))


def _stored_facts(session: Session, scope: list[str], profiles: Collection[str], warnings: list[str]) -> dict:
    """The backup and apply facts, limited to the run's profiles: two per-profile files must
    not both carry another profile's backups (a series in two files is refused)."""
    backups = [b for b in last_backups(session, warnings) if not profiles or b.service in scope]
    return {"backups": tuple(backups),
            "last_apply": last_apply(session.loaded.state_dir(), profiles=profiles)}
