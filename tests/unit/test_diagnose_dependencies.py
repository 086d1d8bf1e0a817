"""A failing probe of a service whose dependency is broken names the dependency as the cause.

QA: with PostgreSQL down, diagnose told the operator to restart and then recreate the API,
whose /health answered 503 because of it, and left out the URL and status it had."""

from __future__ import annotations

from reconciler.health import Level, ServiceHealth
from reconciler.operate.diagnose import _probe_words, dependencies_first
from reconciler.operate.heal_rules import PROBE_RULE
from reconciler.operate.issues import Issue, Severity

C = Severity.CRITICAL


def test_the_dependency_is_named_as_the_likely_cause():
    issues = [Issue("postgres", C, "container exited", "exit 137", "reconcile apply", "container-exited"),
              Issue("api", C, "health probe failing", "unhealthy", "heal restarts it", PROBE_RULE),
              Issue("web", C, "health probe failing", "unhealthy", "heal restarts it", PROBE_RULE)]
    out = dependencies_first(issues, {"api": ["postgres"], "web": []})
    assert out[1].suggested_fix.startswith("probably caused by postgres (container exited), which it depends on")
    assert out[0] == issues[0] and out[2] == issues[2]


def test_a_failing_http_probe_says_where_and_what_it_got():
    result = ServiceHealth("api", "unhealthy", Level.CRITICAL,
                           {"url": "http://172.18.0.5:8000/health", "status_code": 503, "state": "running"})
    assert _probe_words(result) == ("unhealthy", "url http://172.18.0.5:8000/health, status_code 503, state running")
