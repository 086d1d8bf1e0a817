"""A backup killed outright during its S3 copy: its claim tells a running backup from a killed
one (``storage.claims``), `backups verify` / `list` report the copy as interrupted, and the next
backup finishes it (``backup.resume``)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

from reconciler.backup import catalogue, resume
from reconciler.storage import claims, leftovers
from reconciler.storage.local import LocalStore

BACKUP_ID = "2026-11-29-044047"
META = f"metadata/backup-{BACKUP_ID}.json"
DATA = f"cache/cache-{BACKUP_ID}.redis-dump.zst"
PAYLOAD = b"a whole cache dump"


def marker(store: LocalStore, backup_id: str = BACKUP_ID) -> Path:
    return store.root / "metadata" / f".backup-{backup_id}.json.partial-reserved"


def holder_process(root: Path) -> subprocess.Popen:
    """Another process that claims the backup id and holds the claim until killed."""
    code = textwrap.dedent(f"""
        import sys, time
        from reconciler.storage.local import LocalStore
        claim = LocalStore({str(root)!r}).reserve({META!r})
        print("claimed" if claim else "taken", flush=True)
        time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "claimed"
    return child


def test_a_claim_is_held_while_its_owner_lives_and_free_once_it_is_killed(tmp_path):
    store = LocalStore(tmp_path / "backups")
    child = holder_process(store.root)
    try:
        assert claims.held(marker(store)) is True
        assert leftovers.running(store.root, BACKUP_ID)
        assert store.reserve(META) is None and store.reclaim(META) is None
        assert store.sweep_leftovers() == []  # a running backup's claim is never swept
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert claims.held(marker(store)) is False
    assert not leftovers.running(store.root, BACKUP_ID)
    assert store.sweep_leftovers() == [f"metadata/.backup-{BACKUP_ID}.json.partial-reserved"]


def test_a_claim_of_this_process_is_held_until_released(tmp_path):
    store = LocalStore(tmp_path / "backups")
    claim = store.reserve(META)
    assert claim is not None and claims.held(claim.path) is True  # another open file: flock sees it
    assert json.loads(claim.path.read_text())["flock"] is True
    store.release(claim)
    assert not claim.path.exists() and claims.held(claim.path) is False
    assert not leftovers.running(store.root, BACKUP_ID)


def test_an_unlocked_marker_that_says_it_locks_is_abandoned_even_if_its_pid_runs(tmp_path):
    """A pid reused by another process does not keep a killed backup's claim alive."""
    store = LocalStore(tmp_path / "backups")
    path = marker(store)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename, "flock": True}))
    assert not leftovers.running(store.root, BACKUP_ID)
    path.write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename}))  # an older marker
    assert leftovers.running(store.root, BACKUP_ID)  # judged by its pid, as before


def record(s3: str = "pending", **extra) -> dict:
    return {"backup_id": BACKUP_ID, "timestamp": "2026-11-29T04:40:47Z", "project": "shop", "reason": "manual",
            "verified": True, "storage": {"local": "ok", "s3": s3}, **extra,
            "services": {"cache": {"file": DATA.rsplit("/", 1)[1], "key": DATA, "size": len(PAYLOAD),
                                   "checksum": "sha256:" + hashlib.sha256(PAYLOAD).hexdigest()}}}


def session_with(tmp_path, doc: dict) -> SimpleNamespace:
    local = LocalStore(tmp_path / "backups")
    local.write_bytes(DATA, PAYLOAD)
    local.write_bytes(META, json.dumps(doc).encode())
    s3 = LocalStore(tmp_path / "bucket")  # a store with S3's interface
    s3.ensure_root()
    settings = SimpleNamespace(enabled=True, bucket="b", prefix="backups/")
    spec = SimpleNamespace(project="shop", backup=SimpleNamespace(s3=settings))
    return SimpleNamespace(local=local, s3=s3, spec=spec)


def test_verify_and_list_report_a_pending_copy_whose_backup_is_gone(tmp_path):
    session = session_with(tmp_path, record())
    found = catalogue.check_files(session)
    assert found.problems == [{"store": "s3", "backup_id": BACKUP_ID, "key": META, "hint": resume.HINT,
                               "error": f"the S3 copy of backup {BACKUP_ID} was interrupted (its backup process "
                                        "is gone): only the local copy exists"}]
    listed = catalogue.catalogue(session)
    assert [row["s3_copy"] for row in listed.rows] == ["interrupted"]
    assert [p.ref for p in listed.problems] == ["backup.s3-interrupted"]
    assert str(listed.problems[0]) == found.problems[0]["error"]


def test_a_pending_copy_of_a_running_backup_is_not_reported(tmp_path):
    session = session_with(tmp_path, record())
    claim = session.local.reclaim(META)  # as the backup holds it during its copy
    try:
        assert catalogue.check_files(session).problems == []
        listed = catalogue.catalogue(session)
        assert listed.problems == [] and listed.rows[0]["s3_copy"] == "pending"
    finally:
        session.local.release(claim)


def test_records_that_are_ok_failed_or_without_s3_state_are_not_interrupted(tmp_path):
    for doc in (record("ok"), record("failed"), {k: v for k, v in record().items() if k != "storage"}):
        assert resume.interrupted(LocalStore(tmp_path), [doc]) == []


def test_the_next_backup_copies_an_interrupted_one(tmp_path):
    session = session_with(tmp_path, record())
    warnings, said = [], []
    assert resume.copy_interrupted(session, "2026-11-30-000000", warnings, said.append) == [BACKUP_ID]
    assert warnings == [] and said == [f"copying backup {BACKUP_ID} to S3 (its copy was interrupted)"]
    assert session.s3.read_bytes(DATA) == PAYLOAD
    on_s3 = json.loads(session.s3.read_bytes(META))
    assert on_s3["storage"] == {"local": "ok", "s3": "ok"}
    assert on_s3["services"]["cache"]["s3_path"] == f"s3://b/backups/{DATA}"
    assert json.loads(session.local.read_bytes(META)) == on_s3
    assert not marker(session.local).exists()
    assert catalogue.check_files(session).problems == []


def test_a_pruned_or_broken_interrupted_backup_is_marked_failed_not_copied(tmp_path):
    session = session_with(tmp_path, record(pruned={"postgres": {"key": "postgres/x.sql.zst"}}))
    warnings: list[str] = []
    assert resume.copy_interrupted(session, "x", warnings, lambda _: None) == []
    doc = json.loads(session.local.read_bytes(META))
    assert doc["storage"]["s3"] == "failed" and "retention has since deleted" in doc["s3_error"]
    assert warnings == [] and not session.s3.exists(DATA)

    session = session_with(tmp_path / "2", record())
    session.local.write_bytes(DATA, b"bit rot")
    assert resume.copy_interrupted(session, "x", warnings, lambda _: None) == []
    doc = json.loads(session.local.read_bytes(META))
    assert doc["storage"]["s3"] == "failed" and "no longer whole" in doc["s3_error"]
    assert len(warnings) == 1 and f"backup {BACKUP_ID} was not copied to S3" in warnings[0]
    assert not session.s3.exists(DATA) and not session.s3.exists(META)
