"""The safety invariant: each rule rejects a plan that breaks it, naming the service."""

from __future__ import annotations

import pytest

from reconciler.errors import SafetyError
from reconciler.plan.actions import Action, ActionKind, Plan
from reconciler.plan.safety import check, check_step

K = ActionKind


def act(kind: ActionKind, resource: str = "postgres", *deps: str, **flags: bool) -> Action:
    return Action(kind, resource, cause="test", depends_on=deps, stateful=flags.get("stateful", True),
                  protected=flags.get("protected", False))


def plan_of(*actions: Action) -> Plan:
    return Plan(project="p", actions=actions, fingerprint="sha256:0")


GOOD = plan_of(
    act(K.CREATE_NETWORK, "backend", stateful=False),
    act(K.BACKUP),
    act(K.RECREATE, "postgres", "backup:postgres", "create-network:backend"),
    act(K.RESTORE, "postgres", "backup:postgres", "recreate:postgres"),
    act(K.VERIFY, "postgres", "restore:postgres"),
    act(K.BACKUP, "old-redis"),
    act(K.REMOVE, "old-redis", "backup:old-redis"),
    act(K.REMOVE, "legacy-cron", stateful=False),
    act(K.RECREATE, "api", "verify:postgres", stateful=False),
)


def test_a_good_plan_passes() -> None:
    check(GOOD)


@pytest.mark.parametrize(("actions", "message"), [
    pytest.param([act(K.RECREATE)], "recreate of stateful service postgres has no backup before it",
                 id="recreate-without-backup"),
    pytest.param([act(K.REMOVE, "old-redis")], "remove of stateful service old-redis has no backup",
                 id="remove-without-backup"),
    pytest.param([act(K.BACKUP, "dragonfly"), act(K.RECREATE, "postgres", "backup:dragonfly")],
                 "recreate of stateful service postgres has no backup", id="backup-of-another-service"),
    pytest.param([act(K.BACKUP), act(K.RECREATE)],
                 "recreate of stateful service postgres does not depend on backup:postgres",
                 id="backup-not-a-dependency"),
    pytest.param([act(K.RECREATE, "postgres", "backup:postgres"), act(K.BACKUP)],
                 "recreate of stateful service postgres depends on backup:postgres, which does not "
                 "come earlier", id="backup-after-recreate"),
    pytest.param([act(K.BACKUP), act(K.REMOVE, "postgres", "backup:postgres", protected=True)],
                 "service postgres is protected (protect: true): apply never removes it",
                 id="protected-removal"),
    pytest.param([act(K.REMOVE, "legacy", stateful=False, protected=True)],
                 "service legacy is protected", id="protected-stateless-removal"),
    pytest.param([act(K.RECREATE, "api", stateful=False), act(K.RESTORE, "api", "recreate:api")],
                 "restore of stateful service api has no backup before it", id="restore-without-backup"),
    pytest.param([act(K.CREATE, "api", "create:postgres", stateful=False)],
                 "create of service api depends on create:postgres, which does not come earlier",
                 id="unknown-dependency"),
    pytest.param([act(K.CREATE, "api", stateful=False), act(K.CREATE, "api", stateful=False)],
                 "action create:api appears twice", id="duplicate-id"),
])
def test_each_rule_rejects_a_plan_that_breaks_it(actions: list[Action], message: str) -> None:
    with pytest.raises(SafetyError) as caught:
        check(plan_of(*actions))
    assert message in caught.value.message
    assert caught.value.hint


def test_a_recreate_of_a_stateless_service_needs_no_backup() -> None:
    check(plan_of(act(K.RECREATE, "api", stateful=False), act(K.REMOVE, "cron", stateful=False)))


def test_check_step_waits_for_the_backup_to_complete() -> None:
    recreate = GOOD.actions[2]
    with pytest.raises(SafetyError, match="must wait for backup:postgres, which has not completed"):
        check_step(GOOD, recreate, done_ids={"create-network:backend"})
    check_step(GOOD, recreate, done_ids={"create-network:backend", "backup:postgres"})


def test_check_step_guards_restore_and_orphan_removal_too() -> None:
    restore, remove = GOOD.actions[3], GOOD.actions[6]
    with pytest.raises(SafetyError, match="restore of stateful service postgres"):
        check_step(GOOD, restore, done_ids={"recreate:postgres"})
    with pytest.raises(SafetyError, match="old-redis"):
        check_step(GOOD, remove, done_ids=set())
    check_step(GOOD, remove, done_ids={"backup:old-redis"})


def test_check_step_lets_harmless_steps_run() -> None:
    check_step(GOOD, GOOD.actions[0], done_ids=set())
    check_step(GOOD, GOOD.actions[7], done_ids=set())


def test_check_step_refuses_an_action_of_another_plan() -> None:
    with pytest.raises(SafetyError, match="not part of this plan"):
        check_step(GOOD, act(K.REMOVE, "postgres", stateful=False), done_ids=set())


def test_check_step_refuses_a_protected_removal_even_when_backed_up() -> None:
    plan = plan_of(act(K.BACKUP), act(K.REMOVE, "postgres", "backup:postgres", protected=True))
    with pytest.raises(SafetyError, match="protected"):
        check_step(plan, plan.actions[1], done_ids={"backup:postgres"})
