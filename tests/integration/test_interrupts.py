"""Ctrl-C and SIGTERM during a data command: exit 130 with what was left, never in silence,
and what is said is true (no files kept, the live database untouched).

The command is held at a chosen point by a wrapper script (it writes a marker, then waits),
so the signal arrives there every time, not at whatever moment a sleep would hit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.integration.conftest import materialise

pytestmark = pytest.mark.engine

SPEC = """\
version: 1
project: {project}
state_dir: ./state
volumes: { data: {}, pgdata: {} }
services:
  files:
    kind: generic
    image: reconcile-lab/nginx:latest
    volumes: ["data:/srv/data"]
    stateful: true
  postgres:
    kind: postgres
    image: reconcile-lab/postgres:15
    env: { POSTGRES_PASSWORD: "interrupt-pw", POSTGRES_DB: shop }
    volumes: ["pgdata:/var/lib/postgresql/data"]
    stateful: true
    backup: { databases: [shop] }
backup:
  local: { path: ./backups }
"""
# Runs the CLI with one method replaced by: do a little of the work, write the marker, wait.
HELD = """
import sys, time
from pathlib import Path
import {module} as held
original = held.{cls}.{method}
def waiting(self, *args, **kwargs):
    {before}
    Path({marker!r}).write_text("here")
    time.sleep(120)
    return original(self, *args, **kwargs)
held.{cls}.{method} = waiting
from reconciler.cli.launch import main
sys.argv[0] = "reconcile"
main()
"""


def held_at(loaded, tmp_path, where: str, args: list[str], before: str = "pass") -> subprocess.Popen:
    module, cls, method = where.rsplit(".", 2)
    marker = tmp_path / "held"
    script = HELD.format(module=module, cls=cls, method=method, marker=str(marker), before=before)
    process = subprocess.Popen([sys.executable, "-c", script, "-f", str(loaded.file), *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "NO_COLOR": "1"})
    deadline = time.monotonic() + 120
    while not marker.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"never reached {where}: {process.communicate()}")
        time.sleep(0.1)
    return process


def stopped(process: subprocess.Popen, sig: signal.Signals) -> tuple[int, str, str]:
    process.send_signal(sig)
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def cli(loaded, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reconciler", "-f", str(loaded.file), *args],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "NO_COLOR": "1"})


def test_an_interrupted_backup_keeps_nothing_and_says_so(client, write_spec, tmp_path):
    loaded = write_spec(SPEC)
    materialise(client, loaded, ["files"])
    # part of the archive is written when the signal comes
    process = held_at(loaded, tmp_path, "reconciler.engines.volume.VolumeEngine.backup", ["backup", "files"],
                      before="args[1].write(b'x' * 70000)")
    code, _, err = stopped(process, signal.SIGINT)
    assert code == 130, err
    assert "interrupted: no backup was kept" in err, err
    backups = loaded.file.parent / "backups"
    assert not [p for p in backups.rglob("*") if p.is_file()], list(backups.rglob("*"))

    (tmp_path / "held").unlink()
    process = held_at(loaded, tmp_path, "reconciler.engines.volume.VolumeEngine.backup",
                      ["backup", "files", "--json"], before="args[1].write(b'x' * 70000)")
    code, out, _ = stopped(process, signal.SIGTERM)  # systemd stop, a cancelled CI job
    assert code == 130
    report = json.loads(out)
    assert report["error"] == "interrupted"
    assert report["message"].startswith("stopped by SIGTERM: no backup was kept"), report
    assert not [p for p in backups.rglob("*") if p.is_file()]


def test_an_interrupted_postgres_restore_says_the_live_database_is_unchanged(client, write_spec, tmp_path):
    loaded = write_spec(SPEC)
    container = materialise(client, loaded, ["postgres"])["postgres"]

    def psql(sql: str, db: str = "shop") -> str:
        deadline = time.monotonic() + 60
        while True:
            exec_id = client.api.exec_create(container, ["psql", "-U", "postgres", "-d", db, "-qAt", "-c", sql])["Id"]
            output = client.api.exec_start(exec_id).decode().strip()
            if client.api.exec_inspect(exec_id)["ExitCode"] == 0:
                return output
            if time.monotonic() > deadline:
                pytest.fail(output)
            time.sleep(1)

    psql("CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 1000) g")
    backup = cli(loaded, "backup", "postgres")
    assert backup.returncode == 0, backup.stderr
    psql("INSERT INTO t SELECT g FROM generate_series(1001, 1500) g")  # newer than the backup

    # loaded and checked in the staging copy, not yet swapped in
    process = held_at(loaded, tmp_path, "reconciler.engines.postgres.PostgresEngine._swap_all",
                      ["restore", "latest", "postgres", "--yes"])
    code, _, err = stopped(process, signal.SIGINT)
    assert code == 130, err
    assert "interrupted: postgres's live databases are unchanged" in err, err
    assert psql("SELECT count(*) FROM t") == "1500"
    assert psql("SELECT datname FROM pg_database ORDER BY 1", db="postgres").split() == \
        ["postgres", "shop", "template0", "template1"]  # the staging copy is dropped


# Ctrl-C at the worst moment of a restore's swap: shop's new copy has just been renamed into
# place, and the drop of its previous copy is about to start.
CTRL_C_AFTER_THE_RENAME = """
import os, signal, sys
from reconciler.engines import pgswap
real_drop = pgswap.drop_database
def drop(admin, name):
    if name == pgswap.retired_name("shop") and pgswap.exists(admin, name):
        os.kill(os.getpid(), signal.SIGINT)
    real_drop(admin, name)
pgswap.drop_database = drop
from reconciler.cli.launch import main
sys.argv[0] = "reconcile"
main()
"""


def test_ctrl_c_during_the_swap_names_the_replaced_database_and_leaves_no_half_dropped_copy(
        client, write_spec):
    loaded = write_spec(SPEC.replace("databases: [shop]", "databases: [shop, extra]"))
    container = materialise(client, loaded, ["postgres"])["postgres"]

    def psql(sql: str, db: str = "shop") -> str:
        deadline = time.monotonic() + 60
        while True:
            exec_id = client.api.exec_create(container, ["psql", "-U", "postgres", "-d", db, "-qAt", "-c", sql])["Id"]
            output = client.api.exec_start(exec_id).decode().strip()
            if client.api.exec_inspect(exec_id)["ExitCode"] == 0:
                return output
            if time.monotonic() > deadline:
                pytest.fail(output)
            time.sleep(1)

    psql("CREATE DATABASE extra", db="postgres")
    for db in ("shop", "extra"):
        psql("CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 1000) g", db=db)
    backup = cli(loaded, "backup", "postgres")
    assert backup.returncode == 0, backup.stderr
    for db in ("shop", "extra"):
        psql("INSERT INTO t SELECT g FROM generate_series(1001, 1500) g", db=db)  # newer than the backup

    restore = subprocess.run([sys.executable, "-c", CTRL_C_AFTER_THE_RENAME, "-f", str(loaded.file),
                              "restore", "latest", "postgres", "--yes"], capture_output=True, text=True,
                             timeout=300, env={**os.environ, "NO_COLOR": "1"})
    assert restore.returncode == 130, restore.stderr
    assert "database shop replaced, database extra not: restore again" in restore.stderr, restore.stderr
    assert "unchanged" not in restore.stderr, restore.stderr
    assert psql("SELECT count(*) FROM t") == "1000"  # shop is the backup's
    assert psql("SELECT count(*) FROM t", db="extra") == "1500"  # extra was left as it was
    assert psql("SELECT datname FROM pg_database WHERE datname LIKE '%reconcile%'", db="postgres") == ""

    again = cli(loaded, "restore", "latest", "postgres", "--yes")
    assert again.returncode == 0, again.stderr
    assert psql("SELECT count(*) FROM t", db="extra") == "1000"


def test_a_service_whose_restore_stopped_halfway_is_not_backed_up_and_its_backup_is_kept(client, write_spec):
    """QA: after a cache restore was cut off, the nightly backup took the half-refilled data as
    a good backup, and its retention deleted the full backup the restore had been loading, in
    both stores. A service with a restore on record is skipped (a warning, exit 1), and no
    prune deletes the backup that restore names."""
    from reconciler.backup import restoring

    loaded = write_spec(SPEC.replace("backup:\n  local: { path: ./backups }\n",
                                     "backup:\n  local: { path: ./backups }\n  retention: { daily: 1, weekly: 0, "
                                     "monthly: 0 }\n"))
    materialise(client, loaded)
    deadline = time.monotonic() + 90
    while cli(loaded, "health", "postgres").returncode != 0 and time.monotonic() < deadline:
        time.sleep(1)
    first = cli(loaded, "backup", "--no-prune", "--json")
    assert first.returncode == 0, first.stderr
    full = json.loads(first.stdout)["backup_id"]
    assert cli(loaded, "backup", "--no-prune").returncode == 0  # a newer one: retention (daily: 1) prefers it
    restoring.begin(loaded.state_dir(), "files", full, running=True)  # a restore of the older, cut off
    second = cli(loaded, "backup", "--json")
    assert second.returncode == 1, second.stderr
    taken = json.loads(second.stdout)
    assert set(taken["services"]) == {"postgres"}
    assert any("files was not backed up" in w and f"reconcile restore {full} files --yes" in w
               for w in taken["warnings"]), taken["warnings"]
    listed = {row["backup_id"]: row for row in json.loads(cli(loaded, "backups", "list", "--json").stdout)}
    assert full in listed and "files" in listed[full]["services"]  # the restore's backup, kept whatever retention says
    only = cli(loaded, "backup", "files")
    assert only.returncode == 1 and "error[backup.restore-interrupted]" in only.stderr, only.stderr
