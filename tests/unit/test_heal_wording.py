"""QA of what diagnose, heal and a rollback say: true of the service they name, and only of it."""

from __future__ import annotations

from reconciler.apply.context import Swap
from reconciler.apply.rollback import _as_before
from reconciler.operate.diagnose import dependencies_first
from reconciler.operate.heal_actions import symptoms_only
from reconciler.operate.heal_rules import CONNECTIONS_RULE, PROBE_RULE, Fix, FixKind, degraded_issues
from reconciler.operate.issues import Issue, Severity

C = Severity.CRITICAL


def test_a_cache_near_its_memory_limit_is_not_told_about_postgresql_connections():
    [cache, pg] = degraded_issues([], {"cache": ("degraded", "memory 3900000 of 4194304 bytes (policy noeviction)"),
                                       "postgres": ("degraded", "11 of 12 connections in use")})
    assert "maxmemory" in cache.suggested_fix and "PostgreSQL" not in cache.suggested_fix
    assert "max_connections" in pg.suggested_fix and "maxmemory" not in pg.suggested_fix


def test_heal_is_not_said_to_fix_a_dependency_it_only_reports():
    issues = [Issue("postgres", C, "connection limit reached", "too many clients", "find the client",
                    CONNECTIONS_RULE),
              Issue("api", C, "health probe failing", "503", "heal restarts it", PROBE_RULE)]
    api = dependencies_first(issues, {"api": ["postgres"]})[1]
    assert "heal does" not in api.suggested_fix and "heal cannot" in api.suggested_fix, api.suggested_fix


def test_only_symptoms_a_dependency_explains_count_as_healed_with_it():
    def fix(*rules: str) -> Fix:
        return Fix("worker", FixKind.RECREATE_NETWORK, tuple(Issue("worker", C, r, "", "", r) for r in rules),
                   after=("postgres",))

    assert symptoms_only(fix(PROBE_RULE, "healthcheck"))
    assert not symptoms_only(fix("network-missing")) and not symptoms_only(fix("healthcheck", "network-detached"))


def test_a_rollback_that_leaves_the_old_container_stopped_does_not_say_it_runs():
    """Heal stops a container restarting in a loop before it recreates it: rolled back, it is
    stopped, and the report said it "runs as before"."""
    swap = Swap(service="hog", token="abc123", canonical="p-hog", old_id="0123", old_name="p-hog",
                previous_name="p-hog-old-abc123", old_running=False)
    words = _as_before(None, swap, "recreate:hog")
    assert "runs" not in words and "stopped" in words, words


def test_a_restart_loop_caught_running_does_not_call_dockers_zero_its_last_exit_code():
    """Docker resets ExitCode to 0 when it restarts a container: one OOM-killed (137) at each
    restart read "last exit code 0" whenever diagnose caught it running."""
    from reconciler.operate import rules
    from reconciler.operate.facts import Facts

    facts = Facts.from_dict({"project": "shop", "now": "2026-01-05T10:00:30Z", "services": [
        {"name": "hog", "kind": "generic", "container_name": "shop-hog", "image": "shop/hog:1",
         "container": {"id": "c1", "name": "shop-hog", "state": "running", "restart_count": 4, "exit_code": 0,
                       "started_at": "2026-01-05T10:00:25Z"}}]})
    [issue] = [i for i in rules.diagnose(facts) if i.rule == "restart-loop"]
    assert "exit code 0" not in issue.details and "up since 2026-01-05T10:00:25Z" in issue.details, issue.details


def test_a_recreate_left_to_a_person_is_tried_once_not_three_times(monkeypatch):
    """QA: a crash-looping cache that could not be backed up was stopped, started and given
    up on three times over (LeftToOperator says: never retried)."""
    from pathlib import Path

    from reconciler.operate import heal_actions
    from reconciler.operate.heal_actions import Healer, LeftToOperator
    from reconciler.operate.heal_rules import Result
    from reconciler.session import Session
    from reconciler.spec.load import LoadedSpec
    from reconciler.spec.models import Spec

    spec = Spec.model_validate({"project": "p", "services": {"cache": {"kind": "redis", "image": "r:7",
                                                                       "stateful": True}}})
    monkeypatch.setattr(heal_actions, "recheck", lambda session, fix: None)
    calls = []

    def recreate(fix, reason, stop_loop):
        calls.append(reason)
        raise LeftToOperator("it could not be backed up", hint="read its logs")

    healer = Healer(Session(LoadedSpec(spec, Path("/nowhere/spec.yaml"))), lambda s, m: None, recreate, backoff=0)
    loop = Fix("cache", FixKind.RECREATE, (Issue("cache", C, "restart loop", "7 restarts", "", "restart-loop"),))
    outcome = healer.run(loop)
    assert (outcome.result, len(calls)) == (Result.REPORTED, 1), calls
