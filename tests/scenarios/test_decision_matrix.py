"""The seed's scenarios (issue 6) on one lab stack, through the real CLI and engine.

Each test asserts the exit code, the journal of its apply (actions and events in order) and
that no row or key was lost (every PostgreSQL table's rows and md5, every Redis key).

The tests are steps of one stack's life and run in file order: the stack starts on
PostgreSQL 15 and app 1; the scenarios that need 15 (an upgrade that must abort or roll
back) come before the upgrade that succeeds, and the broken data directory comes last, on 17.
Numbers in the names are the issue's scenario numbers.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest_s3 import S3Endpoint, closed_port
from tests.scenarios.scenario_support import APP, INFRA, login_trigger

pytestmark = pytest.mark.engine
UPGRADE = ["backup:postgres", "recreate:postgres", "restore:postgres", "verify:postgres"]


@pytest.fixture(scope="module")
def lab(make_stack):
    return make_stack()


def ok(*actions: str) -> list[tuple[str, str]]:
    return [(a, "ok") for a in actions]


def steps(run, action: str) -> list[str]:
    return [e["message"] for e in run.events if e["event"] == "step" and e["action"] == action]


def test_1_healthy_infrastructure_and_a_new_app_version_touch_only_the_app(lab):
    before, data = lab.identities(), lab.data()
    run = lab.apply(LAB_APP_VERSION="2")
    assert run.code == 0, str(run)
    assert run.first("start")["actions"] == ["recreate:api", "recreate:worker"]
    assert run.actions() == ok("recreate:api", "recreate:worker")
    assert run.kinds()[-1] == "finish" and run.finish()["result"] == "ok"
    assert not {"heal", "replan", "warning"} & set(run.kinds())
    after = lab.identities()
    assert {s: after[s] for s in INFRA} == {s: before[s] for s in INFRA}  # same ids and start times
    assert all(after[s][0] != before[s][0] for s in APP)
    assert lab.api_version() == "2"
    assert lab.data() == data


def test_3_a_container_stopped_by_hand_is_healed_by_a_start_then_the_app_follows(lab):
    data, before = lab.data(), lab.identities()
    lab.client.api.stop(lab.name("postgres"), timeout=10)
    run = lab.apply(LAB_APP_VERSION="1")
    assert run.code == 0, str(run)
    assert run.first("start")["actions"] == ["start:postgres", "recreate:api", "recreate:worker"]
    healed = [e["message"] for e in run.events if e["event"] == "heal"]
    assert all(e["service"] == "postgres" for e in run.events if e["event"] == "heal")
    assert "starting it" in healed[0] and "healthy again" in healed[-1], healed
    first_action = run.kinds().index("action-begin")
    assert run.kinds().index("heal") < first_action  # heal, then the app
    # heal's start counts as done (by heal), and is not run twice
    assert run.actions() == ok("start:postgres", "recreate:api", "recreate:worker")
    assert run.first("action-end", action="start:postgres")["by"] == "heal"
    assert [e["action"] for e in run.events if e["event"] == "action-begin"] == ["recreate:api", "recreate:worker"]
    assert run.finish()["result"] == "ok"
    after = lab.identities()
    assert after["postgres"][0] == before["postgres"][0]  # the same container…
    assert after["postgres"][1] != before["postgres"][1]  # …started again
    assert {s: after[s] for s in ("dragonfly", "openvidu")} == {s: before[s] for s in ("dragonfly", "openvidu")}
    assert lab.api_version() == "1"
    assert lab.data() == data


@pytest.mark.s3
@pytest.mark.parametrize("failure", ["access-denied", "unreachable"])
def test_5_a_required_s3_copy_that_fails_stops_apply_before_anything_is_destroyed(lab, failure, request):
    if failure == "access-denied":  # a moto that checks credentials, and keys it does not know
        endpoint = request.getfixturevalue("s3_auth_endpoint").url
        keys = S3Endpoint(endpoint, "AKIAWRONGWRONGWRONG1", "wrong/secret/key").environ
    else:
        endpoint, keys = f"http://127.0.0.1:{closed_port()}", S3Endpoint("unused").environ
    data, before, volumes = lab.data(), lab.identities(), lab.volumes()
    run = lab.apply(LAB_PG_VERSION="17", LAB_APP_VERSION="2", S3_ENABLED="true", S3_REQUIRED="true",
                    S3_ENDPOINT=endpoint, S3_BUCKET="scenario-denied", **keys)
    assert run.code == 2, str(run)
    assert run.first("start")["actions"][:4] == UPGRADE
    assert run.actions() == [("backup:postgres", "failed")]
    assert "the S3 copy failed" in run.ended("backup:postgres")["error"]
    assert "nothing was stopped or removed" in run.result.stderr
    assert not [e for e in run.events if e["event"] == "step" and e["action"] != "backup:postgres"]
    assert run.finish()["result"] == "failed" and run.finish()["exit_code"] == 2
    assert lab.identities() == before and lab.volumes() == volumes
    assert lab.pg_major() == "15"
    assert lab.data() == data


def test_7_a_verification_that_fails_after_the_restore_rolls_back_to_the_old_container_and_volume(lab):
    """The new PostgreSQL 17 gets an init script (``login_trigger``) that changes the restored
    database on the first connection after the restore: verify sees a table the backup does
    not hold. Deterministic: nothing races the apply."""
    hook = login_trigger(lab.root / "initdb")
    trap = lab.write_spec("verify-trap.yaml", postgres_mounts=(f"{hook}:/docker-entrypoint-initdb.d:ro",))
    data, before, volumes = lab.data(), lab.identities(), lab.volumes()
    run = lab.apply(spec=trap, LAB_PG_VERSION="17", LAB_APP_VERSION="2")
    assert run.code == 2, str(run)
    assert run.first("start")["actions"] == UPGRADE + ["recreate:api", "recreate:worker"]
    assert run.actions() == ok(*UPGRADE[:3]) + [("verify:postgres", "failed")]
    assert "table count" in run.ended("verify:postgres")["error"]
    rollback = [e for e in run.events if e["event"].startswith("rollback")]
    assert [(e["event"], e.get("status")) for e in rollback] == [("rollback-begin", None), ("rollback-end", "ok")]
    assert [m.split(" ")[1] for m in steps(run, "verify:postgres")][:4] == [
        "remove", "remove", "rename", "start"]  # the candidate, its fresh volume, the old one back
    assert run.finish()["result"] == "failed" and run.finish()["exit_code"] == 2
    assert "rolled back" in run.result.stderr
    after = lab.identities()
    assert after["postgres"][0] == before["postgres"][0]  # the old container, started again
    assert {s: after[s] for s in ("dragonfly", "openvidu", *APP)} == {
        s: before[s] for s in ("dragonfly", "openvidu", *APP)}  # the app was never touched
    assert lab.mounts("postgres") == [f"{lab.project}_postgres_data"] and lab.volumes() == volumes
    assert lab.pg_major() == "15"
    assert lab.data() == data


def test_2_postgres_15_to_17_is_backed_up_recreated_restored_verified_then_the_app(lab):
    data, before = lab.data(), lab.identities()
    run = lab.apply(LAB_PG_VERSION="17", LAB_APP_VERSION="2")
    assert run.code == 0, str(run)
    assert run.actions() == ok(*UPGRADE, "recreate:api", "recreate:worker")
    backup = run.ended("backup:postgres")
    assert backup["rows"] == 4000 and backup["s3"] == "disabled"
    restore = run.ended("restore:postgres")
    assert (restore["backup_id"], restore["source"], restore["rows"]) == (backup["backup_id"], "local", 4000)
    assert run.ended("verify:postgres")["checks"] > 0
    assert any(m.startswith("create fresh volume") for m in steps(run, "recreate:postgres"))
    assert run.finish()["unused_volumes"] == [f"{lab.project}_postgres_data"]  # kept, never deleted
    [mount] = lab.mounts("postgres")
    assert mount.startswith(f"{lab.project}_postgres_data-")
    after = lab.identities()
    assert {s: after[s] for s in ("dragonfly", "openvidu")} == {s: before[s] for s in ("dragonfly", "openvidu")}
    assert after["postgres"][0] != before["postgres"][0] and lab.pg_major() == "17"
    assert lab.api_version() == "2"
    assert lab.data() == data


def test_2b_a_downgrade_is_warned_in_the_plan_and_rolled_back_when_the_dump_does_not_load(lab):
    """17 → 15: PostgreSQL does not support loading a newer server's dump into an older one
    (17's pg_dump sets transaction_timeout, which 15 rejects). The plan says so before
    anything runs; apply backs up, fails at the restore and puts 17 and its data back."""
    data, before, volumes, mounts = lab.data(), lab.identities(), lab.volumes(), lab.mounts("postgres")
    plan = lab.cli("plan", env=lab.environ(LAB_PG_VERSION="15", LAB_APP_VERSION="2"))
    assert plan.returncode == 0, plan.stderr
    assert "postgres: PostgreSQL 17 → 15 is a downgrade" in plan.stdout, plan.stdout  # ${env:…} tags are shown
    run = lab.apply(LAB_PG_VERSION="15", LAB_APP_VERSION="2")
    assert run.code == 2, str(run)
    assert run.actions() == ok(*UPGRADE[:2]) + [("restore:postgres", "failed")]
    assert 'unrecognized configuration parameter "transaction_timeout"' in run.ended("restore:postgres")["error"]
    rollback = [e for e in run.events if e["event"].startswith("rollback")]
    assert [(e["event"], e.get("status")) for e in rollback] == [("rollback-begin", None), ("rollback-end", "ok")]
    assert lab.identities()["postgres"][0] == before["postgres"][0]
    assert {s: lab.identities()[s] for s in ("dragonfly", "openvidu", *APP)} == {
        s: before[s] for s in ("dragonfly", "openvidu", *APP)}
    assert lab.mounts("postgres") == mounts and lab.volumes() == volumes
    assert lab.pg_major() == "17"
    assert lab.data() == data


def test_4_a_broken_data_directory_is_recreated_from_the_latest_verified_backup(lab):
    """PostgreSQL cannot start on its data (``global/pg_control`` emptied) and restarts in a
    loop: heal cannot fix it, so apply recreates it on a fresh volume and, as the server
    cannot be read, restores the latest verified backup, the one ``reconcile backup`` took
    earlier. What was written after that backup is lost by necessity, and apply says so."""
    taken = lab.cli("backup", "--json")
    assert taken.returncode == 0, taken.stderr
    backup = json.loads(taken.stdout)
    at_backup = lab.data()
    lab.sql("insert into users (id, name) values (100001, 'written after the backup')")  # lost below
    with lab.redis() as conn:
        conn.call("SET", "after:backup", "kept")  # the cache is not touched: kept
    [volume] = lab.mounts("postgres")
    name = lab.name("postgres")
    lab.client.api.stop(name, timeout=10)
    lab.sh("reconcile-lab/debian:trixie", "truncate -s 0 /data/global/pg_control", volume)
    lab.client.api.start(name)
    _wait_for_loop(lab, name)
    before = lab.identities(("dragonfly", "openvidu"))

    run = lab.apply(LAB_PG_VERSION="17", LAB_APP_VERSION="1")
    assert run.code == 1, str(run)  # done, with a warning: data since the backup is lost
    assert {e["service"] for e in run.events if e["event"] == "heal"} == {"postgres"}
    assert run.first("replan")["services"] == ["postgres"]
    assert run.actions() == ok(*UPGRADE, "recreate:api", "recreate:worker")
    used = run.ended("backup:postgres")
    assert used["fallback"] is True and used["backup_id"] == backup["backup_id"]
    fallback = run.first("backup-fallback")
    assert (fallback["backup_id"], fallback["taken_at"]) == (backup["backup_id"], backup["timestamp"])
    # what the crash loop looked like when seen: between restarts, a server that does not answer
    assert any(seen in fallback["reason"] for seen in ("restarts in a loop", "exited", "unreachable")), fallback
    assert any("pg_control" in line for line in fallback["logs"]), fallback["logs"]
    [warning] = run.finish()["warnings"]
    for text in (backup["backup_id"], backup["timestamp"], "are lost"):
        assert text in warning and text in run.result.stdout
    assert run.ended("restore:postgres")["backup_id"] == backup["backup_id"]
    assert run.finish()["result"] == "warnings" and run.finish()["exit_code"] == 1
    assert volume in run.finish()["unused_volumes"]  # the broken data is kept for a person
    assert lab.mounts("postgres") != [volume]
    assert lab.identities(("dragonfly", "openvidu")) == before
    now = lab.data()
    assert now.tables == at_backup.tables
    assert now.keys == {**at_backup.keys, "after:backup": ("string", "kept", "no-ttl")}
    assert lab.api_version() == "1"
    again = lab.apply(LAB_PG_VERSION="17", LAB_APP_VERSION="1")
    assert again.code == 0 and again.result.stdout.strip() == "No changes.", str(again)


def _wait_for_loop(lab, name: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = lab.client.api.inspect_container(name)
        if doc["RestartCount"] >= 2:
            return
        time.sleep(0.2)
    raise AssertionError(f"{name} did not restart in a loop: {doc['State']}")
