"""Operate commands: ``diagnose``, ``heal``, ``drift`` and ``status``.

Exit codes follow DESIGN.md: diagnose 0 no issues, 1 warnings only, 2 critical; heal 0 all
fixed or nothing to do, 1 only non-critical issues remain, 2 a critical one remains; drift 0
no drift, 2 drift, 1 error (any ``ReconcileError``, mapped in ``main``); status 0.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from reconciler.cli.app import STATE, JsonOpt, LockWaitOpt, ProfileOpt, app, lock_wait_seconds, write_output
from reconciler.errors import ReconcileError

ServicesArg = Annotated[list[str] | None, typer.Argument(help="Services (default: all).")]


@app.command()
def diagnose(
    services: ServicesArg = None,
    as_json: JsonOpt = False,
    save_facts: Annotated[Path | None, typer.Option(
        "--save-facts", help="Also write the collected facts (redacted) as JSON, e.g. for a bug "
                             "report or a test case.")] = None,
) -> None:
    """Find what is wrong and say how to fix it, changing nothing: the same findings as heal,
    deep probes of running services included. Exit 0 no issues, 1 warnings, 2 critical."""
    from reconciler.operate import diagnose as diag
    from reconciler.session import Session
    from reconciler.spec.load import load_spec

    STATE.json = as_json
    session = Session(load_spec(STATE.file))
    result = diag.run(session, services, deep=True)
    if save_facts is not None:
        write_output(save_facts, (json.dumps(result.facts.to_dict(), indent=2) + "\n").encode(),
                     "the facts", ref="diagnose.save-facts")
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


_HEAL_MARK = len("reported ")  # heal's summary lines continue under the service, past the mark


@app.command()
def heal(services: ServicesArg = None, as_json: JsonOpt = False, lock_wait: LockWaitOpt = "0s") -> None:
    """Fix what diagnose finds and can be fixed safely; report the rest.

    Starts what is stopped, restarts what is unhealthy, recreates what restarts in a loop or
    stays unhealthy (through apply's plan: a backup first when it holds data), recreates a
    deleted network and reconnects its containers. Never kills another process, frees
    memory or deletes data: those are reported with advice. Up to 3 attempts per fix
    (RECONCILE_HEAL_BACKOFF seconds apart, doubling; default 2). Exit 0 all fixed or nothing
    to do, 1 only non-critical issues remain, 2 a critical issue remains.
    """
    from reconciler.operate import heal as healing
    from reconciler.session import Session
    from reconciler.spec.load import load_spec

    STATE.json = as_json
    printer = _HealPrinter(sys.stderr if as_json else sys.stdout)
    wait = lock_wait_seconds(lock_wait)
    report = healing.run(Session(load_spec(STATE.file)), services, say=printer.say, emit=printer.event,
                         lock_wait=wait)
    if as_json:
        from reconciler.cli.output import print_json

        print_json(report.to_dict())
    else:
        for line in healing.summary_lines(report):
            printer.line(line, _HEAL_MARK)
    raise typer.Exit(report.exit_code)


class _HealPrinter:
    """Heal's progress as plain lines; a recreate's apply events in apply's words, shortly."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def line(self, text: str, indent: int | None = None) -> None:
        if self.stream.isatty():  # wrapped to the terminal; anywhere else one line as it is
            from reconciler.cli.output import echo

            echo(text, err=self.stream is sys.stderr, indent=indent)
            return
        self.stream.write(text + "\n")
        self.stream.flush()

    def say(self, service: str, message: str) -> None:
        self.line(f"  {message}")

    def event(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "action-end":
            ok = event.get("status") == "ok"
            extra = f" → {event['backup_id']}" if event.get("backup_id") else ""
            mark = f"    {'ok' if ok else 'FAILED'}  "
            self.line(f"{mark}{event['action']}{extra} ({event.get('seconds', 0)}s)"
                      + ("" if ok else f": {event.get('error', '')}"), len(mark))
        elif kind in ("rollback-begin", "rollback-end", "warning"):
            words = {"rollback-begin": f"rolling back {event.get('service')}: {event.get('reason')}",
                     "rollback-end": f"rollback of {event.get('service')}: {event.get('status')}",
                     "warning": f"warning: {event.get('message', '')}"}
            self.line(f"    {words.get(kind, event.get('message', ''))}")
        elif kind == "logs":
            self.line(f"    last log lines ({event.get('action')}):")
            for text in event.get("lines") or []:
                self.line(f"      | {text}")


@app.command()
def drift(
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
    metrics_file: Annotated[Path | None, typer.Option(
        "--metrics-file", help="Write Prometheus metrics here (node_exporter textfile collector), "
                               "e.g. /var/lib/node_exporter/textfile_collector/reconcile.prom.")] = None,
) -> None:
    """Compare the stack with the spec, changing nothing. Exit 0 no drift, 2 drift, 1 error or a
    plan apply would refuse (blocked)."""
    from reconciler import dockerio
    from reconciler.apply.lock import held_by
    from reconciler.errors import EngineError
    from reconciler.operate import gather
    from reconciler.operate.drift import drift_of
    from reconciler.pipeline import snapshot
    from reconciler.session import Session

    STATE.json = as_json
    try:
        client = dockerio.connect()
        snap = snapshot(STATE.file, profile or (), client=client)
    except EngineError as exc:
        if metrics_file is not None and exc.ref == "engine.unreachable":  # the file must not stay "healthy"
            _write_metrics_without_engine(metrics_file, tuple(profile or ()))
        raise
    session = Session(snap.loaded, _client=client)
    # an apply changing the stack: its new containers are no drift
    holder = held_by(snap.loaded.state_dir(), snap.loaded.spec.project)
    drifted = [] if holder else drift_of(snap.loaded, snap.plan, snap.observed)
    data = {"project": snap.loaded.spec.project, "drift": bool(drifted), "profiles": list(snap.plan.profiles),
            "drifted": [d.to_dict() for d in drifted], "warnings": list(snap.plan.warnings)}
    if holder is not None:
        data["apply_running"] = holder.apply_id or None
        data["running"] = holder.running  # a restore or a heal holds it too: "an apply" was untrue then
        data["warnings"].append(f"{holder.running} is running ({holder.describe()}): drift is judged once it ends")
    if metrics_file is not None:
        scope = gather.scope_of(snap.loaded.spec, snap.plan.profiles)
        flags = {name: False for name in scope} | {d.service: True for d in drifted}
        facts = gather.metrics_facts(session, snap.plan.profiles, None if holder else flags,  # not judged: no series
                                     holder is not None, data["warnings"])
        data["metrics_file"] = str(_write_metrics(metrics_file, facts))
    if holder is None:
        _notify_drift(session, drifted, bool(snap.plan.profiles))
    _show(data, as_json, "print_drift")
    if snap.plan.blocking:  # as plan does (README's exit codes): apply would refuse, a person must act
        from reconciler.cli.app import print_refused

        print_refused(snap.plan, as_json)
    raise typer.Exit(2 if drifted else 0)


def _write_metrics(path: Path, facts) -> Path:
    """The run's ``metrics.StackFacts`` as the textfile, replaced in one rename."""
    from reconciler.operate import metrics

    return metrics.write_file(path, metrics.stack_metrics(facts))


def _write_metrics_without_engine(path: Path, profiles: tuple[str, ...]) -> None:
    """``reconcile_engine_up 0`` and what is known without the engine, in place of a file that
    says all is healthy: best effort, since the engine's error is what the run reports (a
    spec that cannot be read leaves the file alone, with nothing true to put in it)."""
    from reconciler.operate import gather
    from reconciler.spec.load import load_spec

    try:
        _write_metrics(path, gather.facts_without_engine(load_spec(STATE.file), profiles, []))
    except ReconcileError as exc:
        from reconciler.cli.output import echo

        echo(f"warning: {exc.message}", err=True)


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
