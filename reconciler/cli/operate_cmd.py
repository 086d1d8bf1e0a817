"""Operate commands: ``diagnose``, ``drift`` and ``status``.

Exit codes follow DESIGN.md: diagnose 0 no issues, 1 warnings only, 2 critical; drift 0 no
drift, 2 drift, 1 error (any ``ReconcileError``, mapped in ``main``); status 0.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from reconciler.cli.app import STATE, JsonOpt, ProfileOpt, app

ServicesArg = Annotated[Optional[list[str]], typer.Argument(help="Services (default: all).")]


@app.command()
def diagnose(
    services: ServicesArg = None,
    as_json: JsonOpt = False,
    save_facts: Annotated[Optional[Path], typer.Option(
        "--save-facts", help="Also write the collected facts (redacted) as JSON, e.g. for a bug "
                             "report or a test case.")] = None,
) -> None:
    """Find what is wrong and say how to fix it. Exit 0 no issues, 1 warnings, 2 critical."""
    from reconciler.operate import diagnose as diag
    from reconciler.session import Session
    from reconciler.spec.load import load_spec

    STATE.json = as_json
    session = Session(load_spec(STATE.file))
    result = diag.run(session, services)
    if save_facts is not None:
        save_facts.write_text(json.dumps(result.facts.to_dict(), indent=2) + "\n", encoding="utf-8")
    report = result.report()
    _notify_critical(session, result, partial=bool(services))
    _show(report, as_json, "print_diagnosis")
    raise typer.Exit(result.exit_code)


def _notify_critical(session, result, partial: bool) -> None:
    """Critical issues → a notification (once per change); a run on some services only
    never clears the memory of a notification about the others."""
    from reconciler.operate.notify import Event, Notification, send_if_new

    critical = result.critical
    note = None
    if critical:
        services = sorted({i.service for i in critical})
        note = Notification(Event.CRITICAL_HEALTH, session.spec.project, "critical",
                            f"{len(critical)} critical issue(s): {', '.join(services)}",
                            tuple(f"{i.service}: {i.issue} — {i.details}" for i in critical))
    if note is not None or not partial:
        send_if_new(session.loaded.state_dir(), "diagnose", note)


@app.command()
def drift(
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
    metrics_file: Annotated[Optional[Path], typer.Option(
        "--metrics-file", help="Write Prometheus metrics here (node_exporter textfile collector), "
                               "e.g. /var/lib/node_exporter/textfile_collector/reconcile.prom.")] = None,
) -> None:
    """Compare the stack with the spec, changing nothing. Exit 0 no drift, 2 drift, 1 error."""
    from reconciler import dockerio
    from reconciler.operate import gather
    from reconciler.operate.drift import drift_of
    from reconciler.pipeline import snapshot
    from reconciler.session import Session

    STATE.json = as_json
    client = dockerio.connect()
    snap = snapshot(STATE.file, profile or (), client=client)
    session = Session(snap.loaded, _client=client)
    scope = [n for n, s in sorted(snap.loaded.spec.services.items())
             if not snap.plan.profiles or s.profile in snap.plan.profiles]
    drifted = drift_of(snap.loaded, snap.plan, gather.live_hand_edits(session, snap.observed, scope))
    data = {"project": snap.loaded.spec.project, "drift": bool(drifted), "profiles": list(snap.plan.profiles),
            "drifted": [d.to_dict() for d in drifted], "warnings": list(snap.plan.warnings)}
    if metrics_file is not None:
        data["metrics_file"] = str(_write_metrics(session, metrics_file, scope, drifted, data["warnings"]))
    _notify_drift(session, drifted, bool(snap.plan.profiles))
    _show(data, as_json, "print_drift")
    raise typer.Exit(2 if drifted else 0)


def _write_metrics(session, path: Path, scope: list[str], drifted, warnings: list[str]) -> Path:
    from reconciler.operate import gather, metrics

    flags = {name: False for name in scope} | {d.service: True for d in drifted}
    health = {name: int(result.level) for name, result in gather.health_of(session, scope).items()}
    series = metrics.stack_metrics(session.spec.project, flags, health,
                                   gather.last_backups(session, warnings),
                                   gather.last_apply(session.loaded.state_dir()))
    return metrics.write_atomic(path, metrics.render(series))


def _notify_drift(session, drifted, partial: bool) -> None:
    from reconciler.operate.notify import Event, Notification, send_if_new

    note = None
    if drifted:
        note = Notification(Event.DRIFT, session.spec.project, "warning",
                            f"drift in {len(drifted)} service(s): {', '.join(d.service for d in drifted)}",
                            tuple(f"{d.service}: {r}" for d in drifted for r in d.reasons))
    if note is not None or not partial:
        send_if_new(session.loaded.state_dir(), "drift", note)


@app.command()
def status(as_json: JsonOpt = False) -> None:
    """One screen: each service's state, health, uptime, restarts, last backups and apply."""
    from reconciler.operate.status import gather_status
    from reconciler.session import Session
    from reconciler.spec.load import load_spec

    STATE.json = as_json
    data = gather_status(Session(load_spec(STATE.file)))
    _show(data, as_json, "print_status")


def _show(data: dict, as_json: bool, printer: str) -> None:
    if as_json:
        from reconciler.cli.output import print_json

        print_json(data)
        return
    from reconciler.operate import show

    getattr(show, printer)(data)
