"""Run logs (JSON lines per deploy/backup/restore) and the spec's secret redactor."""

from __future__ import annotations

import json
import os
import stat
import textwrap
from datetime import UTC, datetime, timedelta

import pytest

from reconciler.errors import BackupError
from reconciler.operate import runlog
from reconciler.operate.redact import MASK, Redactor
from reconciler.session import Session
from reconciler.spec.interpolate import interpolated_values
from reconciler.spec.load import load_spec

SPEC = """\
version: 1
project: shop
state_dir: ./state
services:
  postgres:
    kind: postgres
    image: "postgres:${env:PG_TAG:-16}"
    env: { POSTGRES_PASSWORD: "${env:PGPW}", POSTGRES_DB: shop, X: "no" }
  api:
    image: shop/api:1
    env:
      DATABASE_URL: "postgresql://app:${env:APP_PW}@postgres:5432/shop"
      API_TOKEN: tok-3141592
"""
ENV = {"PGPW": "pg-very-secret", "APP_PW": "app-pw-77"}


@pytest.fixture()
def session(tmp_path):
    path = tmp_path / "reconcile.yaml"
    path.write_text(textwrap.dedent(SPEC))
    return Session(load_spec(path, ENV), environ=ENV)


def test_redactor_masks_env_values_and_interpolated_parts(session):
    redact = Redactor.for_spec(session.loaded)
    text = ("connect postgresql://app:app-pw-77@postgres:5432/shop with pg-very-secret, "
            "token tok-3141592, db shop, flag no, tag 16")
    out = redact(text)
    for secret in ("app-pw-77", "pg-very-secret", "tok-3141592", "postgresql://app:"):
        assert secret not in out
    assert out.count(MASK) == 3  # the URL (an env value) is masked whole
    assert "db shop" in out  # POSTGRES_DB is the project's name, public: every container bears it
    assert "flag no" in out and "tag 16" in out  # shorter than 4: left alone
    # the image tag (16) is interpolated too, but shown: an image reference holds no secret
    assert sorted(interpolated_values(session.loaded)) == ["app-pw-77", "pg-very-secret"]


def test_service_redactor_masks_its_own_env_and_all_interpolations(session):
    redact = Redactor.for_service(session.loaded, "postgres")
    assert redact("tok-3141592 app-pw-77 pg-very-secret") == f"tok-3141592 {MASK} {MASK}"


def test_longest_value_is_masked_first_and_data_is_walked():
    redact = Redactor(["abcd", "abcdefgh"])
    assert redact("abcdefgh abcd") == f"{MASK} {MASK}"
    assert redact.redact_data({"k": ["xabcdx", 3, {"abcd": "abcd"}]}) == {
        "k": [f"x{MASK}x", 3, {"abcd": MASK}]}
    assert Redactor([]).redact("anything") == "anything"


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_run_log_is_private_redacted_json_lines(session):
    with runlog.open_run(session, "backup") as log:
        log.event("progress", message="dumping with password pg-very-secret")
        log.progress(None)("copying to S3")
        log.event("result", backup_id="2026-01-05-020000", storage={"local": "ok"}, event="x")
    folder = session.state_dir() / "logs"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(log.path.stat().st_mode) == 0o600
    assert log.path.name.startswith("backup-") and log.path.suffix == ".jsonl"
    records = read(log.path)
    assert [r["event"] for r in records] == ["run-start", "progress", "progress", "result", "run-finish"]
    assert records[-1]["result"] == "ok" and all(r["run"] == "backup" for r in records)
    assert "pg-very-secret" not in log.path.read_text() and MASK in records[1]["message"]
    assert records[3]["event"] == "result" and records[3]["_event"] == "x"


def test_a_failed_run_ends_with_the_error(session):
    with pytest.raises(BackupError):
        with runlog.open_run(session, "restore") as log:
            raise BackupError("dump failed for app-pw-77", ref="backup.dump", hint="check it")
    last = read(log.path)[-1]
    assert last["event"] == "run-finish" and last["result"] == "failed"
    assert last["error"]["error"] == "backup.dump" and "app-pw-77" not in log.path.read_text()
    log.event("late")  # a closed log ignores further events
    assert read(log.path)[-1]["event"] == "run-finish"


def test_two_runs_in_one_second_get_two_files(session):
    now = datetime(2026, 1, 5, 2, 0, 0, tzinfo=UTC)
    first = runlog.open_run(session, "deploy", now)
    second = runlog.open_run(session, "deploy", now)
    first.close(), second.close()
    assert first.path.name == "deploy-20260105T020000Z.jsonl"
    assert second.path.name == "deploy-20260105T020000Z-2.jsonl"


def test_logs_older_than_30_days_are_pruned_when_a_run_opens(session):
    folder = session.state_dir() / "logs"
    folder.mkdir(parents=True)
    now = datetime(2026, 3, 1, tzinfo=UTC)
    old = folder / "backup-20260101T020000Z.jsonl"
    recent = folder / "restore-20260215T020000Z.jsonl"
    odd = folder / "notes.jsonl"
    for path in (old, recent, odd):
        path.write_text("{}\n")
    stale = (now - timedelta(days=40)).timestamp()
    os.utime(odd, (stale, stale))
    runlog.open_run(session, "deploy", now).close()
    names = sorted(p.name for p in folder.iterdir())
    assert old.name not in names and odd.name not in names and recent.name in names
    assert any(n.startswith("deploy-20260301") for n in names)


def test_unknown_kind_is_refused(session):
    with pytest.raises(ValueError):
        runlog.open_run(session, "party")
