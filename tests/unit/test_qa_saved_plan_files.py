"""QA of saved plan files and of the journal files `history` reads: a plan applied on another
engine (another DOCKER_HOST) is refused for that, not as an edited spec (no engine: the two
engines are two observed states); a file in the journal folder that is not a journal is skipped,
not a traceback of history, status and the metrics; a plan that recreates for a config change
says when the image was rebuilt under the same tag too (what a reviewer approves)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from reconciler.apply.journal import Journal, history
from reconciler.apply.runner import as_reviewed, same_engine
from reconciler.errors import PlanError
from reconciler.observe.models import Observed
from reconciler.plan.actions import Plan
from reconciler.plan.planner import engine_tag, make_plan
from reconciler.spec.load import LoadedSpec, load_spec
from reconciler.spec.models import Spec
from tests.unit.test_planner_cases import case_environ, observed_for

LOADED = LoadedSpec(Spec.model_validate({"project": "p", "services": {"web": {"image": "web:1"}}}),
                    Path("/nowhere/spec.yaml"))
HERE, THERE = Observed(project="p", engine_id="ENGINE-A"), Observed(project="p", engine_id="ENGINE-B")


def saved_on(observed: Observed, meta: dict | None = None) -> Plan:
    """The plan as `plan --out` writes it on ``observed``'s engine, and as apply reads it back."""
    data = make_plan(LOADED, observed).to_dict()
    data["meta"] = {"reconcile_version": "0.1.0", "engine": engine_tag(observed)} if meta is None else meta
    return Plan.from_dict(json.loads(json.dumps(data)))


def test_a_plan_applied_on_another_engine_is_refused_for_that_not_as_a_spec_change():
    saved = saved_on(HERE)
    assert make_plan(LOADED, THERE).spec_hash != saved.spec_hash  # what apply called "the spec changed"
    with pytest.raises(PlanError) as refused:
        same_engine(saved, THERE, Path("plan.json"))
    assert refused.value.ref == "plan.other-engine"
    assert "another Docker engine" in refused.value.message and "DOCKER_HOST" in refused.value.hint


def test_the_engine_tag_shows_no_engine_id_and_the_same_engine_passes():
    saved = saved_on(HERE)
    assert "ENGINE-A" not in json.dumps(saved.to_dict())
    same_engine(saved, HERE, Path("plan.json"))


def test_a_plan_file_without_a_spec_hash_is_not_called_a_changed_spec():
    data = saved_on(HERE).to_dict()
    del data["spec_hash"]
    with pytest.raises(PlanError) as refused:
        as_reviewed(Plan.from_dict(data), make_plan(LOADED, HERE), Path("plan.json"))
    assert refused.value.ref == "plan.tampered" and "no spec hash" in refused.value.message


@pytest.mark.parametrize("meta", [{}, {"reconcile_version": "0.1.0"}, "edited"])
def test_a_plan_file_without_the_tag_is_left_to_the_other_checks(meta):
    same_engine(saved_on(HERE, meta), THERE, Path("plan.json"))


@pytest.mark.parametrize("content", [b'{"ts": "2026-11-30T06:00:00+00:00", "event": "start"}\n', b"[]\n",
                                     b"null\n", b"\xff\xfe garbage\n"])
def test_a_file_in_the_journal_folder_that_is_not_a_journal_is_skipped(tmp_path, content):
    journal = Journal(tmp_path, "20261130T060000Z-abcdef")
    journal.write("start", actions=["create:web"])
    journal.write("finish", result="ok", exit_code=0)
    journal.close()
    (tmp_path / "journal" / "20261130T070000Z-foreign.jsonl").write_bytes(content)
    assert [(r.apply_id, r.result) for r in history(tmp_path)] == [("20261130T060000Z-abcdef", "ok")]


REBUILT = Path(__file__).resolve().parents[1] / "cases" / "image-rebuilt"


def test_a_config_recreate_on_a_rebuilt_image_says_the_image_was_rebuilt(tmp_path):
    """The image-rebuilt case, where api was also made with another LOG_LEVEL: the cause read
    only "env.LOG_LEVEL changed", and the recreate deployed the new build unannounced."""
    for name in ("spec.yaml", "case.yaml"):
        shutil.copy(REBUILT / name, tmp_path / name)
    observed = (REBUILT / "observed.yaml").read_text()
    (tmp_path / "observed.yaml").write_text(observed.replace("service: api, made_from: {}",
                                                             "service: api, made_from: {env: {LOG_LEVEL: debug}}"))
    loaded = load_spec(tmp_path / "spec.yaml", case_environ(tmp_path))
    causes = {a.resource: a.cause for a in make_plan(loaded, observed_for(tmp_path, loaded)).actions}
    assert causes["api"] == ("env.LOG_LEVEL changed; image ghcr.io/acme/healthcare-api:4f2a9c1e was rebuilt "
                             "(sha256:abcd1234 → sha256:ef567890)")
    assert causes["worker"] == ("image ghcr.io/acme/healthcare-api:4f2a9c1e was rebuilt "
                                "(sha256:abcd1234 → sha256:ef567890)")
