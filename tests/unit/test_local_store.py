"""LocalStore: permissions, atomic writes, checksums, free space, unwritable roots, prune.

These run as root in the lab, so "unwritable" is simulated with a root whose parent is a
regular file (root ignores mode bits, but not ENOTDIR).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from reconciler.errors import StorageError
from reconciler.spec.models import Retention
from reconciler.storage.base import (
    Store,
    StoredObject,
    check_key,
    data_key,
    metadata_key,
    normalise_sha256,
    sha256_file,
)
from reconciler.storage.local import LocalStore
from reconciler.storage.prune import (
    BackupRecord,
    load_records,
    plan_prune,
    prune,
    prune_store,
)

KEY = "postgres/postgres-2026-11-28-020000.sql.zst"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture(params=[0o000, 0o022, 0o077], ids=["umask000", "umask022", "umask077"])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


@pytest.fixture()
def store(tmp_path) -> LocalStore:
    return LocalStore(tmp_path / "backups")


# -- keys --------------------------------------------------------------------------------

def test_keys_follow_the_seed_layout():
    when = datetime(2026, 11, 28, 3, 0, 0, tzinfo=timezone(timedelta(hours=1)))
    assert data_key("postgres", when, ".sql.zst") == KEY
    assert data_key("dragonfly", when, ".jsonl.zst") == \
        "dragonfly/dragonfly-2026-11-28-020000.jsonl.zst"
    assert metadata_key("20261128-020000") == "metadata/backup-20261128-020000.json"
    assert data_key("postgres", when, ".sql.zst", serial=2) == \
        "postgres/postgres-2026-11-28-020000-2.sql.zst"


@pytest.mark.parametrize("bad", ["", "/etc/passwd", "../x", "a/../b", "a//b", "a/./b",
                                 "a\\b", "postgres/.x.sql.partial-abc", "a/"])
def test_unsafe_keys_are_rejected(bad):
    with pytest.raises(StorageError, match="invalid backup key"):
        check_key(bad)


def test_checksums_accept_the_metadata_prefix():
    digest = sha(b"x")
    assert normalise_sha256(f"sha256:{digest.upper()}") == digest
    with pytest.raises(StorageError):
        normalise_sha256("md5:abc")


def test_sha256_file_streams(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"a" * (3 * 1024 * 1024 + 7))
    assert sha256_file(path) == sha(path.read_bytes())


def test_local_store_is_a_store(store):
    assert isinstance(store, Store)


# -- permissions -------------------------------------------------------------------------

def test_folders_are_0700_and_files_0600_whatever_the_umask(store, umask):
    with store.open_for_write(KEY) as handle:
        handle.write(b"dump")
    store.write_bytes("metadata/backup-1.json", b"{}")
    assert mode(store.root) == 0o700
    assert mode(store.root / "postgres") == 0o700
    assert mode(store.root / "metadata") == 0o700
    assert mode(store.path_of(KEY)) == 0o600
    assert mode(store.path_of("metadata/backup-1.json")) == 0o600


def test_a_looser_existing_root_is_tightened(tmp_path):
    root = tmp_path / "backups"
    (root / "postgres").mkdir(parents=True)
    os.chmod(root, 0o755)
    os.chmod(root / "postgres", 0o777)
    LocalStore(root).write_bytes(KEY, b"x")
    assert mode(root) == 0o700
    assert mode(root / "postgres") == 0o700


def test_missing_parents_of_the_root_are_created_0755(tmp_path, umask):
    store = LocalStore(tmp_path / "opt" / "app" / "backups")
    store.write_bytes(KEY, b"x")
    assert mode(tmp_path / "opt") == mode(tmp_path / "opt" / "app") == 0o755
    assert mode(store.root) == 0o700


def test_downloaded_copies_are_0600(store, tmp_path, umask):
    obj = store.write_bytes(KEY, b"dump")
    dest = store.get(KEY, tmp_path / "restore" / "x.sql.zst", obj.sha256)
    assert mode(dest) == 0o600
    assert mode(dest.parent) == 0o700


# -- atomic writes -----------------------------------------------------------------------

def test_open_for_write_commits_on_success(store):
    with store.open_for_write(KEY) as handle:
        handle.write(b"part one,")
        assert not store.exists(KEY)  # nothing under the final name while writing
        handle.write(b"part two")
    assert store.path_of(KEY).read_bytes() == b"part one,part two"
    assert all_files(store.root) == [KEY]


def test_an_exception_inside_open_for_write_leaves_nothing(store):
    with pytest.raises(RuntimeError, match="pg_dump died"):
        with store.open_for_write(KEY) as handle:
            handle.write(b"half a dump")
            raise RuntimeError("pg_dump died")
    assert not store.exists(KEY)
    assert all_files(store.root) == []


def test_a_failed_rewrite_keeps_the_previous_file(store):
    store.write_bytes(KEY, b"good")
    with pytest.raises(KeyboardInterrupt):
        with store.open_for_write(KEY) as handle:
            handle.write(b"bad")
            raise KeyboardInterrupt
    assert store.read_bytes(KEY) == b"good"
    assert all_files(store.root) == [KEY]


def test_an_exclusive_write_never_replaces_an_existing_file(store):
    store.write_bytes(KEY, b"first backup")
    with pytest.raises(StorageError, match="already exists"):
        with store.open_for_write(KEY, replace=False) as handle:
            handle.write(b"second backup")
    assert store.read_bytes(KEY) == b"first backup"
    assert all_files(store.root) == [KEY]


def test_a_key_is_reserved_once_and_never_when_it_exists(store):
    claim = store.reserve(KEY)
    assert claim is not None and store.reserve(KEY) is None
    assert store.list() == []  # the claim is not a backup
    store.release(claim)
    assert all_files(store.root) == []
    store.write_bytes(KEY, b"x")
    assert store.reserve(KEY) is None


def test_disk_full_inside_open_for_write_is_a_storage_error(store):
    import errno

    with pytest.raises(StorageError, match="disk full") as caught:
        with store.open_for_write(KEY):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert "free space" in caught.value.hint
    assert all_files(store.root) == []


def test_checking_and_copying_report_their_progress(store, tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 5)
    store.write_bytes(KEY, data)
    checked, copied = [], []
    store.verify(KEY, sha(data), checked.append)
    store.get(KEY, tmp_path / "copy", sha(data), copied.append)
    assert sum(checked) == sum(copied) == len(data) and len(checked) == 4  # 1 MiB at a time


def test_temporary_files_are_not_listed(store):
    store.write_bytes(KEY, b"x")
    (store.root / "postgres" / f".{Path(KEY).name}.partial-abc123").write_bytes(b"junk")
    assert [o.key for o in store.list()] == [KEY]


# -- put / get / checksums ---------------------------------------------------------------

def test_put_and_get_round_trip(store, tmp_path):
    src = tmp_path / "dump.sql.zst"
    src.write_bytes(os.urandom(2 * 1024 * 1024 + 3))
    digest = sha256_file(src)
    stored = store.put(src, KEY, f"sha256:{digest}")
    assert stored == StoredObject(KEY, src.stat().st_size, digest)
    out = store.get(KEY, tmp_path / "out" / "dump.sql.zst", digest)
    assert out.read_bytes() == src.read_bytes()


def test_put_with_a_wrong_checksum_stores_nothing(store, tmp_path):
    src = tmp_path / "dump"
    src.write_bytes(b"real bytes")
    with pytest.raises(StorageError, match="checksum mismatch"):
        store.put(src, KEY, sha(b"other bytes"))
    assert all_files(store.root) == []


def test_put_of_a_file_already_in_place_only_verifies(store):
    with store.open_for_write(KEY) as handle:
        handle.write(b"streamed")
    assert store.put(store.path_of(KEY), KEY, sha(b"streamed")).size == 8
    with pytest.raises(StorageError, match="checksum mismatch"):
        store.put(store.path_of(KEY), KEY, sha(b"other"))


def test_get_of_a_corrupt_file_raises_and_leaves_no_dest(store, tmp_path):
    obj = store.write_bytes(KEY, b"original")
    store.path_of(KEY).write_bytes(b"bit rot!")
    dest = tmp_path / "restore" / "x"
    with pytest.raises(StorageError, match="checksum mismatch") as caught:
        store.get(KEY, dest, obj.sha256)
    assert caught.value.hint
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []


def test_get_does_not_replace_an_existing_dest_on_mismatch(store, tmp_path):
    store.write_bytes(KEY, b"new")
    dest = tmp_path / "x"
    dest.write_bytes(b"previous")
    with pytest.raises(StorageError, match="checksum mismatch"):
        store.get(KEY, dest, sha(b"something else"))
    assert dest.read_bytes() == b"previous"


def test_verify_in_place(store):
    obj = store.write_bytes(KEY, b"abc")
    assert store.verify(KEY, obj.sha256) == store.path_of(KEY)
    with pytest.raises(StorageError, match="checksum mismatch"):
        store.verify(KEY, sha(b"abd"))


def test_missing_key_is_a_storage_error_with_a_hint(store, tmp_path):
    with pytest.raises(StorageError, match="not found") as caught:
        store.get(KEY, tmp_path / "x", sha(b""))
    assert caught.value.hint
    with pytest.raises(StorageError, match="not found"):
        store.read_bytes("metadata/backup-x.json")


# -- list / delete -----------------------------------------------------------------------

def test_list_filters_by_prefix_and_sorts(store):
    for key in ["postgres/b.sql.zst", "postgres/a.sql.zst", "dragonfly/a.bin",
                "metadata/backup-1.json"]:
        store.write_bytes(key, b"12345")
    assert [o.key for o in store.list("postgres/")] == ["postgres/a.sql.zst",
                                                        "postgres/b.sql.zst"]
    assert [o.key for o in store.list("postgres/a")] == ["postgres/a.sql.zst"]
    assert [o.key for o in store.list("metadata")] == ["metadata/backup-1.json"]
    assert len(store.list()) == 4
    assert store.list()[0] == StoredObject("dragonfly/a.bin", 5, "")


def test_list_of_a_missing_root_is_empty(tmp_path):
    assert LocalStore(tmp_path / "nope").list() == []


def test_delete_is_idempotent(store):
    store.write_bytes(KEY, b"x")
    store.delete(KEY)
    store.delete(KEY)
    assert not store.exists(KEY)


# -- free space and unwritable roots -----------------------------------------------------

def free_bytes(path: Path) -> int:
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize


def test_free_space_check_passes_when_there_is_room(store):
    assert store.free_space_check(1024, "the postgres dump") > 1024


def test_free_space_check_refuses_more_than_the_disk_has(store, tmp_path):
    with pytest.raises(StorageError, match="not enough free space for the postgres dump") as c:
        store.free_space_check(free_bytes(tmp_path) * 4, "the postgres dump")
    assert "backup.local.path" in c.value.hint
    assert not store.root.exists()  # a preflight creates nothing


def test_free_space_check_includes_a_ten_percent_margin(store, tmp_path):
    needed = int(free_bytes(tmp_path) / 1.05)  # fits, but not with 10 % on top
    with pytest.raises(StorageError, match="10 % margin"):
        store.free_space_check(needed, "the dump")


def test_unwritable_root_says_how_to_fix_it(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a regular file")
    store = LocalStore(blocker / "backups")
    for attempt in (store.check_writable, lambda: store.write_bytes(KEY, b"x")):
        with pytest.raises(StorageError) as caught:
            attempt()
        assert str(store.root) in caught.value.message
        assert f"check that {store.root} is writable by uid {os.geteuid()}" in caught.value.hint
        assert "read-only" in caught.value.hint


def test_check_writable_leaves_no_probe(store):
    store.check_writable()
    assert list(store.root.iterdir()) == []


# -- prune (local) -----------------------------------------------------------------------

T0 = datetime(2026, 11, 1, 2, 0, tzinfo=timezone.utc)


def write_backup(store: LocalStore, day: int, services=("postgres", "dragonfly"),
                 verified: bool = False, shape: str = "services") -> BackupRecord:
    when = T0 + timedelta(days=day)
    backup_id = when.strftime("%Y%m%d-%H%M%S")
    entries = {}
    for service in services:
        key = data_key(service, when, ".sql.zst" if service == "postgres" else ".bin")
        obj = store.write_bytes(key, f"{service} {day}".encode())
        entries[service] = {"file": Path(key).name, "size": obj.size,
                            "checksum": f"sha256:{obj.sha256}"}
    doc = {"timestamp": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "backup_id": backup_id,
           "verified": verified}
    doc.update({"services": entries} if shape == "services" else entries)
    store.write_bytes(metadata_key(backup_id), json.dumps(doc).encode())
    return BackupRecord.from_metadata(doc)


def test_metadata_parsing_accepts_both_shapes(store):
    nested = write_backup(store, 0, shape="services")
    flat = write_backup(store, 1, shape="flat")
    for record in (nested, flat):
        assert set(record.files) == {"postgres", "dragonfly"}
        assert record.files["postgres"].startswith("postgres/postgres-2026-11-0")
        assert record.timestamp.tzinfo is not None


def test_local_prune_applies_retention_and_removes_emptied_metadata(store):
    for day in range(10):
        write_backup(store, day)
    report = prune_store(store, Retention(daily=3, weekly=0, monthly=0))
    kept_days = ["2026-11-10", "2026-11-09", "2026-11-08"]
    assert report.decisions["postgres"].reasons[kept_days[0].replace("-", "") + "-020000"] \
        == ["daily 2026-11-10"]
    left = [o.key for o in store.list()]
    assert len([k for k in left if k.startswith("postgres/")]) == 3
    assert len([k for k in left if k.startswith("dragonfly/")]) == 3
    assert [k for k in left if k.startswith("metadata/")] == [
        f"metadata/backup-{d.replace('-', '')}-020000.json" for d in sorted(kept_days)]
    assert len(report.deleted) == 14 and len(report.deleted_metadata) == 7
    assert prune_store(store, Retention(daily=3, weekly=0, monthly=0)).deleted == []


def test_dry_run_deletes_nothing_but_reports_the_same(store):
    for day in range(5):
        write_backup(store, day)
    before = all_files(store.root)
    report = prune_store(store, Retention(daily=1, weekly=0, monthly=0), dry_run=True)
    assert report.dry_run and len(report.deleted) == 8 and len(report.deleted_metadata) == 4
    assert all_files(store.root) == before


def test_prune_keeps_metadata_while_any_file_of_the_backup_remains(store):
    # dragonfly only in the oldest two: its own retention keeps both, postgres keeps one
    write_backup(store, 0)
    write_backup(store, 1)
    write_backup(store, 2, services=("postgres",))
    report = prune_store(store, Retention(daily=2, weekly=0, monthly=0))
    assert report.deleted == ["postgres/postgres-2026-11-01-020000.sql.zst"]
    assert report.deleted_metadata == []
    assert store.exists("dragonfly/dragonfly-2026-11-01-020000.bin")
    # the kept metadata no longer names the deleted file: verify and restore would call it lost
    doc = json.loads(store.read_bytes("metadata/backup-20261101-020000.json"))
    assert list(doc["services"]) == ["dragonfly"]
    assert doc["pruned"]["postgres"]["file"] == "postgres-2026-11-01-020000.sql.zst"
    assert doc["pruned"]["postgres"]["pruned_at"].endswith("Z")
    assert report.updated_metadata == ["metadata/backup-20261101-020000.json"]
    assert prune_store(store, Retention(daily=2, weekly=0, monthly=0)).deleted == []


def test_prune_in_the_seed_shape_moves_the_entry_out_of_the_top_level(store):
    write_backup(store, 0, shape="flat")
    write_backup(store, 1)
    write_backup(store, 2, services=("postgres",))
    prune_store(store, Retention(daily=2, weekly=0, monthly=0))
    doc = json.loads(store.read_bytes("metadata/backup-20261101-020000.json"))
    assert "postgres" not in doc and "dragonfly" in doc and "postgres" in doc["pruned"]
    assert set(BackupRecord.from_metadata(doc).files) == {"dragonfly"}


def test_a_prune_cut_short_is_finished_by_the_next(store, monkeypatch):
    from reconciler.storage import prune as pruning

    for day in range(3):
        write_backup(store, day)
    real_delete = LocalStore.delete

    def delete_fails_after_metadata_is_marked(self, key):
        raise StorageError(f"disk gone while deleting {key}")

    monkeypatch.setattr(LocalStore, "delete", delete_fails_after_metadata_is_marked)
    with pytest.raises(pruning.PrunePartlyDone) as cut:
        prune_store(store, Retention(daily=1, weekly=0, monthly=0))
    assert len(cut.value.report.updated_metadata) == 2 and cut.value.report.deleted == []
    old = json.loads(store.read_bytes("metadata/backup-20261101-020000.json"))
    assert old["services"] == {} and set(old["pruned"]) == {"postgres", "dragonfly"}
    assert store.exists("postgres/postgres-2026-11-01-020000.sql.zst")  # named under pruned

    monkeypatch.setattr(LocalStore, "delete", real_delete)
    report = prune_store(store, Retention(daily=1, weekly=0, monthly=0))
    assert len(report.deleted) == 4 and len(report.deleted_metadata) == 2
    assert sorted(o.key for o in store.list()) == [
        "dragonfly/dragonfly-2026-11-03-020000.bin", "metadata/backup-20261103-020000.json",
        "postgres/postgres-2026-11-03-020000.sql.zst"]


def test_a_file_named_again_after_being_pruned_is_not_deleted(store):
    """A restore that fetches a pruned file back from S3 names it in services again."""
    write_backup(store, 0)
    write_backup(store, 1)
    write_backup(store, 2, services=("postgres",))
    prune_store(store, Retention(daily=2, weekly=0, monthly=0))
    key = "metadata/backup-20261101-020000.json"
    doc = json.loads(store.read_bytes(key))
    entry = doc["pruned"]["postgres"]
    store.write_bytes("postgres/" + entry["file"], b"postgres 0")
    doc["services"]["postgres"] = entry  # as if only half-recorded: still in pruned too
    store.write_bytes(key, json.dumps(doc).encode())
    prune_store(store, Retention(daily=5, weekly=0, monthly=0))
    assert store.exists("postgres/" + entry["file"])


def test_prune_never_deletes_the_newest_verified_backup(store):
    for day in range(4):
        write_backup(store, day, verified=(day == 1))
    prune_store(store, Retention(daily=1, weekly=0, monthly=0))
    assert store.exists("postgres/postgres-2026-11-02-020000.sql.zst")
    assert store.exists("metadata/backup-20261102-020000.json")
    assert not store.exists("postgres/postgres-2026-11-01-020000.sql.zst")


def test_prune_reports_unreadable_metadata_and_leaves_it(store):
    write_backup(store, 0)
    store.write_bytes("metadata/backup-broken.json", b"{not json")
    report = prune_store(store, Retention(daily=1, weekly=0, monthly=0))
    assert [u.key for u in report.unreadable] == ["metadata/backup-broken.json"]
    assert store.exists("metadata/backup-broken.json")


def test_prune_counts_only_files_present_in_the_store(store):
    records = [write_backup(store, day) for day in range(3)]
    store.delete("postgres/postgres-2026-11-03-020000.sql.zst")  # newest gone from disk
    present = {o.key for o in store.list()}
    plan = plan_prune(records, present, Retention(daily=1, weekly=0, monthly=0))
    assert plan.decisions["postgres"].keep == ["20261102-020000"]
    assert "postgres/postgres-2026-11-02-020000.sql.zst" not in plan.doomed


def test_prune_refuses_an_all_zero_policy_and_deletes_nothing(store):
    write_backup(store, 0)
    before = all_files(store.root)
    with pytest.raises(StorageError, match="refusing"):
        prune(store, load_records(store)[0], Retention(daily=0, weekly=0, monthly=0))
    assert all_files(store.root) == before


def _written_in_steps(handle, data: bytes, steps: int = 40) -> None:
    """Written as a dump is, a piece at a time, so the reader reads while the file grows."""
    import time

    size = -(-len(data) // steps)
    for start in range(0, len(data), size):
        handle.write(data[start:start + size])
        handle.flush()
        time.sleep(0.002)


def test_a_checked_write_is_read_back_while_it_grows_and_kept(store, monkeypatch):
    from reconciler.storage.files import ReadBack

    monkeypatch.setattr(ReadBack, "SYNC_EVERY", 64 * 1024)  # syncs from the reader's fd too
    data = os.urandom(4 * 1024 * 1024 + 7)
    with store.write_checked(KEY) as checked:
        _written_in_steps(checked.handle, data)
        assert not store.exists(KEY)
        checked.expect("sha256:" + hashlib.sha256(data).hexdigest())
    assert store.read_bytes(KEY) == data
    assert all_files(store.root) == [KEY]
    assert stat.S_IMODE(store.path_of(KEY).stat().st_mode) == 0o600


def test_a_checked_write_whose_file_is_not_what_was_written_keeps_nothing(store):
    data = os.urandom(1024 * 1024)
    with pytest.raises(StorageError, match="read back differs") as caught:
        with store.write_checked(KEY) as checked:
            _written_in_steps(checked.handle, data)
            temp = next(store.path_of(KEY).parent.glob(".*partial*"))
            with open(temp, "ab") as disk:  # the disk holds more than the writer wrote
                disk.write(b"\0" * 512)
            checked.expect(hashlib.sha256(data).hexdigest())
    assert "dmesg" in caught.value.hint
    assert all_files(store.root) == []


@pytest.mark.parametrize("failure", [RuntimeError("pg_dump died"), KeyboardInterrupt()])
def test_a_checked_write_that_fails_keeps_nothing_and_stops_reading(store, failure):
    import threading

    with pytest.raises(type(failure)):
        with store.write_checked(KEY) as checked:
            checked.handle.write(b"half a dump")
            raise failure
    assert all_files(store.root) == []
    assert not [t for t in threading.enumerate() if t.name == "read-back"]


def test_a_checked_write_never_replaces_a_backup_and_needs_its_digest(store):
    store.write_bytes(KEY, b"first backup")
    with pytest.raises(StorageError, match="already exists"):
        with store.write_checked(KEY) as checked:
            checked.handle.write(b"second backup")
            checked.expect(hashlib.sha256(b"second backup").hexdigest())
    other = KEY.replace("020000", "030000")
    with pytest.raises(AssertionError, match="expect"):
        with store.write_checked(other) as checked:
            checked.handle.write(b"no digest given")
    assert store.read_bytes(KEY) == b"first backup"
    assert all_files(store.root) == [KEY]
