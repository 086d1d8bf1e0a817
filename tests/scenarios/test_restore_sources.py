"""Scenario 6 of issue 6 (restore: a corrupt local copy → S3; a corrupt S3 copy → local) inside
real applies, and the guard of the latest-verified-backup fallback, on one infrastructure
stack (PostgreSQL, the cache, the video server; no app) with S3 on a moto server.

Corruption is injected in the middle of the apply, between its backup and its restore: the
test pauses the apply (SIGSTOP) as soon as the journal says the backup is done, damages
one copy, and lets it go on (SIGCONT). The restore that follows is the apply's own.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest_s3 import raw_client
from tests.scenarios.scenario_support import Run

pytestmark = [pytest.mark.engine, pytest.mark.s3]
INFRA = ("--profile", "infrastructure")
RECREATE = ["backup:postgres", "recreate:postgres", "restore:postgres", "verify:postgres"]


@pytest.fixture(scope="module")
def infra(make_stack):
    return make_stack(*INFRA)


@pytest.fixture(scope="module")
def s3(s3_endpoint) -> dict[str, str]:
    """The stack's S3 settings: a bucket of its own on the session's moto server."""
    bucket = f"scenarios-{secrets.token_hex(4)}"
    raw_client(s3_endpoint).create_bucket(Bucket=bucket)
    return {"S3_ENABLED": "true", "S3_ENDPOINT": s3_endpoint.url, "S3_BUCKET": bucket,
            **s3_endpoint.environ}


def backed_up(events: list[dict]) -> bool:
    return any(e["event"] == "action-end" and e["action"] == "backup:postgres" for e in events)


def apply_with_damage(stack, damage, *, spec: Path | None = None, **extra: str) -> Run:
    """An apply paused right after its backup, ``damage(backup_end_event)``, then resumed."""
    before = stack.journals()
    process = stack.spawn_apply(*INFRA, spec=spec, **extra)
    try:
        stack.pause_at(process, before, backed_up)
        events = stack.new_journal(before)
        done = next(e for e in events if e["event"] == "action-end" and e["action"] == "backup:postgres")
        assert done["status"] == "ok", events
        damage(done)
    finally:
        process.send_signal(signal.SIGCONT)
        out, err = process.communicate(timeout=300)
    return Run(subprocess.CompletedProcess(process.args, process.returncode, out, err), stack.new_journal(before))


def metadata(stack, backup_id: str) -> dict:
    return json.loads((stack.root / "backups" / "metadata" / f"backup-{backup_id}.json").read_text())


def flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 16] = bytes(b ^ 0xFF for b in data[middle:middle + 16])
    path.write_bytes(bytes(data))


def sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_6a_a_corrupt_local_copy_is_replaced_by_the_s3_copy_during_the_upgrade(infra, s3):
    data = infra.data()
    damaged: dict = {}

    def corrupt_local(backup: dict) -> None:
        entry = metadata(infra, backup["backup_id"])["services"]["postgres"]
        assert backup["s3"] == "ok" and entry["s3_path"]
        damaged.update(entry)
        flip_bytes(Path(entry["local_path"]))
        assert sha256(Path(entry["local_path"])) != entry["checksum"]

    run = apply_with_damage(infra, corrupt_local, LAB_PG_VERSION="17", **s3)
    assert run.code == 1, str(run)  # done, with a warning: the local copy was bad
    assert run.actions() == [(a, "ok") for a in RECREATE]
    restore = run.ended("restore:postgres")
    assert restore["source"] == "s3" and restore["rows"] == 4000
    [warning] = run.finish()["warnings"]
    assert "local copy" in warning and "using S3" in warning and damaged["key"] in warning
    assert run.ended("verify:postgres")["checks"] > 0
    assert sha256(Path(damaged["local_path"])) == damaged["checksum"]  # the good copy is kept locally
    assert infra.pg_major() == "17"
    assert infra.data() == data


def test_6b_a_corrupt_s3_copy_is_never_read_while_the_local_copy_is_fine(infra, s3, s3_endpoint):
    """A second restore on 17: ``postgres_data`` moves to a host folder, a fresh volume."""
    folder = infra.root / "pgdata"
    moved = infra.write_spec("moved.yaml", postgres_volume=f'{{ bind: "{folder}" }}')
    data = infra.data()
    damaged: dict = {}

    def corrupt_s3(backup: dict) -> None:
        entry = metadata(infra, backup["backup_id"])["services"]["postgres"]
        assert backup["s3"] == "ok"
        damaged.update(entry)
        raw_client(s3_endpoint).put_object(Bucket=s3["S3_BUCKET"], Key=f"backups/{entry['key']}",
                                           Body=b"not a backup")

    run = apply_with_damage(infra, corrupt_s3, spec=moved, LAB_PG_VERSION="17", **s3)
    assert run.code == 0, str(run)
    assert run.actions() == [(a, "ok") for a in RECREATE]
    assert run.first("action-begin", action="restore:postgres")["cause"].startswith("volume postgres_data changed")
    assert run.ended("restore:postgres")["source"] == "local"
    assert not run.finish()["warnings"]
    check = infra.cli("backups", "verify", "--json", spec=moved, env=infra.environ(LAB_PG_VERSION="17", **s3))
    problems = json.loads(check.stdout)["problems"]
    assert check.returncode == 2 and [(p["store"], p["key"]) for p in problems] == [("s3", damaged["key"])]
    assert (folder / "PG_VERSION").read_text().strip() == "17"
    assert infra.data() == data


def test_a_healthy_service_whose_backup_fails_is_never_replaced_by_an_older_backup(infra, s3):
    """The fallback's guard, from the outside. A saved plan edited to mark the backup of a
    healthy service ``fallback`` (which would let an older verified backup stand in for it)
    is refused before anything runs: a saved plan runs only as reviewed. The executor's own
    guard behind it (never for a service that is fine) is tested in test_apply_fallback."""
    folder = infra.root / "pgdata"
    text = (infra.root / "moved.yaml").read_text()
    guarded = infra.root / "guarded.yaml"
    guarded.write_text(text.replace("databases: [healthcare]", "databases: [healthcare, nosuchdb]")
                       .replace("    protect: true\n", "    protect: true\n    labels: { change: guard }\n"))
    env = infra.environ(LAB_PG_VERSION="17", **s3)
    saved = infra.root / "plan.json"
    made = infra.cli("plan", *INFRA, "--out", str(saved), spec=guarded, env=env)
    assert made.returncode == 0, made.stderr
    plan = json.loads(saved.read_text())
    backup = next(a for a in plan["actions"] if a["id"] == "backup:postgres")
    assert "fallback" not in backup  # the planner only sets it for a server that cannot run
    backup["fallback"] = True
    saved.write_text(json.dumps(plan))
    data, before = infra.data(), infra.identities(("postgres", "dragonfly", "openvidu"))
    journals = infra.journals()
    result = infra.cli("apply", str(saved), spec=guarded, env=env)
    assert result.returncode == 1, result.stderr
    assert "error[plan.tampered]" in result.stderr
    assert infra.journals() == journals  # refused before an apply began: no journal
    assert infra.identities(("postgres", "dragonfly", "openvidu")) == before
    assert (folder / "PG_VERSION").exists() and infra.data() == data
