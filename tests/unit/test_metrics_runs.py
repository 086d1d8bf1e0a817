"""What one `drift --metrics-file` run writes: per-profile files that never share a series,
no drift claimed while an apply changes the stack, and an engine that cannot be reached said
so instead of the last file's "all healthy". The facts come from a real spec, local store and
journal; only the probes of live containers (which need an engine) are replaced."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from reconciler.apply.journal import Journal
from reconciler.apply.lock import LOCK_DIR_ENV, ApplyLock
from reconciler.health import Level, ServiceHealth
from reconciler.operate import gather, metrics
from reconciler.session import Session
from reconciler.spec.load import load_spec

SPEC = """\
version: 1
project: shop
services:
  db: { image: d, profile: infrastructure }
  cache: { image: c, profile: infrastructure }
  api: { image: a, profile: app }
  worker: { image: w, profile: app }
"""

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:\\.|[^"\\])*)"')


def samples(text: str) -> list[tuple[str, frozenset, str]]:
    """Each sample line of a textfile as (name, labels, value); (name, labels) is a series'
    identity for node_exporter."""
    found = []
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        match = _SAMPLE.match(line)
        assert match, line
        found.append((match[1], frozenset(_LABEL.findall(match[2] or "")), match[3]))
    return found


def series(text: str) -> list[tuple[str, frozenset]]:
    return [(name, labels) for name, labels, _ in samples(text)]


def values(text: str, name: str) -> dict[frozenset, str]:
    return {labels: value for metric, labels, value in samples(text) if metric == name}


@pytest.fixture()
def stack(tmp_path, monkeypatch):
    """A spec with two profiles, a backup of every service, an apply of the whole project and
    a later one of the app profile; every live probe healthy."""
    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path / "host-locks"))
    (tmp_path / "reconcile.yaml").write_text(SPEC)
    loaded = load_spec(tmp_path / "reconcile.yaml")
    folder = tmp_path / "backups" / "metadata"
    folder.mkdir(parents=True)
    doc = {"backup_id": "2026-01-05-020000", "timestamp": "2026-01-05T02:00:00Z", "project": "shop",
           "storage": {"local": "ok", "s3": "disabled"},
           "services": {name: {"file": f"{name}.zst", "size": 100 + n, "checksum": "sha256:" + "0" * 64}
                        for n, name in enumerate(("db", "cache", "api", "worker"))}}
    (folder / "backup-2026-01-05-020000.json").write_text(json.dumps(doc))
    for apply_id, profiles, result in (("20260105T010000Z-aaaaaa", [], "ok"),
                                       ("20260105T030000Z-bbbbbb", ["app"], "failed")):
        journal = Journal(loaded.state_dir(), apply_id)
        journal.write("start", project="shop", profiles=profiles, actions=[])
        journal.write("finish", result=result, exit_code=0 if result == "ok" else 2)
        journal.close()
    monkeypatch.setattr(gather, "health_of", lambda session, names: {
        name: ServiceHealth(name, "healthy", Level.HEALTHY) for name in names})
    return loaded


def write(loaded, profiles, path, *, drift=True, running=False) -> str:
    """What drift writes for a run limited to ``profiles`` (no drift found)."""
    flags = {name: False for name in gather.scope_of(loaded.spec, profiles)} if drift else None
    facts = gather.metrics_facts(Session(loaded), profiles, flags, running, [])
    return metrics.write_file(path, metrics.stack_metrics(facts)).read_text()


def test_two_per_profile_files_in_one_folder_hold_no_series_twice(stack, tmp_path):
    folder = tmp_path / "textfile"
    infra = write(stack, ("infrastructure",), folder / "infra.prom")
    app = write(stack, ("app",), folder / "app.prom")
    together = series(infra) + series(app)
    assert [s for s, n in Counter(together).items() if n > 1] == []
    backed_up = {dict(labels)["service"] for name, labels in series(infra)
                 if name == "reconcile_last_backup_timestamp_seconds"}
    assert backed_up == {"db", "cache"}  # not the app profile's backups
    assert {dict(labels)["service"] for name, labels in series(app)
            if name == "reconcile_last_backup_size_bytes"} == {"api", "worker"}
    # each file's last apply is the newest one that covered its profile
    assert values(infra, "reconcile_last_apply_success") == {
        frozenset({("project", "shop"), ("profile", "infrastructure")}): "1"}
    assert values(app, "reconcile_last_apply_success") == {
        frozenset({("project", "shop"), ("profile", "app")}): "0"}


def test_a_run_without_profiles_keeps_the_project_labels(stack, tmp_path):
    text = write(stack, (), tmp_path / "reconcile.prom")
    assert 'reconcile_last_apply_success{project="shop"} 0\n' in text  # the app apply came last
    assert 'reconcile_drift{project="shop",service="api"} 0\n' in text
    assert 'reconcile_engine_up{project="shop"} 1\n' in text
    assert 'reconcile_apply_running{project="shop"} 0\n' in text
    assert {dict(labels)["service"] for name, labels in series(text)
            if name == "reconcile_last_backup_timestamp_seconds"} == {"db", "cache", "api", "worker"}


def test_while_an_apply_runs_drift_is_left_out_and_the_gauge_says_why(stack, tmp_path):
    text = write(stack, (), tmp_path / "reconcile.prom", drift=False, running=True)
    assert "reconcile_drift" not in text  # not judged: neither 0 nor 1
    assert "# TYPE reconcile_apply_running gauge\n" in text and "# HELP reconcile_apply_running " in text
    assert 'reconcile_apply_running{project="shop"} 1\n' in text
    assert 'reconcile_service_health{project="shop",service="db"} 0\n' in text  # still true


def test_without_the_engine_the_file_says_so_and_keeps_what_the_stores_know(stack, tmp_path):
    warnings: list[str] = []
    facts = gather.facts_without_engine(stack, (), warnings)
    text = metrics.write_file(tmp_path / "reconcile.prom", metrics.stack_metrics(facts)).read_text()
    assert 'reconcile_engine_up{project="shop"} 0\n' in text and "# TYPE reconcile_engine_up gauge" in text
    assert "reconcile_service_health" not in text and "reconcile_drift" not in text
    assert 'reconcile_last_backup_timestamp_seconds{project="shop",service="db",location="local"}' in text
    assert 'reconcile_apply_running{project="shop"} 0\n' in text and warnings == []


def test_without_the_engine_a_held_lock_still_reads_as_an_apply_running(stack, tmp_path):
    with ApplyLock(stack.state_dir(), "20260105T040000Z-cccccc", project="shop", command="heal"):
        facts = gather.facts_without_engine(stack, ("app",), [])
    text = metrics.render(metrics.stack_metrics(facts))
    assert 'reconcile_apply_running{project="shop",profile="app"} 1\n' in text
    assert 'reconcile_engine_up{project="shop",profile="app"} 0\n' in text
