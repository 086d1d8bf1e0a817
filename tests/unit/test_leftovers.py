"""What a backup killed outright leaves in the local folder is removed by the next run, and
nothing of a backup still running (or of a finished one) is touched."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

from reconciler.storage.leftovers import TEMP_MAX_AGE, sweep
from reconciler.storage.local import LocalStore


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def claim(store: LocalStore, backup_id: str, pid: int) -> None:
    marker = store.root / "metadata" / f".backup-{backup_id}.json.partial-reserved"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))


def test_a_killed_backups_claim_temp_and_unrecorded_files_go(tmp_path):
    store = LocalStore(tmp_path / "backups")
    store.write_bytes("metadata/backup-2026-11-29-040000.json", b"{}")  # a finished backup
    store.write_bytes("postgres/postgres-2026-11-29-040000.sql.zst", b"kept")
    claim(store, "2026-11-29-044047", dead_pid())  # killed: its whole file, its temp file
    store.write_bytes("postgres/postgres-2026-11-29-044047.sql.zst", b"never recorded")
    (store.root / "dragonfly").mkdir(mode=0o700)
    (store.root / "dragonfly" / ".dragonfly-2026-11-29-044047.redis-dump.zst.partial-ab12cd").write_bytes(b"x")
    claim(store, "2026-11-29-044047-2", os.getpid())  # still running (this process)
    store.write_bytes("postgres/postgres-2026-11-29-044047-2.sql.zst", b"being backed up")
    running_temp = store.root / "dragonfly" / ".dragonfly-2026-11-29-044047-2.redis-dump.zst.partial-ef34"
    running_temp.write_bytes(b"y")

    removed = store.sweep_leftovers()

    assert sorted(removed) == [
        "dragonfly/.dragonfly-2026-11-29-044047.redis-dump.zst.partial-ab12cd",
        "metadata/.backup-2026-11-29-044047.json.partial-reserved",
        "postgres/postgres-2026-11-29-044047.sql.zst"]
    assert store.read_bytes("postgres/postgres-2026-11-29-040000.sql.zst") == b"kept"
    assert store.read_bytes("postgres/postgres-2026-11-29-044047-2.sql.zst") == b"being backed up"
    assert running_temp.exists()
    assert store.sweep_leftovers() == []


def test_an_old_untouched_temp_file_goes_a_fresh_one_stays(tmp_path):
    store = LocalStore(tmp_path / "backups")
    store.write_bytes("metadata/backup-2026-11-29-040000.json", b"{}")
    folder = store.root / "postgres"
    folder.mkdir(mode=0o700)
    old, fresh = folder / ".postgres-x.sql.zst.partial-0a1b", folder / ".postgres-y.sql.zst.partial-2c3d"
    old.write_bytes(b"download cut off")
    fresh.write_bytes(b"download running")
    old_metadata = store.root / "metadata" / ".backup-x.json.partial-9e8f"  # an atomic write cut off
    old_metadata.write_bytes(b"{")
    stale = time.time() - TEMP_MAX_AGE - 60
    for path in (old, old_metadata):
        os.utime(path, (stale, stale))
    assert sorted(sweep(store.root)) == sorted([old, old_metadata])
    assert fresh.exists()
