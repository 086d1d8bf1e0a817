"""A container reconcile did not make under the name a service's container gets (``docker run
--name <project>-<service>`` by hand, another tool's or project's leftover): the plan says so up
front as a blocking issue, and apply refuses such a plan before it changes anything, instead
of failing midway on the engine's Conflict. Observed states are built here; no engine."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from reconciler.errors import SafetyError
from reconciler.observe.codec import observed_from_dict
from reconciler.observe.collect import from_raw
from reconciler.observe.models import NameHolder, Observed, ObservedContainer, ObservedNetwork, Role, State
from reconciler.plan import safety
from reconciler.plan.actions import Plan
from reconciler.plan.planner import make_plan
from reconciler.plan.render import render_json, render_markdown, render_text
from reconciler.spec.load import LoadedSpec
from reconciler.spec.models import Spec
from reconciler.spec.normalise import config_hash, normalised_config

HOLDER_ID = "3f2a9c1e4b5d" + "0" * 52


def loaded(**web: object) -> LoadedSpec:
    spec = Spec.model_validate({"project": "p", "state_dir": "/srv/p/state", "networks": {"backend": {}},
                                "services": {"web": {"image": "app:1", "networks": ["backend"], **web},
                                             "worker": {"image": "app:1", "networks": ["backend"]}}})
    return LoadedSpec(spec, Path("/srv/p/reconcile.yaml"))


SPEC = loaded()
NET = ObservedNetwork("p_backend", "n1", "bridge", "p")
FOREIGN = NameHolder(name="p-web", id=HOLDER_ID, image="reconcile-lab/debian:bookworm", state="running")


def made(service: str, name: str | None = None, role: Role = Role.CURRENT, spec: LoadedSpec = SPEC,
         state: State = State.RUNNING) -> ObservedContainer:
    config = normalised_config(spec.spec, service)
    name = name or f"p-{service}"
    return ObservedContainer(id=f"id-{name}", name=name, project="p", service=service, profile="app",
                             role=role, spec_hash=config_hash(config), config=config,
                             image_ref=str(config["image"]), image_id="sha256:app1", state=state, health=None,
                             networks=tuple(config["networks"]))


def plan_of(*containers: ObservedContainer, holders: tuple[NameHolder, ...] = (FOREIGN,),
            spec: LoadedSpec = SPEC) -> Plan:
    return make_plan(spec, Observed("p", containers=containers, networks=(NET,), name_holders=holders))


def test_a_foreign_container_under_the_service_s_name_blocks_its_create() -> None:
    plan = plan_of(made("worker"))
    assert [a.id for a in plan.actions] == ["create:web"]  # the plan is still made and shown
    (blocker,) = plan.blocking
    assert (blocker.resource, blocker.ref) == ("web", "plan.name-taken")
    assert "p-web" in blocker.message and "3f2a9c1e4b5d" in blocker.message
    assert "reconcile-lab/debian:bookworm" in blocker.message and "no reconcile labels" in blocker.message
    assert "docker rename p-web" in blocker.hint and "docker rm -f p-web" in blocker.hint
    assert "another name in the spec" in blocker.hint


def test_without_a_holder_the_plan_is_not_blocked() -> None:
    assert plan_of(made("worker"), holders=()).blocking == ()
    other = NameHolder(name="p-web-backup", id="9" * 64, image="x", state="exited")  # a name no service takes
    assert plan_of(made("worker"), holders=(other,)).blocking == ()


def test_a_holder_of_another_reconcile_project_is_named_as_such() -> None:
    plan = plan_of(made("worker"), holders=(replace(FOREIGN, project="p-web-legacy"),))
    assert "it belongs to reconcile project p-web-legacy" in plan.blocking[0].message


def test_a_container_labelled_as_another_service_under_the_name_blocks_too() -> None:
    """Labelled for worker but named p-web: a stray the plan only warns about, and it holds the name."""
    stray = replace(made("worker", name="p-web"), role=Role.STRAY)
    plan = plan_of(made("worker"), stray, holders=())
    assert [b.resource for b in plan.blocking] == ["web"]
    assert "carries this project's labels for service worker" in plan.blocking[0].message


def test_an_adopted_container_cannot_take_a_held_name() -> None:
    """An interrupted apply left web as -old-; the start that renames it back is blocked."""
    old = made("web", name="p-web-old-0a1b2c", role=Role.PREVIOUS, state=State.EXITED)
    plan = plan_of(old, made("worker"))
    assert [a.id for a in plan.actions] == ["start:web"]
    assert "cannot give the container of web its name" in plan.blocking[0].message


def test_the_proxy_s_name_held_blocks_the_traffic_switch() -> None:
    spec = loaded(health={"http": {"port": 8000, "path": "/health"}}, deploy={"strategy": "blue-green"},
                  ports=["127.0.0.1:8080:8000"])
    holder = NameHolder(name="p-web-proxy", id=HOLDER_ID, image="nginx:1.27", state="running")
    plan = plan_of(made("web", spec=spec), made("worker", spec=spec), holders=(holder,), spec=spec)
    assert "switch-traffic:web" in [a.id for a in plan.actions]
    assert "cannot create the proxy of web" in plan.blocking[0].message


def test_the_text_shows_a_blocking_line_and_marks_the_action() -> None:
    text = render_text(plan_of(made("worker")))
    assert "  + create  web  new service (blocked)\n" in text
    assert "\nBlocked: apply refuses this plan until this is fixed:\n  ! web: the name p-web is taken" in text
    assert "\n    hint: look at it (docker inspect p-web)" in text
    assert text.endswith("Apply would refuse this plan before changing anything (see Blocked above).\n")
    assert "Blocked" not in render_text(plan_of(made("worker"), holders=()))


def test_json_adds_a_blocking_field_and_round_trips() -> None:
    plan = plan_of(made("worker"))
    data = json.loads(json.dumps(render_json(plan)))
    assert data["blocking"] == [b.to_dict() for b in plan.blocking]
    assert set(data["blocking"][0]) == {"resource", "ref", "message", "hint"}
    assert {"format", "project", "fingerprint", "spec_hash", "profiles", "summary", "changes", "warnings",
            "actions"} <= set(data)  # the documented shape, unchanged
    assert Plan.from_dict(data) == plan
    assert render_json(plan_of(made("worker"), holders=()))["blocking"] == []
    assert Plan.from_dict({k: v for k, v in data.items() if k != "blocking"}).blocking == ()  # an older file


def test_the_markdown_comment_says_apply_refuses() -> None:
    markdown = render_markdown(plan_of(made("worker")))
    head = markdown.split("| | action |")[0]
    assert "⛔ **Blocked: apply refuses this plan until this is fixed:**" in head
    assert "- ❗ web: the name p-web is taken by container 3f2a9c1e4b5d" in head
    assert "new service (blocked) |" in markdown


def test_apply_s_check_refuses_a_blocked_plan_as_refused_not_failed() -> None:
    plan = plan_of(made("worker"))
    with pytest.raises(SafetyError) as raised:
        safety.check_not_blocked(plan)
    assert raised.value.exit_code == 1 and raised.value.ref == "plan.name-taken"
    assert raised.value.message.startswith("apply refuses this plan: web: the name p-web is taken")
    assert "docker rm -f p-web" in raised.value.hint and raised.value.hint.endswith("nothing was changed")
    safety.check_not_blocked(plan_of(made("worker"), holders=()))


def test_a_plan_for_other_services_is_not_refused_for_a_blocked_one() -> None:
    """Heal's plan for one service is taken from a whole plan and keeps its blocking list."""
    plan = plan_of(holders=(FOREIGN,))
    assert {a.resource for a in plan.actions} >= {"web", "worker"}
    safety.check_not_blocked(replace(plan, actions=tuple(a for a in plan.actions if a.resource != "web")))
    with pytest.raises(SafetyError):
        safety.check_not_blocked(plan)


def test_the_snapshot_reads_the_holders_the_engine_listed() -> None:
    raw = {"images": {}, "containers": [], "networks": [], "volumes": [], "name_holders": [
        {"Id": HOLDER_ID, "Names": ["/p-web"], "Image": "reconcile-lab/debian:bookworm", "State": "running",
         "Project": None}]}
    observed = from_raw("p", raw)
    assert observed.name_holders == (FOREIGN,) and observed.name_holder("p-web") == FOREIGN
    assert from_raw("p", {k: v for k, v in raw.items() if k != "name_holders"}).name_holders == ()
    assert observed_from_dict(observed.to_dict()) == observed
    assert observed.fingerprint() == replace(observed, name_holders=()).fingerprint()
