"""Blue-green's pure parts: the proxy's nginx config, names and roles, kept versions, the
proxy container's arguments, readiness rules and the spec's cross-checks. No engine."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from reconciler.apply import builders
from reconciler.deploy import nginx, proxy, rules
from reconciler.errors import SpecErrors
from reconciler.observe.models import Observed, ObservedContainer, Role, State
from reconciler.spec.load import LoadedSpec, load_spec
from reconciler.spec.models import Spec
from reconciler.spec.normalise import normalised_config, role_from_name

SPEC = Spec.model_validate({
    "project": "p", "state_dir": "/srv/p/state", "networks": {"backend": {}},
    "services": {
        "api": {"image": "app:2", "health": {"http": {"port": 8000, "path": "/health"}},
                "deploy": {"strategy": "blue-green", "proxy_image": "lab/nginx:1"},
                "networks": ["backend"], "ports": ["127.0.0.1:8080:8000", "9000"]},
        "worker": {"image": "app:2", "deploy": {"strategy": "blue-green"}, "networks": ["backend"]},
        "cron": {"image": "app:2"},
    }})
LOADED = LoadedSpec(SPEC, Path("/srv/p/reconcile.yaml"))
UP = nginx.Upstream("0123456789ab" + "c" * 52, "api-1a2b3c")


def test_config_has_one_server_per_port_a_control_server_and_the_upstream_record():
    text = nginx.render("p", "api", [8000, 9000, 8000], UP)
    assert text.count("    listen ") == 3
    assert "proxy_pass http://$reconcile_upstream:8000;" in text
    assert "set $reconcile_upstream api-1a2b3c;" in text
    assert f"listen {nginx.CONTROL_PORT};" in text and 'return 200 "0123456789ab";' in text
    assert "resolver 127.0.0.11" in text  # re-resolved: an app restart may change its IP
    assert nginx.parse_upstream(text) == UP


@pytest.mark.parametrize("text", ["", "server {}\n", "# reconcile-upstream: nothex api\n"])
def test_a_config_that_is_not_ours_has_no_upstream(text):
    assert nginx.parse_upstream(text) is None


def test_the_control_port_and_odd_aliases_are_refused():
    with pytest.raises(ValueError, match="reserved"):
        nginx.render("p", "api", [nginx.CONTROL_PORT], UP)
    with pytest.raises(ValueError, match="alias"):
        nginx.render("p", "api", [8000], nginx.Upstream(UP.container_id, "api; evil"))


@pytest.mark.parametrize(("name", "role"), [
    ("p-api-proxy", "proxy"), ("p-api-kept-a1b2c3", "kept"), ("p-api-kept-xyz", None),
    ("p-api-old-a1b2c3", "previous"), ("p-api", "current")])
def test_roles_of_blue_green_names(name, role):
    assert role_from_name(name, "p", "api") == role


def test_a_proxied_container_publishes_nothing_and_carries_its_alias():
    assert normalised_config(SPEC, "api")["ports"] == []
    assert normalised_config(SPEC, "worker")["ports"] == []
    args = builders.container_args(LOADED, "api", "sha256:x", upstream="api-1a2b3c")
    assert args["host_config"]["port_bindings"] == {}
    assert args["aliases"] == ["api", "api-1a2b3c"]
    assert args["labels"]["reconcile.upstream"] == "api-1a2b3c"
    assert builders.container_args(LOADED, "cron", "sha256:x")["aliases"] == ["cron"]


def test_the_proxy_publishes_the_ports_and_mounts_its_config_folder_read_only():
    args = rules.proxy_args(LOADED, "api", "sha256:n")
    assert args["name"] == "p-api-proxy" and args["image"] == "lab/nginx:1"
    assert args["host_config"]["port_bindings"] == {"8000/tcp": [("127.0.0.1", 8080)], "9000/tcp": [None]}
    assert args["host_config"]["binds"] == {"/srv/p/state/proxy/api": {"bind": nginx.CONF_DIR, "mode": "ro"}}
    assert args["networks"] == ["p_backend"] and args["healthcheck"] == {"test": ["NONE"]}
    labels = args["labels"]
    assert labels["reconcile.role"] == "proxy" and labels["reconcile.service"] == "api"
    assert labels["reconcile.spec-hash"] == rules.proxy_hash(LOADED, "api")


def test_the_proxy_hash_follows_image_ports_and_networks_only():
    changed = SPEC.model_copy(update={"services": {**SPEC.services, "api": SPEC.services["api"].model_copy(
        update={"env": {"A": "1"}})}})
    assert rules.proxy_hash(LoadedSpec(changed, LOADED.file), "api") == rules.proxy_hash(LOADED, "api")
    moved = SPEC.services["api"].model_copy(update={"ports": SPEC.services["api"].ports[:1]})
    other = SPEC.model_copy(update={"services": {**SPEC.services, "api": moved}})
    assert rules.proxy_hash(LoadedSpec(other, LOADED.file), "api") != rules.proxy_hash(LOADED, "api")


def kept(name: str, finished: str, image: str = "sha256:1", created: str = "2026-01-01T00:00:00Z",
         spec_hash: str = "h1") -> ObservedContainer:
    return ObservedContainer(id=f"id-{name}", name=name, project="p", service="api", profile="app",
                             role=Role.KEPT, spec_hash=spec_hash, config=None, image_ref="app",
                             image_id=image, state=State.EXITED, health=None, created_at=created,
                             finished_at=finished)


def test_kept_versions_newest_retired_first_with_nanosecond_times():
    a = kept("p-api-kept-aaaaaa", "2026-01-02T10:00:00.5Z")
    b = kept("p-api-kept-bbbbbb", "2026-01-02T10:00:00.123456789Z")
    c = kept("p-api-kept-cccccc", "2026-01-01T09:00:00Z")
    assert [x.name for x in rules.kept(Observed("p", (c, b, a)), "api")] == [a.name, b.name, c.name]


def test_pruning_keeps_the_newest_distinct_versions():
    newest = kept("p-api-kept-aaaaaa", "2026-01-03T00:00:00Z", image="sha256:3")
    same = kept("p-api-kept-bbbbbb", "2026-01-02T00:00:00Z", image="sha256:3")
    older = kept("p-api-kept-cccccc", "2026-01-01T00:00:00Z", image="sha256:1")
    observed = Observed("p", (older, same, newest))
    api = SPEC.services["api"]
    assert rules.to_prune(observed, api, "api", None) == [same]
    live = kept("p-api", "", image="sha256:9")
    assert rules.to_prune(observed, api, "api", live) == [same, older]
    assert rules.to_prune(observed, SPEC.services["cron"], "api", None) == [newest, same, older]


def test_rollback_goes_to_the_newest_kept_version_that_differs_from_the_live_one():
    twin = kept("p-api-kept-aaaaaa", "2026-01-03T00:00:00Z", image="sha256:2")
    older = kept("p-api-kept-bbbbbb", "2026-01-01T00:00:00Z", image="sha256:1")
    live = kept("p-api", "", image="sha256:2")
    assert rules.rollback_target(Observed("p", (older, twin)), "api", live) == older
    assert rules.rollback_target(Observed("p", (twin,)), "api", live) is None


@pytest.mark.parametrize(("service", "state", "delay"), [
    ("worker", {}, True), ("worker", {"Health": {"Status": "starting"}}, False), ("api", {}, False)])
def test_readiness_delay_only_without_any_health_signal(service, state, delay):
    assert rules.needs_readiness_delay(SPEC.services[service], state) is delay


BASE = """\
version: 1
project: demo
networks: { backend: {} }
volumes: { data: {} }
services:
  web:
    image: app:1
    health: { http: { port: 8000 } }
    deploy: { strategy: blue-green }
    networks: [backend]
    ports: ["8080:8000"]
"""


@pytest.mark.parametrize(("old", "new", "words"), [
    ("    networks: [backend]\n", "    stateful: true\n    volumes: ['data:/d']\n    networks: [backend]\n",
     "stateful"),
    ("    health: { http: { port: 8000 } }\n", "", "publishes a host port and has no health.http"),
    ("    networks: [backend]\n", "", "joins none"),
    ('ports: ["8080:8000"]', 'ports: ["8080:8000/udp"]', "TCP only"),
])
def test_spec_refuses_blue_green_where_it_cannot_work(tmp_path, old, new, words):
    path = tmp_path / "reconcile.yaml"
    path.write_text(textwrap.dedent(BASE.replace(old, new)))
    with pytest.raises(SpecErrors) as info:
        load_spec(path, {})
    found = [e for e in info.value.errors if e.ref == "spec.blue-green"]
    assert found and words in str(found[0]), str(info.value)
    assert "(services.web.deploy.strategy)" in str(found[0])


def test_spec_accepts_blue_green_over_http(tmp_path):
    path = tmp_path / "reconcile.yaml"
    path.write_text(BASE)
    assert load_spec(path, {}).spec.services["web"].proxied


def bound(*bindings: tuple[str, str, str]) -> dict:
    """An inspect document whose HostConfig publishes ``(container port/proto, ip, host port)``."""
    ports: dict[str, list] = {}
    for key, ip, host in bindings:
        ports.setdefault(key, []).append({"HostIp": ip, "HostPort": host})
    return {"HostConfig": {"PortBindings": ports}}


@pytest.mark.parametrize(("old", "ports", "shared"), [
    (bound(("8000/tcp", "127.0.0.1", "8080")), ["127.0.0.1:8081:8000"], False),   # moves: beside
    (bound(("8000/tcp", "127.0.0.1", "8080")), ["127.0.0.1:8080:8000"], True),    # same port
    (bound(("8000/tcp", "", "8080")), ["127.0.0.1:8080:8000"], True),             # 0.0.0.0 holds it
    (bound(("8000/tcp", "127.0.0.1", "8080")), ["127.0.0.1:8080:9000"], True),    # other container port
    (bound(("8000/udp", "", "8080")), ["8080:8000"], False),                      # other protocol
    (bound(("8000/tcp", "", "")), ["8000"], False),                               # engine-chosen ports
    (bound(("8000/tcp", "", "8080"), ("9000/tcp", "", "9090")), ["8081:8000", "9090:9000"], True),
    ({"HostConfig": {"PortBindings": None}}, ["8080:8000"], False),
])
def test_a_new_proxy_starts_beside_the_old_one_unless_they_share_a_host_port(old, ports, shared):
    declared = Spec.model_validate({"project": "p", "services": {"api": {"image": "a", "ports": ports}}})
    assert proxy.shared_host_ports(old, declared.services["api"].ports) is shared


def test_what_a_running_proxy_publishes_is_read_from_its_bindings():
    doc = bound(("9000/tcp", "", ""), ("8000/tcp", "127.0.0.1", "8080"), ("53/udp", "", "5353"))
    assert proxy.published_ports(doc) == [8000, 9000]
    assert proxy.bound_host_ports(doc) == ["127.0.0.1:8080", "0.0.0.0:5353"]
