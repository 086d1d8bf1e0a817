"""QA of running out of disk: a backup that fills the backups folder, a full state dir, and a
restore the database server's own disk cannot hold. Real engine, real tmpfs mounts (the lab's
tests run as root), no mocks."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from reconciler.engines import container_ip
from reconciler.health import Level, wait_healthy
from reconciler.session import Session
from tests.integration.conftest import materialise, purge

pytestmark = pytest.mark.engine

PASSWORD = "pw-" + secrets.token_hex(8)
PAGE = 4096


@pytest.fixture()
def project(client) -> Iterator[str]:
    name = f"qadisk-{secrets.token_hex(3)}"
    yield name
    purge(client, name)


@pytest.fixture()
def small_disk(tmp_path) -> Iterator[callable]:
    """``small_disk(name, size)``: a tmpfs of its own, so it fills without filling the host."""
    mounted: list[Path] = []

    def mount(name: str, size: str) -> Path:
        folder = tmp_path / name
        folder.mkdir(mode=0o777)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=1777", "tmpfs", str(folder)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.fail(f"cannot mount a tmpfs (the lab's tests run as root): {done.stderr}", pytrace=False)
        mounted.append(folder)
        return folder
    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def cli(spec: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "reconciler", "-f", str(spec), *args], capture_output=True,
                            text=True, timeout=300, env={**os.environ, "NO_COLOR": "1", "QA_PW": PASSWORD})
    assert PASSWORD not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result


def fill(folder: Path, leave_pages: int = 0) -> None:
    """Fill the disk holding ``folder`` to the last byte, then give ``leave_pages`` back."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as sink:
        for size in (1 << 20, PAGE, 1):
            try:
                while True:
                    sink.write(b"\0" * size)
            except OSError:
                continue
    os.truncate(filler, max(0, filler.stat().st_size - leave_pages * PAGE))


def started(client, loaded, services: list[str]) -> Session:
    session = Session(loaded, environ={**os.environ, "QA_PW": PASSWORD})
    materialise(client, loaded)
    for service in services:
        health = wait_healthy(session, service, f"{loaded.spec.project}-{service}", timeout=90)
        assert health.level is Level.HEALTHY, health
    return session


CACHE = """\
version: 1
project: {project}
state_dir: ./state
networks: { net: {} }
services:
  cache:
    kind: redis
    image: reconcile-lab/redis:7
    command: ["redis-server", "--requirepass", "${env:QA_PW}"]
    networks: [net]
    stateful: true
backup:
  local: { path: "${env:QA_BACKUPS}" }
"""


def test_a_cache_backup_that_fills_the_disk_says_so_and_keeps_nothing(client, write_spec, small_disk, monkeypatch):
    """The cache's backup ran out of disk: the error asked whether the cache was up and its
    password right (the cache engine's hint for any OSError), naming no file and no disk."""
    backups = small_disk("backups", "8m") / "backups"
    monkeypatch.setenv("QA_BACKUPS", str(backups))
    monkeypatch.setenv("QA_PW", PASSWORD)
    loaded = write_spec(CACHE)
    session = started(client, loaded, ["cache"])
    cache = redis.Redis(host=container_ip(session.container_doc("cache")), password=PASSWORD)
    cache.set("small", "x")
    first = cli(loaded.file, "backup", "--json", "--no-prune")  # small: the next check goes by its size
    assert first.returncode == 0, first.stderr
    held = sorted(p.relative_to(backups) for p in backups.rglob("*") if p.is_file())
    for i in range(100):  # ~10 MiB that no compression shrinks, on an 8 MiB disk
        cache.set(f"k{i}", os.urandom(100_000))

    result = cli(loaded.file, "backup", "--no-prune")
    assert result.returncode == 1, result.stdout
    assert "disk full" in result.stderr and str(backups / "cache") in result.stderr, result.stderr
    assert "password" not in result.stderr and "hint: free space" in result.stderr, result.stderr
    assert sorted(p.relative_to(backups) for p in backups.rglob("*") if p.is_file()) == held  # no partial file
    assert cache.dbsize() == 101


WEB = """\
version: 1
project: {project}
state_dir: "${env:QA_STATE}"
networks: { net: {} }
services:
  web:
    image: reconcile-lab/nginx:latest
    env: { MODE: one }
    networks: [net]
backup:
  local: { path: ./backups }
"""


def test_a_full_state_dir_refuses_apply_before_any_change(client, write_spec, small_disk, monkeypatch, project):
    """A full disk under the state dir: apply (and backup) died with a traceback writing the run
    log; with room for the run log only, writing the journal. Now: exit 1, the file and the hint,
    nothing changed; once there is room the same apply goes through."""
    disk = small_disk("state", "2m")
    monkeypatch.setenv("QA_STATE", str(disk / "state"))
    loaded = write_spec(WEB)
    started(client, loaded, ["web"])
    before = client.api.inspect_container(f"{project}-web")["Id"]
    loaded.file.write_text(WEB.replace("{project}", project).replace("MODE: one", "MODE: two"))
    fill(disk)

    result = cli(loaded.file, "apply", "--auto-approve")
    assert result.returncode == 1, result.stdout
    assert "cannot write the run log" in result.stderr and "the disk is full" in result.stderr, result.stderr
    assert "hint: free space on the disk holding" in result.stderr and "state_dir" in result.stderr
    assert cli(loaded.file, "backup").returncode == 1

    fill(disk, leave_pages=1)  # the run log's first line fits, the journal's does not
    result = cli(loaded.file, "apply", "--auto-approve")
    assert result.returncode == 1, result.stdout
    assert "cannot write the apply journal" in result.stderr, result.stderr
    assert client.api.inspect_container(f"{project}-web")["Id"] == before

    (disk / "filler").unlink()
    assert cli(loaded.file, "apply", "--auto-approve").returncode == 0
    assert client.api.inspect_container(f"{project}-web")["Id"] != before


POSTGRES = """\
version: 1
project: {project}
state_dir: ./state
networks: { net: {} }
services:
  postgres:
    kind: postgres
    image: reconcile-lab/postgres:15
    env: { POSTGRES_PASSWORD: "${env:QA_PW}", POSTGRES_DB: app, PGDATA: /var/lib/postgresql/data/pg }
    volumes: ["${env:QA_PGDISK}:/var/lib/postgresql/data"]
    networks: [net]
    stateful: true
backup:
  local: { path: ./backups }
"""


def test_a_restore_the_servers_disk_cannot_hold_is_refused_before_any_change(client, write_spec, small_disk,
                                                                           monkeypatch):
    """The staging copy a restore loads beside the live database filled the server's disk:
    PostgreSQL PANICked at its next checkpoint and stayed in a crash loop (the staging files
    holding the space), while the error blamed "the server and the password in the spec"."""
    disk = small_disk("pgdisk", "200m")
    monkeypatch.setenv("QA_PGDISK", str(disk))
    monkeypatch.setenv("QA_PW", PASSWORD)
    loaded = write_spec(POSTGRES)
    session = started(client, loaded, ["postgres"])
    dsn = f"postgresql://postgres:{PASSWORD}@{container_ip(session.container_doc('postgres'))}:5432/app"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id serial PRIMARY KEY, body text)")
        conn.execute("INSERT INTO t (body) SELECT repeat(md5(g::text), 8) FROM generate_series(1, 50000) g")
        conn.execute("CHECKPOINT")
    done = cli(loaded.file, "backup", "--json", "--no-prune")
    assert done.returncode == 0, done.stderr
    size = json.loads(done.stdout)["services"]["postgres"]["stats"]["databases"][0]["size_bytes"]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM t WHERE id > 40000")
    used = os.statvfs(disk)
    taken = (used.f_blocks - used.f_bfree) * used.f_frsize
    subprocess.run(["mount", "-o", f"remount,size={taken + size // 2}", str(disk)], check=True)

    result = cli(loaded.file, "restore", "latest", "--yes")
    assert result.returncode == 1, result.stdout
    assert "not enough free space on postgres's data disk" in result.stderr, result.stderr
    assert "the live databases are unchanged" in result.stderr
    with psycopg.connect(dsn, autocommit=True) as conn:  # up, and its data as it was
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 40000

    subprocess.run(["mount", "-o", f"remount,size={taken + 3 * size}", str(disk)], check=True)
    result = cli(loaded.file, "restore", "latest", "--yes")  # room enough: not refused
    assert result.returncode == 0, result.stderr
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 50000


def test_a_restore_killed_out_of_memory_says_so(client, write_spec, monkeypatch, tmp_path, project):
    """A cache whose memory limit is below its backup's data was OOM-killed mid-restore: the error
    said "Connection reset by peer" and to run the restore again, which is killed again."""
    monkeypatch.setenv("QA_BACKUPS", str(tmp_path / "backups"))
    monkeypatch.setenv("QA_PW", PASSWORD)
    loaded = write_spec(CACHE)
    session = started(client, loaded, ["cache"])
    cache = redis.Redis(host=container_ip(session.container_doc("cache")), password=PASSWORD)
    for i in range(400):  # ~40 MiB
        cache.set(f"k{i}", os.urandom(100_000))
    assert cli(loaded.file, "backup", "--no-prune").returncode == 0
    cache.flushall()
    name = f"{project}-cache"
    for _ in range(50):  # the engine refuses a limit below what the container uses at that moment
        try:
            client.api.update_container(name, mem_limit="30m", memswap_limit="30m")
            break
        except Exception:  # noqa: BLE001 - the freed memory is not given back at once
            time.sleep(0.2)
    assert client.api.inspect_container(name)["HostConfig"]["Memory"] == 30 * 1024 * 1024

    result = cli(loaded.file, "restore", "latest", "--yes")
    assert result.returncode == 1, result.stdout
    assert "killed out of memory (OOMKilled, memory limit 30.0 MiB)" in result.stderr, result.stderr
    assert "hint: give cache more memory (its mem_limit" in result.stderr


def test_a_backup_of_a_paused_server_says_it_is_paused(client, write_spec, monkeypatch, tmp_path, project):
    """A paused cache (docker pause): the backup waited for its connection to time out, then
    asked whether the cache was up and its password right."""
    monkeypatch.setenv("QA_BACKUPS", str(tmp_path / "backups"))
    monkeypatch.setenv("QA_PW", PASSWORD)
    loaded = write_spec(CACHE)
    started(client, loaded, ["cache"])
    client.api.pause(f"{project}-cache")
    try:
        began = time.monotonic()
        result = cli(loaded.file, "backup", "--no-prune")
        assert result.returncode == 1, result.stdout
        assert f"container {project}-cache is paused" in result.stderr, result.stderr
        assert f"hint: unpause it: docker unpause {project}-cache" in result.stderr
        assert "password" not in result.stderr and time.monotonic() - began < 8
    finally:
        client.api.unpause(f"{project}-cache")
    assert cli(loaded.file, "backup", "--no-prune").returncode == 0


def test_a_restore_over_the_caches_maxmemory_does_not_say_to_run_it_again_as_it_is(client, write_spec, monkeypatch,
                                                                                   tmp_path):
    """A cache whose maxmemory is below the backup's data refused the keys ("OOM command not
    allowed"): the hint said to run the restore again, which fails the same way."""
    monkeypatch.setenv("QA_BACKUPS", str(tmp_path / "backups"))
    monkeypatch.setenv("QA_PW", PASSWORD)
    loaded = write_spec(CACHE)
    session = started(client, loaded, ["cache"])
    cache = redis.Redis(host=container_ip(session.container_doc("cache")), password=PASSWORD)
    for i in range(100):  # ~10 MiB
        cache.set(f"k{i}", os.urandom(100_000))
    assert cli(loaded.file, "backup", "--no-prune").returncode == 0
    cache.config_set("maxmemory", "4mb")

    result = cli(loaded.file, "restore", "latest", "--yes")
    assert result.returncode == 1, result.stdout
    assert "OOM command not allowed" in result.stderr, result.stderr
    assert "hint: raise the cache's maxmemory" in result.stderr and "hint: run the restore again" not in result.stderr
