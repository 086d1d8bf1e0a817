"""When apply may restore the latest verified backup instead of taking one: the planner's
rule (a stateful server that crashes on its data) and the executor's guard (``judge``).
Pure: no engine. The real-engine side is in tests/scenarios (scenario 4 and the guard)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from reconciler.apply import gate
from reconciler.apply.fallback import judge, reading_failed
from reconciler.errors import BackupError, EngineError, StorageError
from reconciler.health import Level, ServiceHealth
from reconciler.observe.models import (
    Observed,
    ObservedContainer,
    ObservedVolume,
    Role,
    State,
)
from reconciler.plan.actions import Action, ActionKind, Plan
from reconciler.plan.planner import make_plan
from reconciler.spec.load import LoadedSpec
from reconciler.spec.models import Spec
from reconciler.spec.normalise import config_hash, normalised_config

SPEC = Spec.model_validate({
    "project": "p", "volumes": {"data": {}},
    "services": {
        "db": {"profile": "infrastructure", "kind": "postgres", "image": "pg:17", "stateful": True,
               "volumes": ["data:/var/lib/postgresql/data"]},
        "web": {"image": "app:1", "volumes": ["data:/srv"]},
    }})
LOADED = LoadedSpec(SPEC, Path("/nowhere/spec.yaml"))


def box(service: str, state: State, *, exit_code: int | None = None, restarts: int = 0) -> ObservedContainer:
    config = normalised_config(SPEC, service)
    return ObservedContainer(id=f"id-{service}", name=f"p-{service}", project="p", service=service,
                             profile=None, role=Role.CURRENT, spec_hash=config_hash(config), config=config,
                             image_ref=SPEC.services[service].image, image_id="", state=state, health=None,
                             exit_code=exit_code, restart_count=restarts,
                             networks=tuple(config["networks"]))


def plan_for(db: ObservedContainer, service: str = "db") -> Plan:
    others = tuple(box(s, State.RUNNING) for s in SPEC.services if s != db.service)
    observed = Observed("p", containers=(db, *others), volumes=(ObservedVolume("p_data", "local", "p"),))
    return make_plan(LOADED, observed, unhealthy={service: "restart loop"})


@pytest.mark.parametrize(("state", "exit_code", "restarts"), [
    (State.RESTARTING, 139, 5),  # crashing on start, the engine restarting it
    (State.EXITED, 139, 18),  # the same, after heal stopped the loop
    (State.DEAD, 1, 2)])
def test_a_stateful_server_that_crashes_on_its_data_is_restored_onto_a_fresh_volume(state, exit_code, restarts):
    plan = plan_for(box("db", state, exit_code=exit_code, restarts=restarts))
    assert [a.id for a in plan.actions] == ["backup:db", "recreate:db", "restore:db", "verify:db"]
    backup, recreate, restore, _ = plan.actions
    assert backup.fallback and "latest verified backup" in backup.cause
    assert recreate.fresh_volume and restore.cause.startswith("it crashes on its data")
    assert Plan.from_dict(plan.to_dict()).actions[0].fallback  # survives a saved plan


@pytest.mark.parametrize(("state", "exit_code", "restarts"), [
    (State.RUNNING, 0, 3),  # runs, but stays unhealthy: its data is read and kept
    (State.EXITED, 0, 0),  # stopped by a signal (a deleted network, say): not a crash
    (State.EXITED, 139, 0),  # crashed once, never restarted: not a loop
    (State.RESTARTING, None, 0)])
def test_other_unhealthy_servers_keep_their_volume_and_take_a_real_backup(state, exit_code, restarts):
    plan = plan_for(box("db", state, exit_code=exit_code, restarts=restarts))
    assert [a.id for a in plan.actions] == ["backup:db", "recreate:db", "verify:db"]
    assert not plan.actions[0].fallback and "fallback" not in plan.actions[0].to_dict()
    assert not plan.actions[1].fresh_volume


def test_a_stateless_service_in_a_crash_loop_is_only_recreated():
    plan = plan_for(box("web", State.EXITED, exit_code=1, restarts=4), service="web")
    assert [a.id for a in plan.actions] == ["recreate:web"] and not plan.actions[0].fresh_volume


BACKUP = Action(ActionKind.BACKUP, "db", "back up", stateful=True, fallback=True)
LOOPING = {"Status": "restarting", "Running": True, "Restarting": True, "ExitCode": 139}
RUNNING = {"Status": "running", "Running": True, "Restarting": False, "ExitCode": 0}
EXITED = {"Status": "exited", "Running": False, "Restarting": False, "ExitCode": 1}
HEALTHY = ServiceHealth("db", "healthy", Level.HEALTHY)
FAILING = ServiceHealth("db", "unreachable", Level.CRITICAL)
REFUSING = ServiceHealth("db", "refused", Level.CRITICAL, {"error": "password authentication failed"})
NOT_READY = gate.NotReady("db: container p-db is not healthy (restarting)")
DUMP_FAILED = BackupError("pg_dump failed", ref="backup.pg_dump")


@pytest.mark.parametrize(("action", "error", "state", "probe", "expected"), [
    (BACKUP, NOT_READY, LOOPING, None, "restarts in a loop"),
    (BACKUP, NOT_READY, EXITED, None, "is exited"),
    (BACKUP, DUMP_FAILED, RUNNING, FAILING, "health probe fails"),
    (BACKUP, NOT_READY, None, None, "no container"),
    # never for a service that is fine, a plan that did not ask, or a failure elsewhere:
    (BACKUP, DUMP_FAILED, RUNNING, HEALTHY, None),
    (BACKUP, BackupError("password authentication failed"), RUNNING, REFUSING, None),
    (replace(BACKUP, fallback=False), NOT_READY, LOOPING, None, None),
    (BACKUP, StorageError("backup folder not writable"), LOOPING, None, None),
    (BACKUP, BackupError("S3 copy failed", ref="backup.s3-required"), LOOPING, None, None),
    (BACKUP, EngineError("port is already allocated"), EXITED, None, None),
    (BACKUP, KeyboardInterrupt(), LOOPING, None, None),
])
def test_judge_falls_back_only_for_a_broken_service_that_cannot_be_read(action, error, state, probe, expected):
    reason = judge(action, error, state, probe)
    if expected is None:
        assert reason is None
    else:
        assert reason is not None and expected in reason


def test_reading_failed_excludes_storage_and_engine_errors():
    assert reading_failed(NOT_READY) and reading_failed(DUMP_FAILED)
    assert not reading_failed(StorageError("disk full")) and not reading_failed(EngineError("no such network"))
