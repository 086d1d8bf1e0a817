"""The apply journal is rotated: old journals beyond the newest ones go, a running one never."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

from reconciler.apply.journal import Journal, prune
from reconciler.owner import owner

NOW = datetime(2026, 11, 30, tzinfo=UTC)


def journal(folder, stamp: str, **start) -> str:
    apply_id = f"{stamp}-abcdef"
    record = {"ts": "2025-01-01T00:00:00+00:00", "apply_id": apply_id, "event": "start", **start}
    (folder / f"{apply_id}.jsonl").write_text(json.dumps(record) + "\n")
    return apply_id


def test_old_journals_beyond_the_newest_ones_are_removed(tmp_path):
    old = [journal(tmp_path, f"20250101T0000{n:02d}Z") for n in range(5)]
    recent = journal(tmp_path, "20261129T000000Z")
    removed = prune(tmp_path, NOW, keep_days=90, keep_last=3)
    assert [p.name for p in removed] == [f"{i}.jsonl" for i in old[:3]]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{i}.jsonl" for i in (*old[3:], recent)]


def test_a_running_apply_s_journal_is_never_removed(tmp_path):
    mine = journal(tmp_path, "20250101T000000Z", owner=owner())
    journal(tmp_path, "20250101T000001Z")
    assert prune(tmp_path, NOW, keep_days=90, keep_last=0)[0].name != f"{mine}.jsonl"
    assert (tmp_path / f"{mine}.jsonl").exists()


def test_opening_a_journal_rotates_the_folder(tmp_path):
    folder = tmp_path / "journal"
    folder.mkdir()
    for n in range(101):
        journal(folder, f"20240101T{n // 60:02d}{n % 60:02d}00Z")
    Journal(tmp_path, "20261130T000000Z-123456").close()
    assert len(os.listdir(folder)) == 101
