"""Small hooks for commands outside this package: apply's run log and notifications, and
``reconcile health``'s critical notification, so each is wired with a line or two.

``deploy_run`` wraps apply's UI: every event apply emits also goes to the deploy run log
(redacted), and at the end a notification says what happened: ``apply_failed`` when apply
failed (exit 2/3), ``rollback`` when a rollback ran (critical if it failed), and
``apply_succeeded`` after a successful apply that changed something (sent only with
``RECONCILE_NOTIFY_SUCCESS=1``). Refusals before any change (stale plan, lock busy,
cancelled) are not failures worth a message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

from reconciler.errors import ApplyError
from reconciler.operate import runlog
from reconciler.operate.notify import Event, Notification, send, send_if_new


class _DeployWatch:
    """What the notifications need to know, gathered from apply's events as they pass."""

    def __init__(self) -> None:
        self.rollbacks: list[dict] = []
        self.finish: dict | None = None

    def see(self, event: dict) -> None:
        if event.get("event") == "rollback-end":
            self.rollbacks.append(event)
        elif event.get("event") == "finish":
            self.finish = event


@contextmanager
def deploy_run(session, ui) -> Iterator[object]:
    """``with deploy_run(session, ui.bind(options)) as bound: run_apply(options, bound, session)``."""
    log = runlog.open_run(session, "deploy")
    watch = _DeployWatch()
    forward = ui.emit

    def emit(event: dict) -> None:
        log.event(str(event.get("event", "event")), **{k: v for k, v in event.items() if k != "event"})
        watch.see(event)
        forward(event)

    try:
        yield dataclasses.replace(ui, emit=emit)
    except BaseException as exc:
        log.close("failed", error=_error(exc))
        _notify_deploy(session, watch, exc, log)
        raise
    log.close("ok")
    _notify_deploy(session, watch, None, log)


def _error(exc: BaseException) -> dict:
    details = getattr(exc, "as_dict", None)
    return details() if callable(details) else {"error": type(exc).__name__, "message": str(exc)}


def _notify_deploy(session, watch: _DeployWatch, exc: BaseException | None, log) -> None:
    project = session.spec.project
    redact = log.redactor.redact
    if watch.rollbacks:
        failed = [r for r in watch.rollbacks if r.get("status") != "ok"]
        send(Notification(Event.ROLLBACK, project, "critical" if failed else "warning",
                          f"rolled back {', '.join(r.get('service', '?') for r in watch.rollbacks)}"
                          + (": rollback FAILED, a person must act" if failed else ""),
                          tuple(redact(f"{r.get('service')}: {r.get('status')} {r.get('error', '')}".strip())
                                for r in watch.rollbacks)))
    if isinstance(exc, ApplyError):
        send(Notification(Event.APPLY_FAILED, project, "critical",
                          redact(f"apply failed (exit {exc.exit_code}): {exc.message}"),
                          tuple(redact(x) for x in (exc.hint, f"run log: {log.path}") if x)))
    elif exc is None and watch.finish and watch.finish.get("actions"):
        finish = watch.finish
        send(Notification(Event.SUCCESS, project, "ok",
                          f"apply {finish.get('apply_id')}: {finish.get('result')} in {finish.get('duration_s')}s",
                          tuple(redact(str(a)) for a in finish.get("actions") or ())))


def notify_health(session, results) -> None:
    """``reconcile health``: critical or missing services → one ``critical_health`` message
    (again only when the set changes); all healthy clears it."""
    from reconciler.health import Level

    bad = [r for r in results if r.level >= Level.CRITICAL]
    note = None
    if bad:
        note = Notification(Event.CRITICAL_HEALTH, session.spec.project, "critical",
                            f"{len(bad)} service(s) critical: {', '.join(r.service for r in bad)}",
                            tuple(f"{r.service}: {r.status}" for r in bad))
    send_if_new(session.loaded.state_dir(), "health", note)
