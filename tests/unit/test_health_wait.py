"""``wait_healthy`` stops waiting as soon as waiting cannot help: the container stopped, or
Docker's own health check gave up on it (``unhealthy`` after its retries), not only at the
timeout; while Docker says ``starting`` (the start period) it keeps waiting."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from reconciler import health
from reconciler.health import Level, ServiceHealth

SESSION = SimpleNamespace(spec=SimpleNamespace(services={
    "worker": SimpleNamespace(health=SimpleNamespace(timeout=300.0, interval=2.0))}))


def results(monkeypatch, *found: ServiceHealth) -> list[int]:
    """``check_service`` answers ``found`` in turn (the last one again and again)."""
    calls = []

    def check(session, name, container, timeout):
        calls.append(1)
        return found[min(len(calls), len(found)) - 1]
    monkeypatch.setattr(health, "check_service", check)
    return calls


def unhealthy(streak: int) -> ServiceHealth:
    return ServiceHealth("worker", "unhealthy", Level.CRITICAL,
                         {"docker_health": "unhealthy", "failing_streak": streak, "error": "no database"})


STARTING = ServiceHealth("worker", "degraded", Level.MINOR, {"docker_health": "starting"})


def test_docker_giving_up_ends_the_wait_at_once_with_the_probes_details(monkeypatch):
    calls = results(monkeypatch, STARTING, STARTING, unhealthy(5))
    result = health.wait_healthy(SESSION, "worker", "it-x-worker-new-abc123", timeout=20, interval=0.01)
    assert len(calls) == 3  # the third answer ended it; the timeout would have taken hundreds
    assert result.level is Level.CRITICAL and result.details["error"] == "no database"


def test_while_docker_says_starting_it_waits_until_the_timeout(monkeypatch):
    calls = results(monkeypatch, STARTING)
    result = health.wait_healthy(SESSION, "worker", "c", timeout=0.3, interval=0.02)
    assert result is STARTING and len(calls) > 3


@pytest.mark.parametrize(("found", "gave_up"), [
    (unhealthy(5), True),
    # ``docker pause`` makes Docker say unhealthy with no failed check: an unpause clears it
    (unhealthy(0), False),
    (STARTING, False),
    (ServiceHealth("worker", "healthy", Level.HEALTHY, {"docker_health": "healthy"}), False),
    # the deep probe passes but Docker's check fails: still not healthy, Docker gave up
    (ServiceHealth("api", "healthy", Level.MINOR, {"docker_health": "unhealthy", "failing_streak": 3}), True),
])
def test_docker_gave_up(found, gave_up):
    assert health.docker_gave_up(found) is gave_up


def test_apply_s_gate_gives_up_when_docker_does():
    """The gate after a create, recreate or heal restart (``apply.gate``) stops waiting at the
    same verdict, as Compose's ``service_healthy`` does, not after the whole health timeout."""
    from reconciler.apply.gate import _hopeless

    assert _hopeless(unhealthy(5))
    assert not _hopeless(STARTING)  # in its start period: not yet
    assert not _hopeless(unhealthy(0))  # docker pause sets unhealthy with a streak of 0
