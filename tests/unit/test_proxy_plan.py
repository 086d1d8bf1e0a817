"""Plans of blue-green services: the traffic switch, the proxy's own life, kept versions, and
the states an interrupted switch can leave. Observed states are built here; no engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.deploy import rules
from reconciler.observe.models import (
    Observed,
    ObservedContainer,
    ObservedNetwork,
    Role,
    State,
)
from reconciler.plan.planner import make_plan
from reconciler.plan.render import render_text
from reconciler.spec.load import LoadedSpec
from reconciler.spec.models import Spec
from reconciler.spec.normalise import config_hash, normalised_config

API = {"image": "app:2", "health": {"http": {"port": 8000, "path": "/health"}},
       "deploy": {"strategy": "blue-green", "drain": "2s"}, "networks": ["backend"],
       "ports": ["127.0.0.1:8080:8000"]}
WORKER = {"image": "app:2", "command": ["python3", "worker.py"], "deploy": {"strategy": "blue-green"},
          "networks": ["backend"]}


def loaded(**api: object) -> LoadedSpec:
    spec = Spec.model_validate({"project": "p", "state_dir": "/srv/p/state", "networks": {"backend": {}},
                                "services": {"api": {**API, **api}, "worker": WORKER}})
    return LoadedSpec(spec, Path("/srv/p/reconcile.yaml"))


SPEC = loaded()
NET = ObservedNetwork("p_backend", "n1", "bridge", "p")


def box(service: str, name: str, *, role: Role = Role.CURRENT, spec: LoadedSpec = SPEC,
        state: State = State.RUNNING, finished: str | None = None, ports: tuple = (),
        **fields: object) -> ObservedContainer:
    """A container as apply made it from ``spec`` (its service ``fields`` changed)."""
    made = spec.spec
    if fields:
        changed = made.services[service].model_copy(update=fields)
        made = made.model_copy(update={"services": {**made.services, service: changed}})
    config = normalised_config(made, service)
    return ObservedContainer(id=f"id-{name}", name=name, project="p", service=service, profile="app",
                             role=role, spec_hash=config_hash(config), config=config,
                             image_ref=str(config["image"]), image_id=f"sha256:{config['image']}",
                             state=state, health=None, finished_at=finished, ports=ports,
                             networks=tuple(config["networks"]))


def proxy(upstream: str | None, spec: LoadedSpec = SPEC, state: State = State.RUNNING) -> ObservedContainer:
    return ObservedContainer(id="id-proxy", name="p-api-proxy", project="p", service="api", profile="app",
                             role=Role.PROXY, spec_hash=rules.proxy_hash(spec, "api"),
                             config=rules.proxy_config(spec, "api"), image_ref="nginx:stable",
                             image_id="sha256:n", state=state, health=None, upstream=upstream)


def plan(*containers: ObservedContainer, spec: LoadedSpec = SPEC):
    return make_plan(spec, Observed("p", containers=containers, networks=(NET,)))


def ids(result) -> list[str]:
    return [a.id for a in result.actions]


STEADY = (box("api", "p-api"), box("worker", "p-worker"), proxy("id-p-api"))


def test_an_empty_engine_gets_the_app_then_its_proxy():
    result = make_plan(SPEC, Observed("p"))
    assert ids(result) == ["create-network:backend", "create:api", "switch-traffic:api", "create:worker"]
    switch = result.action("switch-traffic:api")
    assert switch.depends_on == ("create:api",)
    assert switch.cause.startswith("create proxy p-api-proxy (nginx:stable) publishing 127.0.0.1:8080:8000")
    assert "= switch-traffic  api" in render_text(result) and "1 traffic switch." in render_text(result)


def test_the_steady_state_with_kept_versions_and_a_proxy_has_nothing_to_do():
    old = box("api", "p-api-kept-aaaaaa", role=Role.KEPT, state=State.EXITED, image="app:1")
    assert plan(*STEADY, old).empty


def test_an_upgrade_recreates_switches_then_prunes_beyond_two_versions():
    observed = (box("api", "p-api", image="app:1"), box("worker", "p-worker", image="app:1"),
                proxy("id-p-api"),
                box("api", "p-api-kept-aaaaaa", role=Role.KEPT, state=State.EXITED, image="app:0",
                    finished="2026-01-02T00:00:00Z"),
                box("api", "p-api-kept-bbbbbb", role=Role.KEPT, state=State.EXITED, image="app:-1",
                    finished="2026-01-01T00:00:00Z"))
    result = plan(*observed)
    assert ids(result) == ["recreate:api", "switch-traffic:api", "remove:p-api-kept-bbbbbb",
                           "recreate:worker"]
    assert result.action("switch-traffic:api").depends_on == ("recreate:api",)
    assert result.action("remove:p-api-kept-bbbbbb").depends_on == ("switch-traffic:api",)
    assert "drain 2s, stop the old one (kept for rollback)" in result.action("switch-traffic:api").cause
    assert "starts and is ready before the old one stops" in result.action("recreate:worker").cause


def test_an_interrupted_switch_points_the_proxy_at_the_live_container_before_removing_leftovers():
    observed = (box("api", "p-api"), box("api", "p-api-old-a1b2c3", role=Role.PREVIOUS, image="app:1"),
                box("worker", "p-worker"), proxy("id-p-api-old-a1b2c3"))
    result = plan(*observed)
    assert ids(result) == ["switch-traffic:api", "remove:p-api-old-a1b2c3"]
    assert result.action("remove:p-api-old-a1b2c3").depends_on == ("switch-traffic:api",)
    assert result.action("switch-traffic:api").cause == \
        "p-api-proxy serves p-api-old-a1b2c3, not p-api: point it at p-api"


def test_killed_before_the_candidate_took_the_name_keeps_the_old_one_serving():
    observed = (box("api", "p-api-old-a1b2c3", role=Role.PREVIOUS, image="app:1"),
                box("api", "p-api-new-a1b2c3", role=Role.CANDIDATE), box("worker", "p-worker"),
                proxy("id-p-api-old-a1b2c3"))
    assert ids(plan(*observed)) == ["recreate:api", "switch-traffic:api", "remove:p-api-new-a1b2c3"]


@pytest.mark.parametrize(("the_proxy", "words"), [
    (None, "create proxy p-api-proxy (nginx:stable) publishing 127.0.0.1:8080:8000/tcp; serving p-api"),
    (proxy("id-p-api", state=State.EXITED), "start proxy p-api-proxy (exited); serving p-api"),
    (proxy("id-p-api", spec=loaded(ports=["127.0.0.1:9090:8000"])),
     "recreate proxy p-api-proxy: ports changed (the old one serves until the new one does; a short gap "
     "only on a host port they share); serving p-api"),
    (proxy(None), "p-api-proxy serves an unknown container, not p-api: point it at p-api"),
    (proxy("id-gone"), "p-api-proxy serves a container that is gone (id-gone), not p-api"),
])
def test_the_proxy_alone_is_repaired_by_a_switch(the_proxy, words):
    observed = [box("api", "p-api"), box("worker", "p-worker")] + ([the_proxy] if the_proxy else [])
    result = plan(*observed)
    assert ids(result) == ["switch-traffic:api"]
    assert words in result.action("switch-traffic:api").cause


def test_the_first_blue_green_deploy_moves_the_host_port_to_the_proxy():
    recreate = loaded(deploy={"strategy": "recreate"})
    old = box("api", "p-api", spec=recreate, ports=("127.0.0.1:8080:8000/tcp",))
    result = plan(old, box("worker", "p-worker"))
    assert ids(result) == ["recreate:api", "switch-traffic:api"]
    assert "ports changed" in result.action("recreate:api").cause
    assert "first blue-green deploy" in result.action("switch-traffic:api").cause


def test_back_to_recreate_removes_the_proxy_first_and_the_kept_versions():
    recreate = loaded(deploy={"strategy": "recreate"})
    kept = box("api", "p-api-kept-aaaaaa", role=Role.KEPT, state=State.EXITED, image="app:1")
    result = plan(*STEADY, kept, spec=recreate)
    assert ids(result) == ["remove:p-api-proxy", "recreate:api", "remove:p-api-kept-aaaaaa"]
    assert "remove:p-api-proxy" in result.action("recreate:api").depends_on
    assert "only blue-green services keep" in result.action("remove:p-api-kept-aaaaaa").cause


def test_a_stopped_live_container_is_started_without_a_switch_when_the_proxy_serves_it():
    observed = (box("api", "p-api", state=State.EXITED), box("worker", "p-worker"), proxy("id-p-api"))
    assert ids(plan(*observed)) == ["start:api"]
