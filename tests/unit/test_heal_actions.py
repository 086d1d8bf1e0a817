"""Heal's executor without an engine: attempts, backoff, escalation and what is said.

The per-kind engine functions are replaced by fakes (``ACTIONS``), so these tests pin the
control flow: up to 3 attempts, a restart tried once then a recreate, no retry after a
failed rollback or a rolled-back recreate, and apply's mode handing the recreate back.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.errors import ApplyError, CriticalError, EngineError
from reconciler.operate import heal_actions
from reconciler.operate.heal_actions import Healer, backoff_from
from reconciler.operate.heal_rules import Fix, FixKind, Result
from reconciler.operate.issues import Issue, Severity
from reconciler.session import Session
from reconciler.spec.load import LoadedSpec
from reconciler.spec.models import Spec

SPEC = Spec.model_validate({"project": "p", "services": {
    "db": {"kind": "postgres", "image": "pg:15", "stateful": True},
    "web": {"image": "app:1"},
    "api": {"image": "app:1", "depends_on": ["db"], "health": {"interval": "100ms"}}}})


def fix(kind: FixKind, rule: str, service: str = "web") -> Fix:
    return Fix(service, kind, (Issue(service, Severity.CRITICAL, rule.replace("-", " "), "why", "do", rule),))


class Script:
    """A fake engine function: fails with the given errors, then succeeds."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self, healer, fix, before) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


@pytest.fixture()
def healer(monkeypatch):
    monkeypatch.setattr(heal_actions, "recheck", lambda session, fix: None)
    monkeypatch.setattr(heal_actions, "stop_loop", lambda healer, fix: None)  # no engine here
    said: list[str] = []
    made = Healer(Session(LoadedSpec(SPEC, Path("/nowhere/spec.yaml"))), lambda s, m: said.append(m), backoff=0)
    made.said = said
    return made


def test_a_fix_is_retried_up_to_three_times(healer, monkeypatch):
    start = Script(EngineError("busy"), EngineError("busy"))
    monkeypatch.setitem(heal_actions.ACTIONS, FixKind.START, start)
    outcome = healer.run(fix(FixKind.START, "container-exited"))
    assert (outcome.result, outcome.attempts, outcome.action) == (Result.FIXED, 3, "start")
    assert "web: container exited: starting it (attempt 3/3)" in healer.said
    assert sum("failed: busy" in m for m in healer.said) == 2


def test_three_failures_are_a_failed_fix_with_the_last_reason(healer, monkeypatch):
    monkeypatch.setitem(heal_actions.ACTIONS, FixKind.START, Script(*[EngineError(f"no {i}") for i in range(3)]))
    outcome = healer.run(fix(FixKind.START, "container-exited"))
    assert (outcome.result, outcome.attempts, outcome.details) == (Result.FAILED, 3, "no 2")


def test_a_restart_is_tried_once_then_the_service_is_recreated(healer, monkeypatch):
    restart, recreate = Script(EngineError("still 503")), []
    monkeypatch.setitem(heal_actions.ACTIONS, FixKind.RESTART, restart)
    healer.recreate = lambda f, reason, stop: recreate.append(reason) or "recreated"
    outcome = healer.run(fix(FixKind.RESTART, "healthcheck"))
    assert (outcome.result, outcome.action, outcome.attempts) == (Result.FIXED, "restart → recreate", 2)
    assert restart.calls == 1 and recreate == ["healthcheck (why); restart did not help"]
    assert "web is unhealthy (healthcheck: why): restarting it once" in healer.said
    assert "web is still unhealthy: it will be recreated" in healer.said


def test_in_apply_the_recreate_is_handed_back(healer, monkeypatch):
    monkeypatch.setitem(heal_actions.ACTIONS, FixKind.RESTART, Script(EngineError("x")))
    outcome = healer.run(fix(FixKind.RESTART, "healthcheck", service="db"))
    assert outcome.pending and outcome.result is Result.FAILED
    assert outcome.details == "healthcheck (why); restart did not help"
    assert "db is still unhealthy: it will be recreated (with a backup first)" in healer.said


@pytest.mark.parametrize("error", [CriticalError("rollback failed", hint="recover by hand"),
                                   ApplyError("new container unhealthy; rolled back", ref="apply.rolled-back")])
def test_no_retry_after_a_failed_rollback_or_a_rolled_back_recreate(healer, error):
    calls = []

    def recreate(f, reason, stop):
        calls.append(reason)
        raise error

    healer.recreate = recreate
    outcome = healer.run(fix(FixKind.RECREATE, "restart-loop"))
    assert outcome.result is Result.FAILED and outcome.attempts == 1 and len(calls) == 1
    assert error.message in outcome.details


def test_the_backoff_comes_from_the_environment():
    assert backoff_from({}) == 2.0
    assert backoff_from({"RECONCILE_HEAL_BACKOFF": "0.1"}) == 0.1
    assert backoff_from({"RECONCILE_HEAL_BACKOFF": "soon"}) == 2.0


def test_a_dependent_is_looked_at_again_after_its_dependency(healer, monkeypatch):
    restart = Script()
    monkeypatch.setitem(heal_actions.ACTIONS, FixKind.RESTART, restart)
    state = {"api": True}
    monkeypatch.setattr(heal_actions, "healthy", lambda session, service: state.get(service, False))
    after = Fix("api", FixKind.RESTART, fix(FixKind.RESTART, "probe-failing", service="api").issues, after=("db",))
    recovered = healer.run(after)
    assert (recovered.result, recovered.attempts, restart.calls) == (Result.FIXED, 0, 0)
    state["api"] = False
    waiting = healer.run(after)
    assert (waiting.result, waiting.action, restart.calls) == (Result.REPORTED, "wait", 0)
    assert "it depends on db, which is not healthy" in waiting.details
    state["db"] = True
    assert healer.run(after).result is Result.FIXED and restart.calls == 1


def test_a_dependent_waits_one_health_interval_before_it_is_restarted(healer, monkeypatch):
    """QA: once its dependency was healed, the API was restarted on Docker's stale verdict
    (its next check two seconds away), dropping requests it was answering again."""
    restart = Script()
    monkeypatch.setitem(heal_actions.ACTIONS, FixKind.RESTART, restart)
    answers = iter([False, False, True])
    monkeypatch.setattr(heal_actions, "healthy", lambda session, service: service == "db" or next(answers))
    after = Fix("api", FixKind.RESTART, fix(FixKind.RESTART, "healthcheck", service="api").issues, after=("db",))
    assert (healer.run(after).result, restart.calls) == (Result.FIXED, 0)


def test_a_heal_of_one_service_looks_at_its_dependencies_too(healer, monkeypatch):
    """QA: `heal api` with its cache down restarted api, then tried three recreates that could
    not work. The dependency was outside the heal's scope, so not in ``after``."""
    restart = Script()
    monkeypatch.setitem(heal_actions.ACTIONS, FixKind.RESTART, restart)
    monkeypatch.setattr(heal_actions, "healthy", lambda session, service: False)
    outcome = healer.run(fix(FixKind.RESTART, "healthcheck", service="api"))
    assert (outcome.result, outcome.action, restart.calls) == (Result.REPORTED, "wait", 0)
    assert "`reconcile heal db`" in outcome.details
