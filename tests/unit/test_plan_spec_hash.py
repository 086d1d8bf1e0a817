"""A plan's spec hash covers the spec's secrets (a reviewed plan must not run after one was
rotated), so it is keyed with the engine's ID: the rest of what it hashes is in the repository,
and a plan posted in a pull request would otherwise let anyone test guesses of a weak password
offline. Observed states are built here; no engine."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from reconciler.observe.codec import observed_from_dict
from reconciler.observe.collect import from_raw
from reconciler.observe.models import Observed
from reconciler.plan.planner import make_plan
from reconciler.plan.render import render_json, render_markdown, render_text
from reconciler.spec.load import LoadedSpec
from reconciler.spec.models import Spec

ENGINE = "2WZ3:5RUU:HEWW:G557:DBUG:3NXK:VPO2:2BJH:5NVP:HTUP:65YB:L6N3"


def loaded(password: str) -> LoadedSpec:
    spec = Spec.model_validate({"project": "p", "state_dir": "/srv/p/state", "services": {
        "db": {"image": "postgres:15", "kind": "postgres", "env": {"POSTGRES_PASSWORD": password}}}})
    return LoadedSpec(spec, Path("/srv/p/reconcile.yaml"))


def spec_hash(password: str, engine: str) -> str:
    return make_plan(loaded(password), Observed("p", engine_id=engine)).spec_hash


def test_the_same_spec_on_the_same_engine_hashes_the_same() -> None:
    assert spec_hash("hunter22", ENGINE) == spec_hash("hunter22", ENGINE)


def test_a_rotated_secret_still_changes_the_hash() -> None:
    assert spec_hash("hunter22", ENGINE) != spec_hash("hunter23", ENGINE)


def test_without_the_engine_s_id_a_guess_cannot_be_checked() -> None:
    """What a reader of the plan can compute for the right password, knowing all but the ID."""
    published = spec_hash("hunter22", ENGINE)
    assert spec_hash("hunter22", "") != published
    assert spec_hash("hunter22", ENGINE.replace("2", "3")) != published


def test_the_engine_s_id_is_in_no_output_of_the_plan() -> None:
    plan = make_plan(loaded("hunter22"), Observed("p", engine_id=ENGINE))
    for text in (render_text(plan), render_markdown(plan), render_json(plan), repr(Observed("p", engine_id=ENGINE))):
        assert ENGINE not in text and hashlib.sha256(ENGINE.encode()).hexdigest() not in text


def test_the_snapshot_carries_the_id_from_the_engine_and_from_a_case_file() -> None:
    raw = {"images": {}, "containers": [], "networks": [], "volumes": [], "engine_id": ENGINE}
    assert from_raw("p", raw).engine_id == ENGINE
    assert observed_from_dict(json.loads(json.dumps({"project": "p", "engine_id": ENGINE}))).engine_id == ENGINE
