"""``reconcile status``: one row per service from one snapshot plus health, backups and the
journal. Building the rows is pure; ``gather_status`` does the reading.

A row (``status --json`` ``services[]``): ``service``, ``profile``, ``image`` (the spec's),
``running_image`` (the live container's, None when there is none), ``image_matches_spec``,
``state``, ``health``, ``uptime``, ``restarts``, ``last_backup`` {local, s3}, ``last_apply``."""

from __future__ import annotations

from datetime import UTC, datetime

from reconciler.observe.models import Observed, ObservedContainer
from reconciler.operate.facts import parse_time
from reconciler.operate.gather import ApplyFact, BackupFact
from reconciler.plan import leftovers
from reconciler.plan.display import Views
from reconciler.spec.load import LoadedSpec


def rows(loaded: LoadedSpec, observed: Observed, health: dict, backups: list[BackupFact],
         applied: dict[str, str], now: datetime) -> list[dict]:
    spec = loaded.spec
    newest = {(b.service, b.location): b.timestamp for b in backups}
    out = []
    order = sorted(spec.services.items(), key=lambda kv: (kv[1].profile != "infrastructure",
                                                         kv[1].profile, kv[0]))
    for name, service in order:
        live = leftovers.live(observed, name)
        result = health.get(name)
        running = live is not None and live.running
        out.append({
            "service": name, "profile": service.profile, **images(loaded, name, live),
            "state": live.state.value if live else "missing",
            "health": result.status if result is not None else "-",
            "uptime": uptime(live.started_at, now) if running else None,
            "restarts": live.restart_count if live else None,
            "last_backup": {"local": newest.get((name, "local")), "s3": newest.get((name, "s3"))},
            "last_apply": applied.get(name),
        })
    return out


def images(loaded: LoadedSpec, name: str, live: ObservedContainer | None) -> dict:
    """``image``: the spec's, as the spec's display rules show it (its meaning since status
    began); ``running_image``: the one the live container was created from (its Config.Image),
    None without a container; ``image_matches_spec``: whether they are the same reference.

    Status must say what runs: after a spec change not applied yet, or an apply rolled back,
    the spec's image is not it. The live reference is shown by the rules a plan shows a
    container's old image with, so a part that was or may be a secret reads ``(sensitive)``;
    the comparison is of the real references, which masking could make look alike."""
    spec_image = loaded.spec.services[name].image
    shown = loaded.shown(("services", name, "image"), spec_image)
    if live is None or not live.image_ref:
        return {"image": shown, "running_image": None, "image_matches_spec": None}
    same = live.image_ref == str(spec_image)
    running = shown if same else Views(loaded, name, live.sensitive).before_text("image", live.image_ref)
    return {"image": shown, "running_image": running, "image_matches_spec": same}


def uptime(started_at: str | None, now: datetime) -> str | None:
    """``3d 4h``, ``5h 12m``, ``7m 3s``: two units are enough to read at a glance."""
    started = parse_time(started_at)
    if started is None:
        return None
    seconds = max(int((now - started).total_seconds()), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def document(loaded: LoadedSpec, table: list[dict], last: ApplyFact | None, warnings: list[str],
             now: datetime) -> dict:
    return {"project": loaded.spec.project, "timestamp": now.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "services": table, "last_apply": last.to_dict() if last else None, "warnings": warnings}


def gather_status(session, now: datetime | None = None) -> dict:
    from reconciler.operate import gather
    from reconciler.pipeline import observe_for

    now = now or datetime.now(UTC)
    warnings: list[str] = []
    observed = observe_for(session.loaded, session.client)
    health = gather.health_of(session, sorted(session.spec.services))
    backups = gather.last_backups(session, warnings)
    state_dir = session.loaded.state_dir()
    table = rows(session.loaded, observed, health, backups, gather.applied_services(state_dir), now)
    return document(session.loaded, table, gather.last_apply(state_dir, running=True), warnings, now)
