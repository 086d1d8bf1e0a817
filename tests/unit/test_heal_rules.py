"""Heal's pure decisions: which fix each issue gets, how a service's issues merge into one
fix, what blocks a fix, the advice of a report, exit codes, and the part of a plan a
recreate runs. The recorded diagnose cases (``tests/cases_diagnose``) are the inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from reconciler.observe.models import (
    Observed,
    ObservedContainer,
    ObservedNetwork,
    ObservedVolume,
    Role,
    State,
)
from reconciler.operate import rules
from reconciler.operate.facts import Facts, HostFacts, PortHolder, ServiceFacts
from reconciler.operate.heal_rules import (
    PROBE_RULE,
    REFUSED_RULE,
    FixKind,
    IssueResult,
    Result,
    exit_code,
    fix_for,
    plan_fixes,
    probe_issues,
    status,
    subplan,
    without_done,
)
from reconciler.operate.issues import Issue, Severity
from reconciler.plan.planner import make_plan
from reconciler.spec.load import LoadedSpec
from reconciler.spec.models import Spec
from reconciler.spec.normalise import config_hash, normalised_config

CASES = Path(__file__).resolve().parents[1] / "cases_diagnose"
C, W, I = Severity.CRITICAL, Severity.WARNING, Severity.INFO
UNPAUSE, START, RESTART, RECREATE, NETWORK, REPORT = (FixKind.UNPAUSE, FixKind.START, FixKind.RESTART,
                                                     FixKind.RECREATE, FixKind.RECREATE_NETWORK, FixKind.REPORT)


def issue(rule: str, severity: Severity = C, service: str = "db", title: str | None = None) -> Issue:
    return Issue(service, severity, title or rule, f"details of {rule}", f"fix {rule}", rule)


@pytest.mark.parametrize(("rule", "severity", "kind"), [
    ("container-exited", C, START),
    ("healthcheck", C, RESTART),
    (PROBE_RULE, C, RESTART),
    ("restart-loop", C, RECREATE),
    ("restart-loop", W, REPORT),  # restarted, but runs now: nothing to do
    ("network-missing", C, NETWORK),
    ("container-missing", C, REPORT),  # apply creates it
    ("port-conflict", C, REPORT),
    ("oom-killed", C, REPORT),
    ("volume-full", C, REPORT),
    ("config-error", C, REPORT),
    ("mount-missing", C, REPORT),
    ("image-missing", C, REPORT),
    ("container-paused", C, UNPAUSE),
    ("proxy-stopped", C, NETWORK),
    ("proxy-detached", C, NETWORK),
    ("proxy-missing", C, REPORT),  # apply creates it
    ("proxy-paused", C, UNPAUSE),  # as a paused service container (QA)
])
def test_each_rule_has_one_fix(rule, severity, kind):
    assert fix_for(issue(rule, severity)) is kind


def test_host_and_engine_issues_are_only_reported():
    assert fix_for(issue("disk-space", service="host")) is REPORT
    assert fix_for(issue("engine-unreachable", service="engine")) is REPORT


# What heal does for each recorded fault: {service: [fix kinds]} (reports listed too).
RECORDED = {
    "bind-error-inside": {"api": [REPORT]},
    "config-error-recovered": {"postgres": [REPORT]},
    "disk-low": {"host": [REPORT, REPORT]},
    "engine-unreachable": {"engine": [REPORT], "host": [REPORT]},
    "healthcheck-failing": {"api": [RESTART]},
    "healthy": {},
    "image-missing": {"api": [REPORT, REPORT], "worker": [REPORT]},
    "mount-missing": {"postgres": [REPORT, REPORT]},
    "mount-not-writable": {"redis": [REPORT]},
    "network-deleted": {"web": [NETWORK]},
    "network-detached": {"api": [NETWORK]},
    "nginx-emerg": {"proxy": [REPORT, REPORT]},  # exited because of its config: not started
    "no-space-in-logs": {"postgres": [REPORT]},
    "oom-killed": {"web": [REPORT]},
    "port-conflict": {"web": [REPORT]},
    "port-held-no-engine-error": {"postgres": [REPORT, REPORT]},
    "postgres-bad-setting": {"postgres": [REPORT]},
    "postgres-data-permissions": {"postgres": [REPORT, REPORT]},
    "postgres-incompatible": {"postgres": [REPORT, REPORT]},
    "postgres-killed": {"postgres": [START]},
    "restart-count-rising": {"worker": [REPORT]},
    "restart-count-rising-fast": {"worker": [RECREATE]},
    "one-crash-recovered": {"cache": [REPORT]},  # runs again: nothing to stop or recreate
    "restart-loop": {"web": [RECREATE]},
    "stopped": {"web": [START]},
    "volume-full": {"web": [REPORT]},
    "volume-low": {"postgres": [REPORT]},
    "paused": {"worker": [UNPAUSE]},  # as apply does (apply.heal.unpause)
    "blue-green-stopped": {"api": [START]},  # its own proxy holds the port: no conflict blocks it
    "proxy-stopped": {"api": [NETWORK]},  # rejoins and starts the proxy
    "proxy-detached": {"api": [NETWORK]},
    "proxy-missing": {"api": [REPORT], "web": [UNPAUSE]},  # web's proxy is paused: unpaused (QA)
}


def _facts(folder: Path) -> Facts:
    if (folder / "case.yaml").exists():
        return Facts.from_dict(YAML(typ="safe").load((folder / "case.yaml").read_text())["facts"])
    return Facts.from_dict(json.loads((folder / "facts.json").read_text()))


def test_every_recorded_case_has_an_expected_heal():
    assert sorted(RECORDED) == sorted(p.name for p in CASES.iterdir() if p.is_dir())


@pytest.mark.parametrize("case", sorted(RECORDED))
def test_recorded_case(case):
    facts = _facts(CASES / case)
    fixes = plan_fixes(rules.diagnose(facts), facts)
    got: dict[str, list[FixKind]] = {}
    for fix in fixes:
        got.setdefault(fix.service, []).append(fix.kind)
    assert got == RECORDED[case]
    for fix in fixes:
        assert fix.kind is not REPORT or fix.note, fix  # every report says what to do


def test_a_service_gets_its_strongest_fix_for_all_its_issues():
    fixes = plan_fixes([issue("container-exited"), issue("network-missing")])
    assert [(f.kind, sorted(f.rules)) for f in fixes] == [(NETWORK, ["container-exited", "network-missing"])]
    fixes = plan_fixes([issue("healthcheck"), issue("restart-loop")])
    assert [f.kind for f in fixes] == [RECREATE]


def test_a_critical_cause_no_fix_can_pass_blocks_the_service():
    fixes = plan_fixes([issue("container-exited"), issue("port-conflict", title="port conflict on host port 5432")])
    assert [f.kind for f in fixes] == [REPORT, REPORT]
    assert "not attempted: port conflict on host port 5432 must be solved first" in fixes[1].note
    assert fixes[1].rules == {"container-exited"}
    # a warning does not block
    fixes = plan_fixes([issue("container-exited"), issue("volume-full", W)])
    assert [f.kind for f in fixes] == [REPORT, START]


def test_host_first_then_services_in_dependency_order():
    fixes = plan_fixes([issue("container-exited", service="api"), issue("container-exited", service="db"),
                        issue("disk-space", W, service="host")], order=["db", "api"])
    assert [f.service for f in fixes] == ["host", "db", "api"]


def test_a_dependent_of_a_broken_service_is_judged_after_it():
    found = [issue("restart-loop", service="db"), issue(PROBE_RULE, service="api"),
             issue("container-exited", service="worker")]
    fixes = plan_fixes(found, order=["db", "api", "worker"], depends_on={"api": ["db"], "worker": ["cache"]})
    assert [(f.service, f.kind, f.after) for f in fixes] == [
        ("db", RECREATE, ()), ("api", RESTART, ("db",)), ("worker", START, ())]


def test_a_port_report_names_the_holder_and_says_what_to_do():
    facts = Facts("p", "now", HostFacts(port_holders=(PortHolder(5432, "127.0.0.1", 1234, "python3 -m http.server"),)),
                  (ServiceFacts("db", "postgres", "p-db", "pg:16", host_ports=(5432,)),))
    note = plan_fixes([issue("port-conflict")], facts)[0].note
    assert note.startswith("port 5432 is held by pid 1234 (python3 -m http.server): stop it, then run "
                           "`reconcile heal`")
    unnamed = Facts("p", "now", HostFacts(port_holders=(PortHolder(5432, "127.0.0.1"),)), facts.services)
    assert "pid unknown" in plan_fixes([issue("port-conflict")], unnamed)[0].note


def test_memory_and_disk_reports_say_heal_does_not_hide_them():
    assert "memory" in plan_fixes([issue("oom-killed")])[0].note
    assert "never deletes data" in plan_fixes([issue("volume-full")])[0].note
    assert "the fix is in the spec" in plan_fixes([issue("config-error")])[0].note


def test_a_failing_probe_counts_only_where_diagnose_found_nothing_critical():
    found = [issue("container-exited", service="db")]
    made = probe_issues(found, {"db": ("stopped", ""), "video": ("unhealthy", "status 503")})
    assert [(i.service, i.rule, i.details) for i in made] == [("video", PROBE_RULE, "unhealthy: status 503")]
    assert fix_for(made[0]) is RESTART


def test_a_server_that_refuses_the_credentials_is_reported_never_restarted_or_recreated():
    made = probe_issues([], {"db": ("refused", "error password authentication failed for user postgres")})
    assert [(i.service, i.rule, i.issue) for i in made] == [("db", REFUSED_RULE, "credentials refused")]
    fixes = plan_fixes(made + [issue("restart-loop", service="db")])
    assert {f.kind for f in fixes} == {FixKind.REPORT}  # it blocks the loop's recreate too
    assert "never restarts or recreates" in fixes[0].note and "POSTGRES_PASSWORD" in fixes[0].note
    missing = probe_issues([], {"db": ("refused", 'error FATAL: database "shop" does not exist')})
    assert [(i.rule, i.issue) for i in missing] == [(REFUSED_RULE, "database missing")]
    assert "reconcile restore" in plan_fixes(missing)[0].note
    closed = probe_issues([], {"db": ("refused", 'error FATAL: database "shop" is not currently accepting '
                                                 'connections')})
    assert [(i.rule, i.issue) for i in closed] == [(REFUSED_RULE, "database closed")]
    assert "ALLOW_CONNECTIONS true" in plan_fixes(closed)[0].note


def _result(result: Result, severity: Severity) -> IssueResult:
    return IssueResult("db", "x", severity, "r", "start", 1, result, "")


@pytest.mark.parametrize(("results", "code"), [
    ([], 0),
    ([(Result.FIXED, C), (Result.FIXED, C)], 0),
    ([(Result.REPORTED, I)], 0),
    ([(Result.FIXED, C), (Result.REPORTED, W)], 1),
    ([(Result.FAILED, W)], 1),
    ([(Result.REPORTED, C)], 2),
    ([(Result.FIXED, C), (Result.FAILED, C)], 2),
])
def test_exit_codes(results, code):
    assert exit_code([_result(r, s) for r, s in results]) == code
    assert status(code) == {0: "ok", 1: "warning", 2: "critical"}[code]


# -- the part of a plan a recreate runs ----------------------------------------------------

SPEC = Spec.model_validate({
    "project": "p", "volumes": {"data": {}}, "networks": {"backend": {}, "front": {}},
    "services": {
        "db": {"profile": "infrastructure", "kind": "postgres", "image": "pg:15", "stateful": True,
               "volumes": ["data:/var/lib/postgresql/data"], "networks": ["backend"]},
        "api": {"image": "app:1", "depends_on": {"db": "healthy"}, "networks": ["backend", "front"]},
    }})
LOADED = LoadedSpec(SPEC, Path("/nowhere/spec.yaml"))


def box(service: str, name: str, state: State = State.RUNNING, spec: Spec = SPEC,
        role: Role = Role.CURRENT) -> ObservedContainer:
    config = normalised_config(spec, service)
    return ObservedContainer(id=f"id-{name}", name=name, project="p", service=service, profile=None,
                             role=role, spec_hash=config_hash(config), config=config,
                             image_ref=spec.services[service].image, image_id="", state=state, health=None,
                             networks=tuple(config["networks"]))


def test_unhealthy_means_recreate_whatever_the_state():
    for state in (State.RUNNING, State.RESTARTING, State.EXITED, State.CREATED):
        observed = Observed("p", containers=(box("db", "p-db", state), box("api", "p-api")),
                            volumes=(ObservedVolume("p_data", "local", "p"),),
                            networks=(ObservedNetwork("p_backend", "n1", "bridge", "p"),
                                      ObservedNetwork("p_front", "n2", "bridge", "p")))
        plan = make_plan(LOADED, observed, unhealthy={"db": "restart loop"})
        assert [a.id for a in plan.actions] == ["backup:db", "recreate:db", "verify:db"], state
        assert plan.actions[1].cause == "unhealthy: restart loop"


def test_the_subplan_keeps_the_service_its_networks_and_leftovers_only():
    changed = Spec.model_validate({**SPEC.model_dump(), "services": {
        **SPEC.model_dump()["services"], "api": {**SPEC.model_dump()["services"]["api"], "image": "app:0"}}})
    observed = Observed("p", containers=(box("db", "p-db", State.EXITED), box("db", "p-db-new-a1b2c3",
                                                                           role=Role.CANDIDATE),
                                         box("api", "p-api", spec=changed)),
                        volumes=(ObservedVolume("p_data", "local", "p"),))
    full = make_plan(LOADED, observed, unhealthy={"db": "network deleted"})
    assert "recreate:api" in [a.id for a in full.actions]  # a pending spec change: apply's job
    part = subplan(full, SPEC, ["db"])
    assert [a.id for a in part.actions] == ["create-network:backend", "remove:p-db-new-a1b2c3",
                                            "backup:db", "recreate:db", "verify:db"]
    assert all(d in {a.id for a in part.actions} for a in part.actions for d in a.depends_on)
    api = subplan(full, SPEC, ["api"])
    assert [a.id for a in api.actions] == ["create-network:backend", "create-network:front", "recreate:api"]
    assert api.actions[-1].depends_on == ("create-network:backend", "create-network:front")


def test_what_heal_did_in_place_is_not_done_twice():
    """Starts of containers that run now and networks that exist now leave the plan (a saved
    plan is trimmed, never replaced); the rest stays, minus its dependencies on them."""
    stopped = Observed("p", containers=(box("db", "p-db", State.EXITED), box("api", "p-api", State.EXITED)),
                       volumes=(ObservedVolume("p_data", "local", "p"),))
    plan = make_plan(LOADED, stopped)
    assert [a.id for a in plan.actions] == ["create-network:backend", "create-network:front", "update:db",
                                            "start:db", "update:api", "start:api"]
    healed = Observed("p", containers=(box("db", "p-db"), box("api", "p-api", State.EXITED)),
                      volumes=stopped.volumes, networks=(ObservedNetwork("p_backend", "n1", "bridge", "p"),))
    left = without_done(plan, healed, SPEC)
    assert [a.id for a in left.actions] == ["create-network:front", "update:api", "start:api"]
    assert left.actions[1].depends_on == ("create-network:front",)
    assert left.actions[-1].depends_on == ("create-network:front", "update:api")


@pytest.mark.parametrize("details", [
    'error connection failed: connection to server at "172.18.0.4", port 5432 failed: FATAL: sorry, too many '
    "clients already",
    "error FATAL: remaining connection slots are reserved for non-replication superuser connections",
    "error ERR max number of clients reached",
])
def test_a_server_whose_connections_are_all_taken_is_reported_never_restarted(details):
    """QA: heal restarted PostgreSQL to free its connection slots, dropping every client; the
    leaking client filled them again."""
    from reconciler.operate.heal_rules import CONNECTIONS_RULE

    made = probe_issues([], {"db": ("unreachable", details)})
    assert [(i.rule, i.issue) for i in made] == [(CONNECTIONS_RULE, "connection limit reached")]
    fixes = plan_fixes(made)
    assert [f.kind for f in fixes] == [FixKind.REPORT] and "pg_stat_activity" in fixes[0].note


def test_a_cache_that_refuses_writes_is_reported_never_restarted():
    """QA: a cache at maxmemory with noeviction refused every write and was only "degraded"."""
    from reconciler.engines.redis import MEMORY_FULL
    from reconciler.operate.heal_rules import MEMORY_RULE

    made = probe_issues([], {"cache": ("unhealthy", f"error {MEMORY_FULL} (maxmemory 3145728 bytes, policy noeviction)")})
    assert [(i.rule, i.issue) for i in made] == [(MEMORY_RULE, "memory full")]
    fixes = plan_fixes(made)
    assert [f.kind for f in fixes] == [FixKind.REPORT] and "maxmemory-policy" in fixes[0].note


def test_a_degraded_probe_is_a_warning_unless_a_critical_issue_speaks_for_the_service():
    from reconciler.operate.heal_rules import degraded_issues

    made = degraded_issues([issue("container-exited", service="db")],
                           {"db": ("degraded", "x"), "pg": ("degraded", "93 of 100 connections in use")})
    assert [(i.service, i.severity, i.details) for i in made] == [("pg", W, "93 of 100 connections in use")]
    assert [f.kind for f in plan_fixes(made)] == [FixKind.REPORT]
