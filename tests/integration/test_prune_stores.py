"""Prune against the real stores: each store is pruned on its own (S3 down does not hide
what was deleted locally), and a metadata object pruned by someone else between the
listing and the read is skipped on a real S3 server."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reconciler.spec.models import Retention
from reconciler.storage.base import data_key, metadata_key
from reconciler.storage.prune import prune_store
from tests.conftest_s3 import closed_port
from tests.integration.test_backup_flow import cli, stack  # noqa: F401 - a fixture

T0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)


def local_keys(loaded, folder: str) -> list[str]:
    root = loaded.file.parent / "backups" / folder
    return sorted(p.name for p in root.iterdir())


@pytest.mark.engine
@pytest.mark.s3
def test_prune_with_s3_down_prunes_and_reports_local_and_warns_about_s3(stack):  # noqa: F811
    loaded, _, _ = stack
    before = []  # in the order taken (two in one second are …-HHMMSS and …-HHMMSS-2)
    for _ in range(3):  # same day: daily keeps the newest, "oldest (room)" the first
        result = cli(loaded, "backup", "--no-prune", "--json")
        assert result.returncode == 0, result.stderr
        before.append(json.loads(result.stdout)["services"]["postgres"]["file"])
    assert sorted(before) == local_keys(loaded, "postgres")
    down = {"S3_ENDPOINT": f"http://127.0.0.1:{closed_port()}"}

    result = cli(loaded, "backups", "prune", "--dry-run", "--json", env=down)
    assert result.returncode == 1
    local, s3 = json.loads(result.stdout)
    assert local["error"] is None and local["deleted"] == [f"postgres/{before[1]}"]
    assert "cannot reach S3 endpoint" in s3["error"]["message"] and s3["error"]["hint"]
    assert local_keys(loaded, "postgres") == sorted(before)

    result = cli(loaded, "backups", "prune", env=down)
    assert result.returncode == 1
    assert f"deleted 1 files, kept 2.\n  - postgres/{before[1]}" in result.stdout
    assert "warning[storage] pruning the s3 store failed: cannot reach S3 endpoint" in result.stderr
    assert "hint:" in result.stderr
    assert local_keys(loaded, "postgres") == sorted([before[0], before[2]])
    assert len(local_keys(loaded, "metadata")) == 2

    result = cli(loaded, "backups", "prune", "--json")  # S3 back: it is pruned in its turn
    assert result.returncode == 0, result.stderr
    local, s3 = json.loads(result.stdout)
    assert local["deleted"] == [] and s3["deleted"] == [f"postgres/{before[1]}"]
    assert s3["error"] is None


class VanishingMetadata:
    """The S3 store, with another prune deleting one backup (files, then metadata) right
    after this prune listed the metadata folder."""

    def __init__(self, store, backup_id: str, data: str) -> None:
        self.store, self.vanish = store, (backup_id, data)

    def __getattr__(self, name: str):
        return getattr(self.store, name)

    def list(self, prefix: str = ""):
        found = self.store.list(prefix)
        if prefix == "metadata/" and self.vanish:
            backup_id, data = self.vanish
            self.store.delete(data)
            self.store.delete(metadata_key(backup_id))
            self.vanish = None
        return found


@pytest.mark.s3
def test_s3_metadata_pruned_between_list_and_read_is_skipped(s3_store):
    ids, keys = [], []
    for day in range(3):
        when = T0 + timedelta(days=day)
        ids.append(when.strftime("%Y-%m-%d-%H%M%S"))
        keys.append(data_key("postgres", when, ".sql.zst"))
        obj = s3_store.write_bytes(keys[-1], f"dump {day}".encode())
        doc = {"backup_id": ids[-1], "timestamp": when.isoformat(), "services": {
            "postgres": {"file": Path(keys[-1]).name, "checksum": f"sha256:{obj.sha256}"}}}
        s3_store.write_bytes(metadata_key(ids[-1]), json.dumps(doc).encode())

    report = prune_store(VanishingMetadata(s3_store, ids[0], keys[0]),
                         Retention(daily=1, weekly=0, monthly=0))
    assert report.unreadable == [] and report.deleted == [keys[1]]
    assert [o.key for o in s3_store.list()] == [metadata_key(ids[2]), keys[2]]
