"""QA of networks in plans (pure; no engine): a network not as the spec says, or a network
reconcile did not make under a network's name, blocks the plan instead of reading "no changes"
or failing on the engine halfway through an apply; an endpoint left on a network deleted and
made again under the same name is not counted as joined."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.errors import SafetyError
from reconciler.observe.collect import from_raw
from reconciler.observe.models import Observed, ObservedContainer, ObservedNetwork, Role, State
from reconciler.operate.drift import drift_of
from reconciler.plan import safety
from reconciler.plan.planner import make_plan
from reconciler.plan.render import NO_CHANGES, render_markdown, render_text
from reconciler.spec.load import LoadedSpec
from reconciler.spec.models import Spec
from reconciler.spec.normalise import config_hash, normalised_config


def loaded(backend: dict | None = None) -> LoadedSpec:
    spec = Spec.model_validate({"project": "p", "networks": {"backend": backend or {}, "front": {}},
                                "services": {"web": {"image": "app:1", "networks": ["front", "backend"]},
                                             "db": {"image": "app:1", "networks": ["backend"],
                                                    "profile": "infrastructure"}}})
    return LoadedSpec(spec, Path("/srv/p/reconcile.yaml"))


def made(spec: LoadedSpec, service: str) -> ObservedContainer:
    config = normalised_config(spec.spec, service)
    return ObservedContainer(id=f"id-{service}", name=f"p-{service}", project="p", service=service,
                             profile=spec.spec.services[service].profile, role=Role.CURRENT,
                             spec_hash=config_hash(config), config=config, image_ref="app:1", image_id="",
                             state=State.RUNNING, health=None, networks=tuple(config["networks"]))


def observed(spec: LoadedSpec, backend: ObservedNetwork) -> Observed:
    return Observed("p", containers=(made(spec, "web"), made(spec, "db")),
                    networks=(ObservedNetwork("p_front", "n1", "bridge", "p"), backend))


OPEN = ObservedNetwork("p_backend", "n2", "bridge", "p", internal=False)


@pytest.mark.parametrize("declared, live, said", [
    ({"internal": True}, OPEN, "internal false → true"),
    ({}, ObservedNetwork("p_backend", "n2", "bridge", "p", internal=True), "internal true → false"),
    ({"driver": "macvlan"}, OPEN, "driver bridge → macvlan"),
])
def test_a_network_not_as_the_spec_says_blocks_the_plan(declared, live, said) -> None:
    """Was: "No changes. The stack matches the spec." (and drift: none) for a network made open
    that the spec makes internal."""
    spec = loaded(declared)
    plan = make_plan(spec, observed(spec, live))
    assert plan.empty
    (blocker,) = plan.blocking
    assert (blocker.resource, blocker.ref) == ("backend", "plan.network-differs")
    assert said in blocker.message and "p_backend" in blocker.message
    assert "docker network rm p_backend" in blocker.hint
    with pytest.raises(SafetyError):  # apply refuses it, though it has no action: it must not say "No changes"
        safety.check_not_blocked(plan)
    text = render_text(plan)
    assert NO_CHANGES not in text and "Blocked" in text
    markdown = render_markdown(plan)
    assert NO_CHANGES not in markdown and "Blocked" in markdown and said in markdown


def test_a_network_as_the_spec_says_blocks_nothing() -> None:
    spec = loaded({"internal": False})
    plan = make_plan(spec, observed(spec, OPEN))
    assert plan.empty and plan.blocking == ()
    assert render_text(plan).count(NO_CHANGES) == 1


def test_only_the_networks_of_the_selected_profiles_are_judged() -> None:
    spec = Spec.model_validate({"project": "p", "networks": {"backend": {"internal": True}, "front": {}},
                                "services": {"web": {"image": "app:1", "networks": ["front"]},
                                             "db": {"image": "app:1", "networks": ["backend"],
                                                    "profile": "infrastructure"}}})
    spec = LoadedSpec(spec, Path("/srv/p/reconcile.yaml"))
    state = Observed("p", containers=(made(spec, "web"), made(spec, "db")),
                     networks=(ObservedNetwork("p_front", "n1", "bridge", "p"), OPEN))
    assert make_plan(spec, state, ["app"]).blocking == ()
    assert make_plan(spec, state, ["infrastructure"]).blocking[0].resource == "backend"


@pytest.mark.parametrize("owner, why", [(None, "no reconcile labels"), ("other", "reconcile project other")])
def test_a_network_reconcile_did_not_make_under_the_name_blocks_its_create(owner, why) -> None:
    """Was: the plan said "create network" and apply failed on the engine (exit 2); once such a
    network was seen, a service would silently have joined it."""
    spec = loaded()
    plan = make_plan(spec, observed(spec, ObservedNetwork("p_backend", "abcdef123456", "bridge", owner)))
    assert "create-network:backend" in [a.id for a in plan.actions]
    (blocker,) = plan.blocking
    assert (blocker.resource, blocker.ref) == ("backend", "plan.network-taken")
    assert why in blocker.message and "abcdef123456" in blocker.message
    assert "docker network rm p_backend" in blocker.hint
    with pytest.raises(SafetyError):
        safety.check_not_blocked(plan)


def test_drift_names_the_services_on_a_blocked_network_not_the_network() -> None:
    spec = loaded({"internal": True})
    plan = make_plan(spec, observed(spec, OPEN))
    drifted = {d.service: d.reasons for d in drift_of(spec, plan)}
    assert sorted(drifted) == ["db", "web"]
    assert all("that network is removed" in r and "container" not in r for r in drifted["db"])


def _doc(name: str, endpoints: dict) -> dict:
    return {"Id": f"id-{name}", "Name": f"/{name}", "Config": {"Labels": {"reconcile.project": "p"}},
            "State": {"Status": "exited"}, "NetworkSettings": {"Networks": endpoints}}


def test_an_endpoint_on_a_network_deleted_and_made_again_is_not_counted_as_joined() -> None:
    """Was: after heal made p_backend again for one stopped service, the other's endpoint (on the
    deleted network's id) read as joined, its rejoin was dropped and its start failed."""
    raw = {"images": {}, "containers": [_doc("p-db", {"p_backend": {"NetworkID": "old"}}),
                                         _doc("p-web", {"p_backend": {"NetworkID": "new"}})],
           "networks": [{"Name": "p_backend", "Id": "new", "Labels": {"reconcile.project": "p"}}],
           "volumes": []}
    seen = {c.name: c.networks for c in from_raw("p", raw).containers}
    assert seen == {"p-db": (), "p-web": ("p_backend",)}
    gone = {**raw, "networks": []}  # deleted and not made again: the endpoint is kept (shown as deleted)
    assert {c.name: c.networks for c in from_raw("p", gone).containers}["p-db"] == ("p_backend",)


def test_a_dependency_outside_the_selected_profiles_that_is_down_is_said() -> None:
    """Was: ``plan --profile app`` showed "1 to recreate" and no word of it; apply then failed at
    the step (exit 2) on "web depends on db being healthy"."""
    spec = Spec.model_validate({"project": "p", "services": {
        "db": {"image": "app:1", "profile": "infrastructure"},
        "web": {"image": "app:2", "depends_on": {"db": "healthy"}},
        "cron": {"image": "app:1", "depends_on": ["db"]}}})
    spec = LoadedSpec(spec, Path("/srv/p/reconcile.yaml"))
    db, web, cron = made(spec, "db"), made(spec, "web"), made(spec, "cron")
    stale_web = ObservedContainer(**{**vars(web), "spec_hash": "old", "config": None})
    stopped = Observed("p", containers=(ObservedContainer(**{**vars(db), "state": State.EXITED}), stale_web, cron))
    (warning,) = make_plan(spec, stopped, ["app"]).warnings  # cron has no action: apply never checks its dependency
    assert warning.startswith("web depends on db (profile infrastructure, not selected), which is not running")
    assert "apply profile infrastructure first" in warning
    assert make_plan(spec, Observed("p", containers=(stale_web, cron)), ["app"]).warnings[0].endswith(
        "which has no container: apply will stop at web; apply profile infrastructure first")
    assert make_plan(spec, Observed("p", containers=(db, stale_web, cron)), ["app"]).warnings == ()
    assert make_plan(spec, stopped).warnings == ()  # all profiles: the plan starts db before web


def test_the_networks_a_service_leaves_are_named_in_the_plan() -> None:
    """Was: "networks: (sensitive), (sensitive) → p_edge": a network's name is a key of the spec,
    never interpolated, so there is no secret to hide; an interpolated one still reads (sensitive)."""
    before = loaded()
    after = LoadedSpec(Spec.model_validate({"project": "p", "networks": {"edge": {}}, "services": {
        "web": {"image": "app:1", "networks": ["edge"]}}}), Path("/srv/p/reconcile.yaml"))
    plan = make_plan(after, Observed("p", containers=(made(before, "web"),),
                                     networks=(ObservedNetwork("p_edge", "n3", "bridge", "p"),)))
    (change,) = plan.action("recreate:web").changes
    assert str(change) == "networks: p_backend, p_front → p_edge"
    hidden = ObservedContainer(**{**vars(made(before, "web")), "sensitive": {"networks": [0]}})
    plan = make_plan(after, Observed("p", containers=(hidden,),
                                     networks=(ObservedNetwork("p_edge", "n3", "bridge", "p"),)))
    assert plan.action("recreate:web").changes[0].before == "(sensitive), (sensitive)"


def test_a_network_the_spec_no_longer_declares_is_said() -> None:
    """Was: a network renamed in the spec (front → edge) stayed in the engine, and every plan said
    "No changes" without a word of it."""
    spec = loaded()
    gone = ObservedNetwork("p_old", "n9", "bridge", "p")
    foreign = ObservedNetwork("p_mine", "n8", "bridge", None)  # not ours: not reconcile's to mention
    state = observed(spec, OPEN)
    plan = make_plan(spec, Observed("p", containers=state.containers, networks=(*state.networks, gone, foreign)))
    assert plan.empty and plan.warnings == (
        "network p_old is no longer in the spec: apply leaves it (remove it with docker network rm p_old once no "
        "container is on it)",)


@pytest.mark.parametrize("explanation, port", [
    ("driver failed programming external connectivity on endpoint p-web (ab12): Error starting userland proxy: "
     "listen tcp4 127.0.0.1:18933: bind: address already in use", "18933"),
    ("driver failed programming external connectivity on endpoint p-web (ab12): Bind for 0.0.0.0:8080 failed: "
     "port is already allocated", "8080"),
])
def test_a_taken_host_port_gets_a_hint_naming_it(explanation, port) -> None:
    from reconciler.dockerio import _refused_hint

    assert _refused_hint(explanation).startswith(f"host port {port} is taken by another process or container")
    assert "docker info" in _refused_hint("No such image: x")


def test_heal_of_a_service_off_the_network_not_as_the_spec_says_is_not_refused() -> None:
    """The blocker stops a whole apply, but heal's plan for one service on other networks only
    must not be refused for it (was: heal could not recreate any service of the stack)."""
    from reconciler.operate.heal_rules import subplan

    spec = Spec.model_validate({"project": "p", "networks": {"backend": {"internal": True}, "front": {}},
                                "services": {"web": {"image": "app:1", "networks": ["front"]},
                                             "db": {"image": "app:1", "networks": ["backend"]}}})
    live = LoadedSpec(spec, Path("/srv/p/reconcile.yaml"))
    sick = {"web": "unhealthy"}
    plan = make_plan(live, observed(live, OPEN), unhealthy=sick)
    assert [b.ref for b in plan.blocking] == ["plan.network-differs"]
    safety.check_not_blocked(subplan(plan, spec, ["web"]))
    with pytest.raises(SafetyError):
        safety.check_not_blocked(subplan(plan, spec, ["db"]))
