"""Prune while something else changes the store: a metadata file deleted between the
listing and the read (another prune, running at the same time) is skipped, not an error;
a store that fails to read still fails."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reconciler.errors import StorageError
from reconciler.spec.models import Retention
from reconciler.storage.base import data_key, metadata_key
from reconciler.storage.local import LocalStore
from reconciler.storage.prune import load_records, prune_store

T0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
DAILY_1 = Retention(daily=1, weekly=0, monthly=0)


def write_backup(store: LocalStore, day: int) -> str:
    when = T0 + timedelta(days=day)
    backup_id = when.strftime("%Y%m%d-%H%M%S")
    key = data_key("postgres", when, ".sql.zst")
    obj = store.write_bytes(key, f"postgres {day}".encode())
    doc = {"backup_id": backup_id, "timestamp": when.isoformat(), "verified": False,
           "services": {"postgres": {"file": Path(key).name, "checksum": f"sha256:{obj.sha256}"}}}
    store.write_bytes(metadata_key(backup_id), json.dumps(doc).encode())
    return backup_id


class RacingStore(LocalStore):
    """A local store where another prune deletes ``vanish`` (its data file first, then its
    metadata) just after this one listed the metadata folder."""

    def __init__(self, root: Path, vanish: str) -> None:
        super().__init__(root)
        self.vanish = vanish

    def list(self, prefix: str = ""):
        found = super().list(prefix)
        if prefix == "metadata/" and self.vanish:
            doc = json.loads(super().read_bytes(metadata_key(self.vanish)))
            self.delete(f"postgres/{doc['services']['postgres']['file']}")
            self.delete(metadata_key(self.vanish))
            self.vanish = ""
        return found


class UnreadableStore(LocalStore):
    """Every read fails although the file is there (permission denied, a disk error)."""

    def read_bytes(self, key: str) -> bytes:
        raise StorageError(f"cannot read {key}: permission denied", hint="check permissions")


def test_metadata_pruned_between_list_and_read_is_skipped(tmp_path):
    ids = [write_backup(LocalStore(tmp_path / "b"), day) for day in range(3)]
    store = RacingStore(tmp_path / "b", vanish=ids[0])
    records, unreadable = load_records(store)
    assert [r.backup_id for r in records] == ids[1:]
    assert unreadable == []


def test_prune_goes_on_when_another_prune_removed_a_backup_meanwhile(tmp_path):
    ids = [write_backup(LocalStore(tmp_path / "b"), day) for day in range(3)]
    report = prune_store(RacingStore(tmp_path / "b", vanish=ids[0]), DAILY_1)
    assert report.unreadable == []
    assert report.deleted == ["postgres/postgres-2026-11-02-020000.sql.zst"]
    assert report.deleted_metadata == [metadata_key(ids[1])]
    assert [o.key for o in LocalStore(tmp_path / "b").list("metadata/")] == [metadata_key(ids[2])]


def test_a_read_failure_of_a_file_still_there_is_still_an_error(tmp_path):
    write_backup(LocalStore(tmp_path / "b"), 0)
    with pytest.raises(StorageError, match="permission denied"):
        prune_store(UnreadableStore(tmp_path / "b"), DAILY_1)


class FailingDeleteStore(LocalStore):
    """Deletes ``allowed`` files, then the store fails (S3 went away halfway)."""

    def __init__(self, root: Path, allowed: int) -> None:
        super().__init__(root)
        self.allowed = allowed

    def delete(self, key: str) -> None:
        if self.allowed <= 0:
            raise StorageError(f"cannot delete {key}: gone away", hint="check the network")
        self.allowed -= 1
        super().delete(key)


def test_a_prune_that_fails_halfway_says_what_it_deleted_before(tmp_path):
    from reconciler.storage.prune import PrunePartlyDone

    for day in range(3):
        write_backup(LocalStore(tmp_path / "b"), day)
    with pytest.raises(PrunePartlyDone) as caught:
        prune_store(FailingDeleteStore(tmp_path / "b", allowed=1), DAILY_1)
    assert caught.value.report.deleted == ["postgres/postgres-2026-11-01-020000.sql.zst"]
    assert "after deleting 1 of 4 files" in caught.value.message
    assert "check the network" in caught.value.hint and "prune" in caught.value.hint


def test_another_project_s_backups_in_a_shared_store_are_never_pruned(tmp_path):
    """Keys name no project: in a folder two projects share, each prunes only its own backups
    (and the seed's, which name none), and never a file another project's metadata names."""
    store = LocalStore(tmp_path)
    ids = [write_backup(store, day) for day in range(4)]
    for backup_id, project in zip(ids, ("shop", "other", "other", None), strict=True):
        doc = json.loads(store.read_bytes(metadata_key(backup_id)))
        if project:
            doc["project"] = project
        store.write_bytes(metadata_key(backup_id), json.dumps(doc).encode())

    report = prune_store(store, DAILY_1, dry_run=True, project="shop")
    assert report.others == {"other": 2}
    assert report.deleted_metadata == [metadata_key(ids[0])]  # shop's older one; the seed's is newest
    assert all(ids[i] not in key for key in report.deleted for i in (1, 2))
    theirs = prune_store(store, DAILY_1, dry_run=True, project="other")
    assert theirs.others == {"shop": 1} and ids[0] not in " ".join(theirs.deleted + theirs.deleted_metadata)
