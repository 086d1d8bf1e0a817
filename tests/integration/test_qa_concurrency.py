"""QA of commands run at the same time on one stack, as real parallel processes: a backup's
retention (or ``backups prune``) must never delete a backup another process is still writing,
restoring from or about to restore (an apply's own). Each test waits on what the other process
shows (a line it printed, a request the S3 proxy saw) and holds it there with SIGSTOP, so the
overlap is the same on every run.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest_s3 import S3Endpoint, empty_and_remove_bucket, raw_client
from tests.faultproxy import Action, FaultProxy, Rule
from tests.integration.apply_support import ROOT, pg_stack, psql, show, wait_for
from tests.integration.conftest import purge

pytestmark = pytest.mark.engine


@pytest.fixture()
def project(client):
    name = f"qaconc-{secrets.token_hex(3)}"
    yield name
    purge(client, name)


@pytest.fixture()
def spawned(project):
    """The processes a test started: any still running when it ends (a failed assertion) is
    killed before its project's containers are removed."""
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.kill()
            process.wait()


def command(spec: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "reconciler", "-f", str(spec), *args]


def run(spec: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(command(spec, *args), capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert "Traceback" not in result.stderr, show(result)
    return result


def spawn(spawned: list, spec: Path, env: dict, *args: str, **pipes) -> subprocess.Popen:
    spawned.append(subprocess.Popen(command(spec, *args), text=True, env=env, cwd=ROOT, **pipes))
    return spawned[-1]


def read_until(stream, marker: str) -> list[str]:
    """Lines of ``stream`` up to the first holding ``marker`` (the process is at that point)."""
    lines = []
    for line in stream:
        lines.append(line)
        if marker in line:
            return lines
    raise AssertionError(f"never printed {marker!r}:\n{''.join(lines)}")


def backup_ids(spec: Path, env: dict, count: int) -> list[str]:
    """``count`` backups one after the other, no retention: the same day, so retention keeps the
    newest and (the daily policy has room) the oldest, and deletes those between."""
    ids = []
    for _ in range(count):
        taken = run(spec, env, "backup", "--no-prune", "--json")
        assert taken.returncode == 0, show(taken)
        ids.append(json.loads(taken.stdout)["backup_id"])
    return ids


def records(backups: Path) -> dict[str, dict]:
    return {json.loads(p.read_text())["backup_id"]: json.loads(p.read_text())
            for p in (backups / "metadata").glob("backup-*.json")}


def assert_whole(backups: Path, record: dict) -> None:
    """Every file the local record names is there with the recorded checksum."""
    for entry in record["services"].values():
        path = backups / entry["key"]
        assert path.is_file(), f"backup {record['backup_id']}'s record names {entry['key']}, which is gone"
        assert "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest() == entry["checksum"]


STACK = """\
version: 1
project: {project}
state_dir: ./state
services:
  postgres:
    kind: postgres
    image: reconcile-lab/postgres:15
    env: { POSTGRES_PASSWORD: qaconc-pw, POSTGRES_DB: app }
    stateful: true
    backup: { databases: [app] }
  cache:
    kind: redis
    image: reconcile-lab/redis:7
    stateful: true
  api:
    image: reconcile-lab/nginx:latest
    depends_on: { postgres: healthy, cache: healthy }
backup:
  local: { path: ./backups }
"""


def test_a_prune_keeps_the_backup_a_running_restore_reads(client, write_spec, project, spawned):
    loaded = write_spec(STACK)
    spec, env, backups = loaded.file, {**os.environ, "NO_COLOR": "1"}, loaded.file.parent / "backups"
    assert run(spec, env, "apply", "--auto-approve").returncode == 0
    psql(client, f"{project}-postgres", "create table t (id int primary key); "
                                        "insert into t select generate_series(1, 20000)", db="app")
    client.api.exec_start(client.api.exec_create(f"{project}-cache", ["redis-cli", "set", "k", "v"])["Id"])
    _, middle, _ = backup_ids(spec, env, 3)
    assert f"postgres-{middle}" in run(spec, env, "backups", "prune", "--dry-run").stdout  # retention's pick

    restore = spawn(spawned, spec, env, "restore", middle, "--yes", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        read_until(restore.stderr, "restoring postgres from local copy")  # the cache's file is opened after it
        restore.send_signal(signal.SIGSTOP)
        drift = run(spec, env, "drift")  # was: "Not judged: an apply is changing the stack."
        assert drift.returncode == 0 and "Not judged: a restore is changing the stack." in drift.stdout, show(drift)
        pruned = run(spec, env, "backups", "prune", "--json")
        assert pruned.returncode == 0, show(pruned)
        assert not [key for key in json.loads(pruned.stdout)[0]["deleted"] if middle in key]
    finally:
        restore.send_signal(signal.SIGCONT)
    out, err = restore.communicate(timeout=300)
    assert restore.returncode == 0, out + err  # was: FileNotFoundError traceback, a half-restored stack
    assert "Traceback" not in err and f"Restored backup {middle}" in out
    assert_whole(backups, records(backups)[middle])
    assert not list((backups / "metadata").glob(".*reserved"))  # its hold on the backup ended with it
    again = run(spec, env, "backups", "prune", "--json")  # nothing holds it now: retention takes it
    assert any(middle in key for key in json.loads(again.stdout)[0]["deleted"])


CACHE = """\
version: 1
project: {project}
state_dir: ./state
services:
  cache:
    kind: redis
    image: reconcile-lab/redis:7
    stateful: true
backup:
  local: { path: ./backups }
  s3:
    enabled: true
    endpoint: "${env:S3_ENDPOINT}"
    bucket: "${env:S3_BUCKET}"
    region: us-east-1
"""


@pytest.mark.s3
def test_a_backups_retention_keeps_another_backup_still_copying_to_s3(client, write_spec, project, spawned,
                                                                     s3_endpoint: S3Endpoint):
    bucket = f"qaconc-{secrets.token_hex(4)}"
    env = {**os.environ, **s3_endpoint.environ, "NO_COLOR": "1", "S3_ENDPOINT": s3_endpoint.url, "S3_BUCKET": bucket}
    raw_client(s3_endpoint).create_bucket(Bucket=bucket)
    try:
        with FaultProxy(s3_endpoint.url) as proxy:
            loaded = write_spec(CACHE, environ=env)
            spec, backups = loaded.file, loaded.file.parent / "backups"
            assert run(spec, env, "apply", "--auto-approve").returncode == 0
            [oldest] = backup_ids(spec, env, 1)
            proxy.add(Rule(Action.STALL_UPLOAD, "PUT", r"/cache/cache-", seconds=120))
            slow = spawn(spawned, spec, {**env, "S3_ENDPOINT": proxy.url}, "backup", "--no-prune",
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                read_until(slow.stderr, "to S3")
                wait_for(lambda: proxy.count("PUT", r"/cache/cache-") or slow.poll() is not None)
                assert slow.poll() is None, "the backup ended before its S3 copy was held"  # held: it cannot end
                [copying] = [i for i, doc in records(backups).items() if doc["storage"]["s3"] == "pending"]
                newest = run(spec, env, "backup", "--json")  # its retention runs while the other copies
                assert newest.returncode == 0, show(newest)
                local_prune = json.loads(newest.stdout)["pruned"][0]
                assert not [key for key in local_prune["deleted"] if copying in key], local_prune
            finally:
                proxy.stop()  # the held upload fails: that backup ends, its S3 copy "failed", local whole
                out, err = slow.communicate(timeout=120)
        assert slow.returncode == 1 and "Traceback" not in err, out + err
        kept = records(backups)
        assert {oldest, copying} <= set(kept), kept
        assert kept[copying]["storage"] == {"local": "ok", "s3": "failed"}
        assert_whole(backups, kept[copying])  # was: its record named the file the other's retention deleted
    finally:
        empty_and_remove_bucket(raw_client(s3_endpoint), bucket)


def test_a_backup_during_an_apply_never_prunes_the_backup_the_apply_restores(client, project, tmp_path,
                                                                               spawned):
    spec, env, container, rows = pg_stack(client, project, tmp_path, rows=2000)
    backups = tmp_path / "backups"
    backup_ids(spec, env, 1)  # an older one today: the apply's becomes the middle one
    upgrade = {**env, "LAB_PG_VERSION": "17"}
    applying = spawn(spawned, spec, upgrade, "apply", "--auto-approve",
                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        said = read_until(applying.stdout, "ok  backup:postgres")
        applying.send_signal(signal.SIGSTOP)
        ours = said[-1].split("→ ")[1].split()[0]
        cron = run(spec, env, "backup", "--json")  # a scheduled backup, and its retention, meanwhile
        assert cron.returncode == 0, show(cron)
        assert not [key for key in json.loads(cron.stdout)["pruned"][0]["deleted"] if ours in key]
        applying.send_signal(signal.SIGCONT)
        said += read_until(applying.stdout, f"    stop {project}-postgres-old")  # renamed away: none to back up
        applying.send_signal(signal.SIGSTOP)
        missing = run(spec, env, "backup")
        assert missing.returncode == 1, show(missing)
        assert "an apply is changing the stack" in missing.stderr, show(missing)  # was: hint "run `reconcile apply`"
        assert "reconcile apply` to create it" not in missing.stderr, show(missing)
    finally:
        applying.send_signal(signal.SIGCONT)
    out, _ = applying.communicate(timeout=600)
    assert applying.returncode == 0, "".join(said) + out  # was: exit 2, its backup deleted before its restore
    assert f"ok  restore:postgres → {ours}" in out
    assert psql(client, container, "select count(*) from users") == "2000"
    assert not list((backups / "metadata").glob(".*reserved"))  # the apply let go of its backup


LOCAL_CACHE = """\
version: 1
project: {project}
state_dir: ./state
services:
  cache:
    kind: redis
    image: reconcile-lab/redis:7
    stateful: true
backup:
  local: { path: ./backups }
"""


def test_verify_during_a_cache_restore_says_a_restore_runs_not_that_keys_are_missing(client, write_spec, project,
                                                                                      spawned):
    loaded = write_spec(LOCAL_CACHE)
    spec, env = loaded.file, {**os.environ, "NO_COLOR": "1"}
    assert run(spec, env, "apply", "--auto-approve").returncode == 0
    fill = "for i in $(seq 1 100000); do echo \"SET key$i value$i\"; done | redis-cli --pipe"
    client.api.exec_start(client.api.exec_create(f"{project}-cache", ["sh", "-c", fill])["Id"])
    backup_ids(spec, env, 1)
    record = loaded.file.parent / "state" / "restoring" / "cache.json"  # written before the flush

    restore = spawn(spawned, spec, env, "restore", "latest", "cache", "--yes",
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: record.exists() or restore.poll() is not None)
        restore.send_signal(signal.SIGSTOP)
        assert record.exists(), "the restore ended before it could be held mid-way"
        checked = run(spec, env, "verify", "latest")
        assert checked.returncode == 1, show(checked)  # was: exit 2, "expected 100000, found 74000"
        assert "a restore is replacing the data of cache" in checked.stderr, show(checked)
    finally:
        restore.send_signal(signal.SIGCONT)
    out, err = restore.communicate(timeout=300)
    assert restore.returncode == 0, out + err
    assert run(spec, env, "verify", "latest").returncode == 0
