"""Golden plan cases: a spec and an engine state in, the rendered plan out.

Each folder of ``tests/cases/`` holds ``spec.yaml``, an optional ``observed.yaml`` (absent =
an empty engine), an optional ``case.yaml`` (``profiles``, ``env`` for interpolation,
``expect_error``: a substring of the expected error) and ``expected.txt``, the plan exactly as
an operator sees it (or the error text). The goldens are the behaviour's spec: read them.
``RECONCILE_UPDATE_GOLDEN=1`` rewrites them.

A container in ``observed.yaml`` may say ``made_from: {…}``: it was created by reconcile from
this case's spec with those service fields changed (``{}`` = the spec as it is now), and
``made_from_volumes: {name: {…}}`` changes top-level volume definitions the same way (``env``
is merged key by key, ``KEY: null`` meaning the key was absent). Its
labels (hash, config, profile, stateful…) are then computed exactly as apply would have
written them, so cases stay short and realistic; any explicit field overrides the computed one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from reconciler.errors import ReconcileError
from reconciler.observe.codec import observed_from_dict
from reconciler.observe.models import Observed
from reconciler.plan.actions import Plan
from reconciler.plan.carryover import tag_major
from reconciler.plan.planner import make_plan, service_order
from reconciler.plan.render import render_json, render_markdown, render_text
from reconciler.spec.load import LoadedSpec, load_spec
from reconciler.spec.models import Service, Spec, VolumeSpec
from reconciler.spec.normalise import config_hash, container_name, normalised_config

CASES = Path(__file__).resolve().parents[1] / "cases"
UPDATE = os.environ.get("RECONCILE_UPDATE_GOLDEN") == "1"


def _case_dirs() -> list[Path]:
    return sorted(p for p in CASES.iterdir() if p.is_dir() and (p / "spec.yaml").exists())


def _yaml(path: Path) -> dict:
    return (YAML(typ="safe").load(path.read_text(encoding="utf-8")) or {}) if path.exists() else {}


def fake_image_id(ref: str) -> str:
    """A stable, realistic image id for a ref the case does not list under ``images``."""
    return "sha256:" + hashlib.sha256(ref.encode()).hexdigest()


def spec_as_made(spec: Spec, service: str, fields: dict, volumes: dict) -> Spec:
    """The spec as it was when the container was made: service fields and volumes changed."""
    base = spec.services[service].model_dump() if service in spec.services else {}
    env = {**base.get("env", {}), **(fields.get("env") or {})}
    merged = {**base, **fields, "env": {k: v for k, v in env.items() if v is not None}}
    made = Service.model_validate(merged)
    all_volumes = {**spec.volumes, **{k: VolumeSpec.model_validate(v) for k, v in volumes.items()}}
    return spec.model_copy(update={"services": {**spec.services, service: made},
                                   "volumes": all_volumes})


def made_container(entry: dict, spec: Spec, image_ids: dict[str, str]) -> dict:
    """A container entry with the labels reconcile would have written, then the case's fields."""
    entry = dict(entry)
    fields = entry.pop("made_from", None)
    volumes = entry.pop("made_from_volumes", None) or {}
    if fields is None:
        return entry
    service = entry["service"]
    old_spec = spec_as_made(spec, service, fields, volumes)
    made = old_spec.services[service]
    config = normalised_config(old_spec, service)
    name = container_name(spec, service)
    computed = {
        "id": hashlib.sha256(name.encode()).hexdigest()[:12], "name": name,
        "project": spec.project, "profile": made.profile, "role": "current",
        "spec_hash": config_hash(config), "config": config, "image_ref": made.image,
        "image_id": image_ids.get(made.image) or fake_image_id(made.image),
        "state": "running", "health": "healthy" if made.health.http else "none",
        "networks": config["networks"], "ports": config["ports"],
        "mounts": [{"source": v["source"], "target": v["target"], "read_only": v["read_only"],
                    "type": "volume" if "definition" in v else "bind"} for v in config["volumes"]],
        "kind": made.kind.value, "stateful": made.stateful, "protected": made.protect,
    }
    return {**computed, **entry}


def observed_for(case: Path, loaded: LoadedSpec) -> Observed:
    data = _yaml(case / "observed.yaml")
    data.setdefault("project", loaded.spec.project)
    image_ids = {i["ref"]: i["id"] for i in data.get("images") or ()}
    data["containers"] = [made_container(c, loaded.spec, image_ids)
                          for c in data.get("containers") or ()]
    return observed_from_dict(data)


def case_environ(case: Path) -> dict[str, str]:
    """The environment a case is planned in: only what ``case.yaml`` sets (hermetic)."""
    return {str(k): str(v) for k, v in (_yaml(case / "case.yaml").get("env") or {}).items()}


def run_case(case: Path) -> str:
    """The text an operator would see for this case: the plan, or the error."""
    meta = _yaml(case / "case.yaml")
    environ = case_environ(case)
    try:
        loaded = load_spec(case / "spec.yaml", environ)
        plan = make_plan(loaded, observed_for(case, loaded), meta.get("profiles") or ())
    except ReconcileError as exc:
        if not meta.get("expect_error"):
            raise
        text = f"error: {exc}\n".replace(f"{case}/", "")
        assert meta["expect_error"] in text
        return text
    assert not meta.get("expect_error"), f"expected an error: {meta['expect_error']}"
    assert Plan.from_dict(plan.to_dict()) == plan
    text = render_text(plan)
    secrets = {k: v for k, v in environ.items() if k not in (meta.get("public_env") or ())}
    _assert_no_secret(secrets, text, render_markdown(plan), json.dumps(render_json(plan)))
    return text


def _assert_no_secret(environ: dict[str, str], *outputs: str) -> None:
    """Every value a case interpolates is a secret (but those ``public_env`` names, which go only
    into image references and ports): none may reach any rendering."""
    for name, value in environ.items():
        for output in outputs:
            if len(value) >= 6:
                assert value not in output, f"${{env:{name}}} leaked into the plan"


@pytest.mark.parametrize("case", _case_dirs(), ids=lambda p: p.name)
def test_case(case: Path) -> None:
    text = run_case(case)
    golden = case / "expected.txt"
    if UPDATE:
        golden.write_text(text, encoding="utf-8")
    assert golden.exists(), f"no expected.txt; run with RECONCILE_UPDATE_GOLDEN=1 and read {golden}"
    assert text == golden.read_text(encoding="utf-8")


def test_there_are_enough_cases() -> None:
    assert len(_case_dirs()) >= 16


def test_observed_round_trips_through_the_codec() -> None:
    case = CASES / "stateful-recreate-backup"
    loaded = load_spec(case / "spec.yaml", case_environ(case))
    observed = observed_for(case, loaded)
    assert observed.containers
    assert observed_from_dict(observed.to_dict()) == observed


def test_codec_reads_labels_and_defaults() -> None:
    observed = observed_from_dict({"project": "p", "containers": [{
        "name": "p-db", "labels": {"reconcile.service": "db", "reconcile.stateful": "true",
                                   "reconcile.protect": "true", "reconcile.kind": "postgres",
                                   "reconcile.config": '{"image": "postgres:16"}'}}]})
    container = observed.containers[0]
    assert (container.service, container.stateful, container.protected, container.kind) == (
        "db", True, True, "postgres")
    assert container.config == {"image": "postgres:16"} and container.project == "p"
    assert container.running and container.id == "p-db"


@pytest.mark.parametrize(("ref", "major"), [
    ("postgres:16", 16), ("reconcile-lab/postgres:17", 17), ("postgres:16.4-bookworm", 16),
    ("postgres", None), ("registry:5000/postgres", None), ("postgres:latest", None),
    ("postgres:15@sha256:abc", 15),
])
def test_tag_major(ref: str, major: int | None) -> None:
    assert tag_major(ref) == major


def test_service_order_does_not_loop_on_a_cycle() -> None:
    spec = Spec.model_validate({"project": "p", "services": {
        "a": {"image": "x", "depends_on": ["b"]}, "b": {"image": "x", "depends_on": ["a"]},
        "c": {"image": "x", "profile": "infrastructure"}}})
    assert service_order(spec, ["a", "b", "c"]) == ["c", "a", "b"]


def test_a_profile_that_selects_nothing_is_a_warning_not_an_error() -> None:
    case = CASES / "new-stack"
    loaded = load_spec(case / "spec.yaml", case_environ(case))
    plan = make_plan(loaded, observed_for(case, loaded), ["monitoring"])
    assert plan.empty and plan.warnings == ("profile monitoring selects no service",)


def test_a_stateless_service_whose_data_cannot_carry_over_gets_a_warning() -> None:
    case = CASES / "volume-change"
    loaded = load_spec(case / "spec.yaml", case_environ(case))
    stateless = loaded.spec.services["dragonfly"].model_copy(update={"stateful": False})
    spec = loaded.spec.model_copy(update={"services": {**loaded.spec.services, "dragonfly": stateless}})
    loaded = LoadedSpec(spec, loaded.file, loaded.positions, loaded.display)
    plan = make_plan(loaded, observed_for(case, loaded))
    assert [a.id for a in plan.actions] == ["recreate:dragonfly"]
    assert plan.actions[0].fresh_volume
    assert plan.warnings == ("dragonfly: volume dragonfly_data changed: the new container starts on a "
                             "fresh volume; it is not stateful, so its old data is neither backed up "
                             "nor restored (set stateful: true to keep it)",)


# -- settings changed in place (docker update) --------------------------------------------------

def test_codec_takes_live_settings_as_given_else_from_the_config_label() -> None:
    label = '{"restart": "always", "mem_limit": "64m"}'
    given, from_label, bare = observed_from_dict({"project": "p", "containers": [
        {"name": "p-a", "config": label, "restart_policy": "no", "memory_limit": 1024},
        {"name": "p-b", "labels": {"reconcile.config": label}},
        {"name": "p-c"}]}).containers
    assert (given.restart_policy, given.memory_limit) == ("no", 1024)
    assert (from_label.restart_policy, from_label.memory_limit) == ("always", 64 * 1024 ** 2)
    assert (bare.restart_policy, bare.memory_limit) == (None, None)


def test_collect_reads_the_live_restart_policy_and_memory_limit() -> None:
    from reconciler.observe.collect import container_from

    doc = {"Id": "abc", "Name": "/p-api", "Config": {"Labels": {}}, "State": {"Status": "running"},
           "HostConfig": {"RestartPolicy": {"Name": "on-failure"}, "Memory": 8 * 1024 ** 2}}
    assert (container_from(doc).restart_policy, container_from(doc).memory_limit) == ("on-failure", 8 * 1024 ** 2)
    doc["HostConfig"] = {"RestartPolicy": {"Name": ""}, "Memory": 0}
    assert (container_from(doc).restart_policy, container_from(doc).memory_limit) == ("no", None)


def _hand_edited(service: str, unhealthy: dict[str, str] | None = None, **fields: object) -> Plan:
    """The hand-edit-restart case (the worker's restart policy is ``no``) with the fields of
    ``service``'s container replaced."""
    case = CASES / "hand-edit-restart"
    loaded = load_spec(case / "spec.yaml", case_environ(case))
    data = {"project": loaded.spec.project, **_yaml(case / "observed.yaml")}
    image_ids = {i["ref"]: i["id"] for i in data["images"]}
    data["containers"] = [made_container({**c, **fields} if c["service"] == service else c, loaded.spec,
                                         image_ids) for c in data["containers"]]
    return make_plan(loaded, observed_from_dict(data), unhealthy=unhealthy)


def test_a_live_setting_the_snapshot_does_not_know_is_not_compared() -> None:
    assert _hand_edited("worker", restart_policy=None).empty


def test_a_fresh_snapshot_fingerprints_the_live_settings() -> None:
    assert _hand_edited("worker").fingerprint != _hand_edited("worker", restart_policy="always").fingerprint


def test_an_adopted_container_is_updated_before_it_starts() -> None:
    plan = _hand_edited("worker", name="healthcare-worker-old-0a1b2c", role="previous", state="exited")
    assert [a.id for a in plan.actions] == ["update:worker", "start:worker"]
    assert plan.actions[1].depends_on == ("update:worker",)


def test_an_unhealthy_service_is_recreated_as_unhealthy_whatever_was_changed_in_place() -> None:
    plan = _hand_edited("postgres", {"postgres": "probe failed"}, memory_limit=512 * 1024 ** 2)
    assert [a.id for a in plan.actions if a.resource == "postgres"] == [
        "backup:postgres", "recreate:postgres", "verify:postgres"]
    assert plan.action("recreate:postgres").cause == "unhealthy: probe failed"
    assert plan.action("update:worker") is not None


def test_drift_says_how_to_reconnect_a_container_by_hand() -> None:
    """The undo of a `docker network disconnect`; none when the network must be created first."""
    from reconciler.operate.drift import undo_command

    undo = {}
    for name in ("network-detached", "network-deleted"):
        case = CASES / name
        loaded = load_spec(case / "spec.yaml", case_environ(case))
        plan = make_plan(loaded, observed_for(case, loaded))
        undo[name] = {a.resource: undo_command(loaded, a) for a in plan.actions if a.kind.value == "update"}
    assert undo["network-detached"] == {
        "worker": "docker network connect --alias worker healthcare_backend healthcare-worker"}
    assert set(undo["network-deleted"]) == {"postgres", "dragonfly", "api", "worker"}
    assert set(undo["network-deleted"].values()) == {None}


def test_only_the_specs_own_networks_are_said_to_be_deleted() -> None:
    """A container also on a network outside the project (the default bridge) keeps it as is."""
    from dataclasses import replace

    case = CASES / "network-deleted"
    loaded = load_spec(case / "spec.yaml", case_environ(case))
    observed = observed_for(case, loaded)
    containers = tuple(replace(c, networks=(*c.networks, "bridge")) for c in observed.containers)
    plan = make_plan(loaded, replace(observed, containers=containers))
    updates = [a for a in plan.actions if a.kind.value == "update"]
    assert len(updates) == 4
    assert {c.before for a in updates for c in a.changes} == {"healthcare_backend (deleted), bridge"}
