"""Waiting for a container to get healthy, on the real engine: once Docker's own health check
has given up on it (``unhealthy`` after its retries), waiting out the whole timeout cannot help."""

from __future__ import annotations

import time

import pytest

from reconciler.health import Level, wait_healthy
from reconciler.session import Session
from tests.integration.conftest import materialise

pytestmark = pytest.mark.engine

SPEC = """\
version: 1
project: {project}
services:
  worker:
    image: reconcile-lab/app:1
    command: ["python3", "/app/worker.py"]
    env: { WORKER_INTERVAL: "1", DATABASE_URL: "postgresql://postgres:pw@nowhere.invalid:5432/db" }
    health: { interval: 1s, timeout: 300s }
"""


def test_a_container_docker_calls_unhealthy_fails_the_wait_at_once(client, write_spec, project):
    """A worker with a broken DATABASE_URL never writes its heartbeat: the image's check
    (20 s start period, then 5 retries 2 s apart) calls it unhealthy after about 30 s. The
    wait returns then, failing, with what the probe saw, not after the 300 s timeout."""
    loaded = write_spec(SPEC)
    materialise(client, loaded)
    started = time.monotonic()
    result = wait_healthy(Session(loaded), "worker", f"{project}-worker", timeout=150)
    waited = time.monotonic() - started
    assert waited < 150, waited  # it returned before its timeout (not a speed check: ~30 s here)
    assert result.level is not Level.HEALTHY and result.details["docker_health"] == "unhealthy", result
    assert result.details["failing_streak"] >= 1
