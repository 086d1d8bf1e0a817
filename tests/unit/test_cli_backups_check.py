"""`backups list` and `backups verify` on a folder an operator has been into: metadata that
is not JSON or not the expected shape is named and skipped (never a traceback), files that
no metadata names are pointed out, and a store that cannot be read does not stop the
others from being checked.

No engine and no S3 server: backups are written into the local folder by hand (see
test_cli_prune) and S3 is a closed loopback port, or a second local folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from reconciler.backup import catalogue, metadata
from reconciler.storage.local import LocalStore
from tests.unit.test_cli_prune import run, s3_down, spec  # noqa: F401 - spec is a fixture

BAD = {
    "backup-list.json": b"[1, 2]",
    "backup-truncated.json": b'{"backup_id": "x", "timest',
    "backup-services.json": b'{"backup_id": "s", "timestamp": "2026-11-05T00:00:00Z", "services": "cache"}',
    "backup-nochecksum.json": b'{"backup_id": "n", "timestamp": "2026-11-05T00:00:00Z",'
                              b' "services": {"cache": {"file": "cache-x.bin"}}}',
    "backup-number.json": b'{"backup_id": 7, "timestamp": "2026-11-05T00:00:00Z", "services": {}}',
}


def spoil(spec_file: Path) -> None:
    for name, raw in BAD.items():
        (spec_file.parent / "backups" / "metadata" / name).write_bytes(raw)


def test_list_names_each_unusable_metadata_file_and_lists_the_rest(spec):  # noqa: F811
    spoil(spec)
    result = run(spec, "backups", "list", "--json", env=s3_down())
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert [row["backup_id"] for row in json.loads(result.stdout)] == [
        "2026-11-03-020000", "2026-11-02-020000", "2026-11-01-020000"]
    skipped = {p["key"]: p["message"] for p in json.loads(result.stderr)["problems"] if p["key"]}
    assert skipped == {
        "metadata/backup-list.json": "not a JSON object",
        "metadata/backup-truncated.json": skipped["metadata/backup-truncated.json"],
        "metadata/backup-services.json": "services is not an object",
        "metadata/backup-nochecksum.json": "service cache has no sha256 checksum",
        "metadata/backup-number.json": "no backup_id"}
    assert skipped["metadata/backup-truncated.json"].startswith("not valid JSON")

    result = run(spec, "backups", "list", env=s3_down())
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "metadata/backup-list.json in the local store is skipped: not a JSON object" in result.stderr


def test_verify_counts_unusable_metadata_as_problems_and_still_checks_local_when_s3_is_down(spec):  # noqa: F811
    spoil(spec)
    result = run(spec, "backups", "verify", "--json", env=s3_down())
    assert result.returncode == 2, result.stderr
    found = json.loads(result.stdout)
    assert found["checked"] == 3 and found["status"] == "failed"
    assert sorted(p["key"] for p in found["problems"]) == sorted(f"metadata/{name}" for name in BAD)
    assert [s["store"] for s in found["stores_not_read"]] == ["s3"]
    assert "cannot reach S3 endpoint" in found["stores_not_read"][0]["message"]


def test_verify_with_s3_down_checks_local_and_exits_1(spec):  # noqa: F811
    result = run(spec, "backups", "verify", env=s3_down())
    assert result.returncode == 1, result.stderr
    assert result.stdout.startswith("3 files checked, 0 problems.")
    assert "backups in the s3 store were not listed: cannot reach S3 endpoint" in result.stderr


def test_verify_points_out_files_no_metadata_names(spec):  # noqa: F811
    folder = spec.parent / "backups"
    (folder / "metadata" / "backup-2026-11-02-020000.json").unlink()  # an operator's slip
    result = run(spec, "backups", "verify", "--json", env=s3_down())
    assert result.returncode == 1  # S3 down; the local files that are named all match
    found = json.loads(result.stdout)
    assert found["problems"] == [] and found["checked"] == 2
    assert found["unrecorded"] == [{"store": "local", "key": "postgres/postgres-2026-11-02-020000.sql.zst"}]

    text = run(spec, "backups", "verify", env=s3_down())
    assert "1 file no backup's metadata names (never restored, never pruned):" in text.stderr
    assert "  local: postgres/postgres-2026-11-02-020000.sql.zst" in text.stderr


def test_a_backup_being_taken_is_not_called_unrecorded(spec):  # noqa: F811
    store = LocalStore(spec.parent / "backups")
    claim = store.reserve("metadata/backup-2026-11-09-020000.json")
    store.write_bytes("postgres/postgres-2026-11-09-020000.sql.zst", b"being written")
    session = SimpleNamespace(local=store, spec=SimpleNamespace(project="shop", backup=SimpleNamespace(
        s3=SimpleNamespace(enabled=False))))
    assert catalogue.check_files(session).unrecorded == []
    store.release(claim)
    assert catalogue.check_files(session).unrecorded == [
        {"store": "local", "key": "postgres/postgres-2026-11-09-020000.sql.zst"}]


def test_list_shows_every_service_a_backup_holds_in_any_store(spec):  # noqa: F811
    """A restore that fetched one service from S3 writes a local record of that one only."""
    local = LocalStore(spec.parent / "backups")
    remote_root = spec.parent / "bucket"
    shutil.copytree(local.root, remote_root)
    remote = LocalStore(remote_root)
    key = "metadata/backup-2026-11-03-020000.json"
    doc = json.loads(remote.read_bytes(key))
    doc["services"]["dragonfly"] = {"file": "dragonfly-2026-11-03-020000.bin", "size": 7,
                                    "checksum": "sha256:" + "0" * 64}
    remote.write_bytes(key, json.dumps(doc).encode())
    session = SimpleNamespace(local=local, s3=remote, spec=SimpleNamespace(project="shop", backup=SimpleNamespace(
        s3=SimpleNamespace(enabled=True))))
    row = catalogue.catalogue(session).rows[0]
    assert row["backup_id"] == "2026-11-03-020000" and row["stores"] == ["local", "s3"]
    assert set(row["services"]) == {"postgres", "dragonfly"}


@pytest.mark.parametrize("doc, reason", [
    ({"backup_id": "a", "timestamp": "not a time", "services": {}}, "no usable timestamp"),
    ({"backup_id": "a", "timestamp": "2026-11-05T00:00:00Z", "services": {"c": "x"}}, "service c names no file"),
    ({"backup_id": "a", "timestamp": "2026-11-05T00:00:00Z",
      "services": {"c": {"file": "c-1.bin", "checksum": "sha256:1", "key": 3}}}, "key that is not a string"),
    ({"backup_id": "a", "timestamp": "2026-11-05T00:00:00Z",
      "services": {"c": {"file": "c-1.bin", "checksum": "sha256:1", "size": "big"}}}, "size that is not"),
])
def test_checked_says_what_is_wrong(doc, reason):
    with pytest.raises(metadata.Unusable, match=reason):
        metadata.checked(doc)


def test_checked_accepts_the_seed_shape_and_adds_keys():
    doc = metadata.checked({"backup_id": "a", "timestamp": "2026-11-05T00:00:00",
                            "postgres": {"file": "postgres-a.sql.gz", "checksum": "sha256:ab"}})
    assert doc["services"]["postgres"]["key"] == "postgres/postgres-a.sql.gz"


def test_a_file_retention_marked_for_deletion_is_not_called_unrecorded(spec):  # noqa: F811
    store = LocalStore(spec.parent / "backups")
    key = "metadata/backup-2026-11-02-020000.json"
    doc = json.loads(store.read_bytes(key))
    doc["pruned"] = {"postgres": doc.pop("services")["postgres"]}  # as a prune cut short leaves it
    doc["services"] = {}
    store.write_bytes(key, json.dumps(doc).encode())
    session = SimpleNamespace(local=store, spec=SimpleNamespace(project="shop", backup=SimpleNamespace(
        s3=SimpleNamespace(enabled=False))))
    assert catalogue.check_files(session).unrecorded == []


def test_an_s3_object_whose_copy_failed_midway_is_called_unrecorded_there(spec):  # noqa: F811
    """The object landed, the S3 metadata never did: no restore from S3 and no S3 prune
    reaches it. While the local record says the copy is under way, it is not called so."""
    local = LocalStore(spec.parent / "backups")
    remote = LocalStore(spec.parent / "bucket")
    key = "postgres/postgres-2026-11-03-020000.sql.zst"
    remote.write_bytes(key, local.read_bytes(key))
    record = "metadata/backup-2026-11-03-020000.json"
    doc = json.loads(local.read_bytes(record))
    session = SimpleNamespace(local=local, s3=remote, spec=SimpleNamespace(project="shop", backup=SimpleNamespace(
        s3=SimpleNamespace(enabled=True))))
    for state, expected in (("failed", [{"store": "s3", "key": key}]), ("pending", [])):
        local.write_bytes(record, json.dumps({**doc, "storage": {"local": "ok", "s3": state}}).encode())
        assert [u for u in catalogue.check_files(session).unrecorded if u["store"] == "s3"] == expected


def test_a_backup_recorded_as_on_s3_that_s3_lacks_is_a_problem_unless_our_retention_deleted_it(spec):  # noqa: F811
    """S3 lost a copy behind our back (by hand, a lifecycle rule): the local copy is then the
    only one, and verify says so. A copy our own S3 retention deleted is marked in the local
    record when it goes, and is no problem."""
    local = LocalStore(spec.parent / "backups")
    remote_root = spec.parent / "bucket"
    shutil.copytree(local.root, remote_root)
    remote = LocalStore(remote_root)
    for backup_id in ("2026-11-01-020000", "2026-11-02-020000", "2026-11-03-020000"):
        key = metadata.key_for(backup_id)
        local.write_bytes(key, json.dumps({**json.loads(local.read_bytes(key)),
                                           "storage": {"local": "ok", "s3": "ok"}}).encode())
    for backup_id in ("2026-11-01-020000", "2026-11-02-020000"):
        remote.delete(f"postgres/postgres-{backup_id}.sql.zst")
        remote.delete(metadata.key_for(backup_id))
    session = SimpleNamespace(local=local, s3=remote, spec=SimpleNamespace(project="shop", backup=SimpleNamespace(
        s3=SimpleNamespace(enabled=True))))
    found = catalogue.check_files(session).problems
    assert [(p["store"], p["backup_id"]) for p in found] == [("s3", "2026-11-01-020000"), ("s3", "2026-11-02-020000")]
    assert "S3 holds no record of it" in found[0]["error"] and "the only one" in found[0]["error"]

    assert metadata.mark_s3_pruned(local, [metadata.key_for("2026-11-01-020000"), "metadata/backup-gone.json"]) \
        == ["2026-11-01-020000"]
    assert json.loads(local.read_bytes(metadata.key_for("2026-11-01-020000")))["storage"]["s3"] == "pruned"
    assert [p["backup_id"] for p in catalogue.check_files(session).problems] == ["2026-11-02-020000"]


def test_a_prune_of_s3_marks_the_local_records_of_what_it_deleted(spec):  # noqa: F811
    from reconciler.cli.data import _prune_all
    from reconciler.spec.stores import Retention

    local = LocalStore(spec.parent / "backups")
    remote_root = spec.parent / "bucket"
    shutil.copytree(local.root, remote_root)
    for backup_id in ("2026-11-02-020000", "2026-11-03-020000"):  # local has only the oldest
        local.delete(f"postgres/postgres-{backup_id}.sql.zst")
        local.delete(metadata.key_for(backup_id))
    oldest = metadata.key_for("2026-11-01-020000")
    local.write_bytes(oldest, json.dumps({**json.loads(local.read_bytes(oldest)),
                                          "storage": {"local": "ok", "s3": "ok"}}).encode())
    session = SimpleNamespace(local=local, s3=LocalStore(remote_root), spec=SimpleNamespace(
        project="shop", backup=SimpleNamespace(s3=SimpleNamespace(enabled=True),
                                               retention=Retention(daily=1, weekly=0, monthly=0))),
        loaded=SimpleNamespace(state_dir=lambda: spec.parent / "state"))
    dry, = [r for r in _prune_all(session, dry_run=True) if r["name"] == "s3"]
    assert dry["deleted_metadata"] == [oldest, metadata.key_for("2026-11-02-020000")]
    assert json.loads(local.read_bytes(oldest))["storage"]["s3"] == "ok"  # a dry run changes nothing
    reports = _prune_all(session, dry_run=False)
    assert [(r["name"], r["deleted"], r["error"]) for r in reports][0] == ("local", [], None)
    assert json.loads(local.read_bytes(oldest))["storage"]["s3"] == "pruned"
    assert catalogue.check_files(session).problems == []
