"""Which engine volume a container created from scratch mounts: the generation the last
verified swap recorded, else the newest generation there is, else the canonical volume."""

from __future__ import annotations

import stat

import pytest

from reconciler.apply import volumes
from reconciler.errors import ApplyError
from reconciler.spec.load import load_spec

SPEC = """\
version: 1
project: demo
volumes: { pgdata: {}, logs: {} }
services:
  db:
    kind: postgres
    image: postgres:16
    volumes: ["pgdata:/var/lib/postgresql/data", "logs:/logs"]
    stateful: true
"""


def volume(name: str, created: str, logical: str = "pgdata") -> dict:
    return {"Name": name, "CreatedAt": created, "Labels": {"reconcile.project": "demo", "reconcile.volume": logical}}


def test_the_recorded_generation_wins_over_a_newer_one_and_the_record_is_private(tmp_path):
    spec = tmp_path / "reconcile.yaml"
    spec.write_text(SPEC)
    loaded = load_spec(spec, {})
    existing = [volume("demo_pgdata", "2026-11-01T00:00:00Z"), volume("demo_pgdata-aaaaaa", "2026-11-02T00:00:00Z"),
                volume("demo_pgdata-bbbbbb", "2026-11-03T00:00:00Z"), volume("demo_logs", "2026-11-01T00:00:00Z", "logs")]
    assert volumes.current(loaded, "db", existing, tmp_path) == {"pgdata": "demo_pgdata-bbbbbb"}
    volumes.record_current(tmp_path, {"pgdata": "demo_pgdata-aaaaaa"})
    assert volumes.current(loaded, "db", existing, tmp_path) == {"pgdata": "demo_pgdata-aaaaaa"}
    assert stat.S_IMODE((tmp_path / volumes.RECORD).stat().st_mode) == 0o600
    # without a record: only the canonical volume, nothing to choose, the canonical name is the default
    assert volumes.current(loaded, "db", existing[:1], tmp_path / "none") == {}


def test_a_recorded_generation_removed_by_hand_is_not_replaced_by_an_older_one(tmp_path):
    """QA: the generation holding the data was removed with its container; apply started the
    service on an older generation (old data back, new writes gone), every check green."""
    spec = tmp_path / "reconcile.yaml"
    spec.write_text(SPEC)
    loaded = load_spec(spec, {})
    existing = [volume("demo_pgdata", "2026-11-01T00:00:00Z"), volume("demo_pgdata-bbbbbb", "2026-11-03T00:00:00Z")]
    volumes.record_current(tmp_path, {"pgdata": "demo_pgdata-aaaaaa"})
    with pytest.raises(ApplyError) as caught:
        volumes.current(loaded, "db", existing, tmp_path)
    error = caught.value
    assert error.ref == "apply.volume-gone" and "demo_pgdata-aaaaaa" in error.message
    assert "older generations that remain: demo_pgdata, demo_pgdata-bbbbbb" in error.message
    assert "docker volume create demo_pgdata-aaaaaa" in error.hint and "reconcile restore latest db" in error.hint


def test_an_unreadable_record_counts_as_none(tmp_path):
    (tmp_path / volumes.RECORD).write_text("{not json")
    assert volumes.recorded(tmp_path) == {}
    volumes.record_current(tmp_path, {"pgdata": "demo_pgdata-cccccc"})
    assert volumes.recorded(tmp_path) == {"pgdata": "demo_pgdata-cccccc"}
