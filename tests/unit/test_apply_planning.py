"""Pure rules apply depends on: roles by name, leftovers of a killed apply, healing plans,
volume generations. No engine: specs and observed states are built in the test."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.apply import volumes
from reconciler.observe.models import (
    Observed,
    ObservedContainer,
    ObservedMount,
    ObservedVolume,
    Role,
    State,
)
from reconciler.plan.planner import make_plan
from reconciler.spec.load import LoadedSpec
from reconciler.spec.models import Spec
from reconciler.spec.normalise import config_hash, normalised_config, role_from_name, volume_of

SPEC = Spec.model_validate({
    "project": "p", "volumes": {"data": {}},
    "services": {
        "db": {"profile": "infrastructure", "kind": "postgres", "image": "pg:15", "stateful": True,
               "protect": True, "volumes": ["data:/var/lib/postgresql/data"]},
        "api": {"image": "app:1", "depends_on": {"db": "healthy"}},
    }})
LOADED = LoadedSpec(SPEC, Path("/nowhere/spec.yaml"))


def made(service: str, name: str, *, role: Role, spec: Spec = SPEC, state: State = State.RUNNING,
         started: str = "2026-01-01T00:00:00Z", mounts: tuple = ()) -> ObservedContainer:
    config = normalised_config(spec, service)
    return ObservedContainer(id=f"id-{name}", name=name, project="p", service=service, profile=None,
                             role=role, spec_hash=config_hash(config), config=config,
                             image_ref=spec.services[service].image, image_id="", state=state,
                             health=None, started_at=started, mounts=mounts,
                             networks=tuple(config["networks"]))


def plan_ids(*containers: ObservedContainer, unhealthy=None) -> list[str]:
    observed = Observed("p", containers=containers, volumes=())
    return [a.id for a in make_plan(LOADED, observed, unhealthy=unhealthy).actions
            if not a.id.startswith("create-")]


@pytest.mark.parametrize(("name", "role"), [
    ("p-db", "current"), ("p-db-old-a1b2c3", "previous"), ("p-db-new-a1b2c3", "candidate"),
    ("p-db-new-xyz", None), ("p-db-other", None), ("q-db", None), ("p-dbx", None)])
def test_roles_come_from_names(name, role):
    assert role_from_name(name, "p", "db") == role


def test_volume_generations_map_to_their_logical_volume():
    assert volume_of("p_data", "p") == "data" and volume_of("p_data-a1b2c3", "p") == "data"
    assert volume_of("p_my-data", "p") == "my-data" and volume_of("q_data", "p") is None


def test_a_leftover_candidate_is_removed_first_without_a_backup():
    ids = plan_ids(made("db", "p-db", role=Role.CURRENT), made("db", "p-db-new-a1b2c3", role=Role.CANDIDATE),
                   made("api", "p-api", role=Role.CURRENT))
    assert ids == ["remove:p-db-new-a1b2c3"]


def test_a_previous_without_current_is_adopted_and_the_candidate_removed():
    ids = plan_ids(made("db", "p-db-old-a1b2c3", role=Role.PREVIOUS, state=State.EXITED),
                   made("db", "p-db-new-a1b2c3", role=Role.CANDIDATE),
                   made("api", "p-api", role=Role.CURRENT))
    assert ids == ["remove:p-db-new-a1b2c3", "start:db"]


def test_an_outdated_previous_is_recreated_from_with_a_backup():
    old = Spec.model_validate({**SPEC.model_dump(), "services": {
        **SPEC.model_dump()["services"], "db": {**SPEC.model_dump()["services"]["db"], "image": "pg:14"}}})
    ids = plan_ids(made("db", "p-db-old-a1b2c3", role=Role.PREVIOUS, spec=old, state=State.EXITED),
                   made("api", "p-api", role=Role.CURRENT))
    assert ids == ["backup:db", "recreate:db", "restore:db", "verify:db"]  # 14 → 15: fresh volume


def test_the_newest_previous_wins_and_older_ones_are_leftovers():
    ids = plan_ids(made("db", "p-db-old-aaaaaa", role=Role.PREVIOUS, started="2026-01-01T00:00:00Z"),
                   made("db", "p-db-old-bbbbbb", role=Role.PREVIOUS, started="2026-02-01T00:00:00Z"),
                   made("api", "p-api", role=Role.CURRENT))
    assert ids == ["remove:p-db-old-aaaaaa", "start:db"]


def test_unhealthy_services_are_recreated_with_backup_and_verify():
    observed = Observed("p", containers=(made("db", "p-db", role=Role.CURRENT),
                                         made("api", "p-api", role=Role.CURRENT)),
                        volumes=(ObservedVolume("p_data", "local", "p"),))
    plan = make_plan(LOADED, observed, unhealthy={"db": "unreachable"})
    assert [a.id for a in plan.actions] == ["backup:db", "recreate:db", "verify:db"]
    assert plan.actions[1].cause.startswith("unhealthy: unreachable") and not plan.actions[1].fresh_volume
    assert make_plan(LOADED, observed).empty


def test_generations_of_a_volume_are_not_created_again():
    observed = Observed("p", volumes=())
    assert "create-volume:data" in [a.id for a in make_plan(LOADED, observed).actions]
    observed = Observed("p", volumes=(ObservedVolume("p_data-a1b2c3", "local", "p"),))
    assert "create-volume:data" not in [a.id for a in make_plan(LOADED, observed).actions]


def test_in_use_reads_the_generation_a_container_mounts():
    mounts = (ObservedMount("p_data-a1b2c3", "/var/lib/postgresql/data", "volume"),
              ObservedMount("/etc/x", "/etc/x", "bind"))
    assert volumes.in_use(LOADED, "db", mounts) == {"data": "p_data-a1b2c3"}
    assert volumes.in_use(LOADED, "db", (ObservedMount("other", "/var/lib/postgresql/data", "volume"),)) == {}


def test_fresh_volumes_are_the_changed_ones_else_all():
    config = normalised_config(SPEC, "db")
    assert volumes.fresh_logicals(LOADED, "db", config) == ["data"]
    changed = {**config, "volumes": [{**config["volumes"][0], "definition": {"bind": "/old"}}]}
    assert volumes.fresh_logicals(LOADED, "db", changed) == ["data"]


def test_a_fresh_bind_generation_gets_its_own_folder(tmp_path):
    empty, used = tmp_path / "empty", tmp_path / "used"
    empty.mkdir()
    used.mkdir()
    (used / "PG_VERSION").write_text("15\n")
    assert volumes.generation_folder(str(tmp_path / "new"), "a1b2c3") == tmp_path / "new"
    assert volumes.generation_folder(str(empty), "a1b2c3") == empty
    assert volumes.generation_folder(str(used), "a1b2c3") == tmp_path / "used.a1b2c3"
    volumes.ensure_folder(tmp_path / "used.a1b2c3")
    assert (tmp_path / "used.a1b2c3").stat().st_mode & 0o777 == 0o700
