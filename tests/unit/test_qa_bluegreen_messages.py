"""Messages of a failed blue-green apply that must say what is true (QA): what a partly done
apply kept and removed, and why a new container was not ready."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from reconciler.apply import executor, gate
from reconciler.errors import ApplyError
from reconciler.health import Level, ServiceHealth
from reconciler.plan.actions import Action, ActionKind

RECREATE_API = Action(ActionKind.RECREATE, "api", "image app:1 → app:2")
SWITCH_API = Action(ActionKind.SWITCH_TRAFFIC, "api", "point the proxy at the new container")
PRUNE_API = Action(ActionKind.REMOVE, "p-api-kept-1a2b3c", "older version of api")
RECREATE_WEB = Action(ActionKind.RECREATE, "web", "image app:1 → app:2")


def hint_after(done: list[Action], failed: Action) -> str:
    run = SimpleNamespace(plan=SimpleNamespace(actions=(*done, failed)), done=[a.id for a in done])
    return executor._with_kept(run, failed, ApplyError("web failed", hint="fix it")).hint


@pytest.mark.parametrize(("done", "says", "never"), [
    ([RECREATE_API, SWITCH_API, PRUNE_API],
     ["kept (only the failed step is undone): api;", "already removed by this apply: p-api-kept-1a2b3c"],
     ["api, p-api-kept-1a2b3c"]),
    ([RECREATE_API, SWITCH_API], ["kept (only the failed step is undone): api;"], ["removed"]),
    ([PRUNE_API], ["already removed by this apply: p-api-kept-1a2b3c"], ["kept (only"]),
], ids=["deploy-and-prune", "deploy-only", "prune-only"])
def test_a_removed_older_version_is_not_called_kept(done, says, never):
    hint = hint_after(done, RECREATE_WEB)
    assert hint.startswith("fix it; ")
    assert all(text in hint for text in says), hint
    assert not any(text in hint for text in never), hint


def test_nothing_done_before_leaves_the_hint_alone():
    assert hint_after([], RECREATE_WEB) == "fix it"


def test_a_new_container_that_answers_an_error_says_which_status_and_url():
    """"not healthy (unhealthy: docker_health starting)" read as a slow start; the probe had
    an HTTP 503 (QA)."""
    result = ServiceHealth("api", "unhealthy", Level.CRITICAL,
                           {"container": "p-api-new-1", "docker_health": "starting", "status_code": 503,
                            "url": "http://172.18.0.5:8000/health", "latency_ms": 2.0})
    text = gate._describe(result)
    assert "status_code 503" in text and "url http://172.18.0.5:8000/health" in text, text
    assert "latency" not in text
