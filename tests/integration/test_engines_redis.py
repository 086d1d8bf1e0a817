"""The cache engine against a real Redis: every type, binary keys, TTLs, truncation refused."""

from __future__ import annotations

import io
import os
import secrets
import time

import pytest
import redis

from reconciler import dockerio
from reconciler.engines import container_ip, engine_for, make_target
from reconciler.engines.base import ProbeStatus
from reconciler.engines.compress import CompressingWriter, DecompressingReader
from reconciler.errors import RestoreError
from reconciler.spec.load import load_spec
from reconciler.spec.models import Compression, Kind
from tests.integration.apply_support import cli
from tests.integration.conftest import materialise, purge

pytestmark = pytest.mark.engine

SPEC = """\
version: 1
project: {project}
services:
  cache:
    profile: infrastructure
    kind: redis
    image: reconcile-lab/redis:7
    stateful: true
"""
BINARY_KEY = b"\xff\x00bin\x80\r\nkey"
BINARY_VALUE = bytes(range(256)) + os.urandom(1000)


@pytest.fixture(scope="module")
def running(client, tmp_path_factory):
    project = f"it-{secrets.token_hex(3)}"
    path = tmp_path_factory.mktemp("cache") / "reconcile.yaml"
    path.write_text(SPEC.replace("{project}", project))
    loaded = load_spec(path, dict(os.environ))
    try:
        ids = materialise(client, loaded)
        doc = dockerio.inspect_container(client, ids["cache"])
        target = make_target("cache", loaded.spec.services["cache"], ids["cache"],
                             container_ip(doc))
        engine = engine_for(Kind.REDIS, client)
        wait_healthy(engine, target)
        yield target, engine
    finally:
        purge(client, project)


@pytest.fixture()
def cache(running):
    target, engine = running
    conn = redis.Redis(host=target.host, port=6379)
    conn.flushall()
    yield target, engine, conn
    conn.close()


def wait_healthy(engine, target, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if engine.probe(target, timeout=2).status is ProbeStatus.HEALTHY:
            return
        time.sleep(0.3)
    pytest.fail(f"cache did not become healthy: {engine.probe(target, 2)}")


def fill(conn: redis.Redis) -> None:
    conn.set("string", "plain value")
    conn.set(BINARY_KEY, BINARY_VALUE)
    conn.set("unicode:ключ", "värde ✓")
    conn.hset("hash", mapping={"a": "1", b"\xfe": b"\x00\x01", "long": "x" * 5000})
    conn.rpush("list", "one", "two", b"\x80\x81", "two")
    conn.sadd("set", "x", "y", b"\x00z")
    conn.zadd("zset", {"low": -1.5, "mid": 0, "high": 1e10})
    for i in range(5):
        conn.xadd("stream", {"n": str(i), "blob": os.urandom(16)})
    conn.set("ttl:long", "expires later", ex=3600)
    conn.hset("ttl:hash", "f", "v")
    conn.pexpire("ttl:hash", 120_000)
    conn.mset({f"bulk:{i}": f"value {i}" for i in range(3000)})
    conn.select(3)
    conn.set("other-db", "in db 3")
    conn.select(0)


def snapshot(conn: redis.Redis) -> dict:
    """Every key of every db read by its type, with its absolute expiry (ms; -1: none)."""
    state = {}
    for db in (0, 3):
        conn.select(db)
        for key in conn.scan_iter(count=1000):
            kind = conn.type(key).decode()
            read = {"string": conn.get, "hash": conn.hgetall, "list": lambda k: conn.lrange(k, 0, -1),
                    "set": conn.smembers, "zset": lambda k: conn.zrange(k, 0, -1, withscores=True),
                    "stream": lambda k: conn.xrange(k)}[kind]
            state[(db, key)] = (kind, read(key), conn.pexpiretime(key))
    conn.select(0)
    return state


def backup(engine, target):
    dest = io.BytesIO()
    writer = CompressingWriter(dest, Compression.ZSTD)
    stats = engine.backup(target, writer)
    return stats, writer.finish(), dest.getvalue()


def restore(engine, target, stored, written, stats):
    return engine.restore(target, DecompressingReader(io.BytesIO(stored), Compression.ZSTD,
                                                      written.sha256), stats)


def test_probe_reports_memory_and_keys(cache):
    target, engine, conn = cache
    conn.set("k", "v")
    result = engine.probe(target)
    assert result.status is ProbeStatus.HEALTHY
    assert result.details["keys"] == 1 and result.details["used_memory"] > 0
    assert result.details["version"].startswith("7.")


def test_every_type_round_trips_with_ttls(cache):
    target, engine, conn = cache
    fill(conn)
    before = snapshot(conn)
    stats, written, stored = backup(engine, target)
    assert stats.key_count == len(before) == 3011
    assert stats.keys_per_db == {0: 3010, 3: 1} and stats.expiring_per_db == {0: 2, 3: 0}
    conn.flushall()
    restored = restore(engine, target, stored, written, stats)
    assert restored.keys_restored == 3011 and restored.keys_skipped_expired == 0
    assert restored.verify is not None and restored.verify.ok
    after = snapshot(conn)
    assert after.keys() == before.keys()
    for key, (kind, value, expire_at) in before.items():
        assert after[key][:2] == (kind, value), key
        assert abs(after[key][2] - expire_at) <= 1000 if expire_at >= 0 else after[key][2] == -1, key
    assert sum(1 for _, _, e in after.values() if e >= 0) == 2
    assert engine.verify(target, stats).ok


@pytest.mark.parametrize("maxmemory", [0, 512 * 1024 * 1024])
def test_restore_over_live_keys_replaces_them_all(cache, maxmemory):
    """Keys written after the backup are gone, changed ones are back. The old keys are freed
    in the server's background thread only when no maxmemory could refuse the RESTOREs."""
    target, engine, conn = cache
    conn.mset({f"k{i}": f"backed up {i}" for i in range(2000)})
    stats, written, stored = backup(engine, target)
    conn.mset({f"k{i}": "changed" for i in range(0, 2000, 2)})
    conn.mset({f"new{i}": "written after the backup" for i in range(500)})
    conn.config_set("maxmemory", maxmemory)
    lazyfreed = conn.info("memory")["lazyfreed_objects"]
    try:
        restored = restore(engine, target, stored, written, stats)
    finally:
        conn.config_set("maxmemory", 0)
    assert restored.keys_restored == 2000 and conn.dbsize() == 2000
    assert conn.mget([f"k{i}" for i in range(2000)]) == [f"backed up {i}".encode() for i in range(2000)]
    deadline = time.monotonic() + 10
    while conn.info("memory")["lazyfree_pending_objects"] and time.monotonic() < deadline:
        time.sleep(0.05)
    freed_in_background = conn.info("memory")["lazyfreed_objects"] - lazyfreed
    assert (freed_in_background > 0) == (maxmemory == 0)


def test_keys_expired_by_restore_time_are_skipped(cache):
    target, engine, conn = cache
    conn.set("short", "gone soon", px=1500)
    conn.set("stays", "here")
    stats, written, stored = backup(engine, target)
    assert stats.key_count == 2
    time.sleep(1.6)
    restored = restore(engine, target, stored, written, stats)
    assert restored.keys_restored == 1 and restored.keys_skipped_expired == 1
    assert conn.exists("short") == 0 and conn.get("stays") == b"here"
    assert engine.verify(target, stats).ok  # a key with a TTL may be gone


def test_verify_fails_when_keys_are_missing(cache):
    target, engine, conn = cache
    conn.mset({f"k{i}": i for i in range(10)})
    stats, _, _ = backup(engine, target)
    conn.delete("k3")
    report = engine.verify(target, stats)
    assert not report.ok and report.failures[0].name == "keys without a TTL in db0"
    assert (report.failures[0].expected, report.failures[0].actual) == (10, 9)


def test_verify_fails_when_a_key_without_ttl_is_deleted_while_keys_with_one_remain(cache):
    """The keys with a TTL may have expired, never the others: one deleted cannot hide behind them."""
    target, engine, conn = cache
    conn.mset({f"k{i}": i for i in range(10)})
    for i in range(3):
        conn.set(f"ttl{i}", i, ex=3600)
    stats, _, _ = backup(engine, target)
    conn.delete("k3")
    report = engine.verify(target, stats)
    assert not report.ok
    assert [(c.name, c.expected, c.actual) for c in report.failures] == [("keys without a TTL in db0", 10, 9)]


def test_verify_fails_on_a_key_added_in_a_db_the_backup_does_not_have(cache):
    target, engine, conn = cache
    conn.mset({f"k{i}": i for i in range(10)})
    stats, _, _ = backup(engine, target)
    assert stats.keys_per_db == {0: 10}
    with redis.Redis(host=target.host, port=6379, db=5) as db5:
        db5.set("late", "after the backup")
    report = engine.verify(target, stats)
    assert not report.ok
    assert [(c.name, c.expected, c.actual) for c in report.failures] == [("keys in db5 (not in the backup)", 0, 1)]


def test_verify_of_an_empty_backup_fails_once_the_cache_holds_keys(cache):
    target, engine, conn = cache
    stats, _, _ = backup(engine, target)
    assert stats.key_count == 0 and stats.keys_per_db == {}
    empty = engine.verify(target, stats)
    assert empty.ok and [(c.expected, c.actual) for c in empty.checks] == [(0, 0)]
    conn.set("late", "after the backup")
    report = engine.verify(target, stats)
    assert not report.ok
    assert [(c.name, c.expected, c.actual) for c in report.failures] == [("keys in db0 (not in the backup)", 0, 1)]


def test_verify_passes_on_unchanged_data_and_when_keys_with_a_ttl_are_gone(cache):
    target, engine, conn = cache
    fill(conn)
    db7 = redis.Redis(host=target.host, port=6379, db=7)
    db7.set("persistent", "in db 7")
    db7.set("volatile", "in db 7", ex=3600)
    stats, _, _ = backup(engine, target)
    assert stats.keys_per_db == {0: 3010, 3: 1, 7: 2} and stats.expiring_per_db == {0: 2, 3: 0, 7: 1}
    report = engine.verify(target, stats)
    assert report.ok, report.summary()
    assert {c.name: (c.expected, c.actual) for c in report.checks} == {
        "keys without a TTL in db0": (3008, 3008), "keys with a TTL in db0": ("at most 2", 2),
        "keys without a TTL in db3": (1, 1), "keys with a TTL in db3": (0, 0),
        "keys without a TTL in db7": (1, 1), "keys with a TTL in db7": ("at most 1", 1)}
    conn.delete("ttl:long")
    db7.delete("volatile")
    db7.close()
    assert engine.verify(target, stats).ok


def test_truncated_backup_is_rejected(cache):
    target, engine, conn = cache
    conn.mset({f"k{i}": "v" * 100 for i in range(50)})
    stats, written, stored = backup(engine, target)
    raw = DecompressingReader(io.BytesIO(stored), Compression.ZSTD, written.sha256).read(1 << 30)
    for cut in (raw[:-3], raw[: len(raw) // 2]):
        dest = io.BytesIO()
        writer = CompressingWriter(dest)
        writer.write(cut)
        truncated = writer.finish()
        with pytest.raises(RestoreError) as caught:
            restore(engine, target, dest.getvalue(), truncated, stats)
        assert caught.value.ref == "restore.truncated"
    damaged = bytearray(stored)
    damaged[len(damaged) // 2] ^= 0xFF
    with pytest.raises(RestoreError):
        restore(engine, target, bytes(damaged), written, stats)


def test_wrong_password_is_reported_without_the_secret(cache):
    target, engine, conn = cache
    secret = "pw-" + secrets.token_hex(6)
    conn.config_set("requirepass", secret)
    try:
        locked = make_target("cache", target.service, target.container_id, target.host)
        result = engine.probe(locked)
        assert result.status is ProbeStatus.REFUSED and "NOAUTH" in result.details["error"]
        wrong = make_target("cache", target.service, target.container_id, target.host)
        object.__setattr__(wrong, "password", secret + "x")
        refused = engine.probe(wrong)
        assert refused.status is ProbeStatus.REFUSED and "WRONGPASS" in refused.details["error"]
        assert secret not in repr(refused) and secret not in repr(wrong)
        right = make_target("cache", target.service, target.container_id, target.host)
        object.__setattr__(right, "password", secret)
        assert engine.probe(right).status is ProbeStatus.HEALTHY
    finally:
        redis.Redis(host=target.host, port=6379, password=secret).config_set("requirepass", "")


def test_a_restore_cut_short_says_the_cache_is_partly_refilled(cache):
    target, engine, conn = cache
    conn.mset({f"k{i}": "v" * 100 for i in range(5000)})
    stats, written, stored = backup(engine, target)

    class Dying(io.BytesIO):
        """The stream of a restore whose reader dies partway (the connection, Ctrl-C…)."""

        def read(self, size=-1):
            if self.tell() > len(stored) // 2:
                raise ConnectionResetError(104, "Connection reset by peer")
            return super().read(min(size, 4096) if size and size > 0 else 4096)

    with pytest.raises(RestoreError) as caught:
        engine.restore(target, DecompressingReader(Dying(stored), Compression.ZSTD, written.sha256), stats)
    assert caught.value.ref == "restore.cache-partial"
    assert "emptied for the restore and is only partly refilled" in caught.value.message
    assert "run the restore again" in caught.value.hint
    assert conn.dbsize() < 5000
    restore(engine, target, stored, written, stats)  # and a second run brings every key back
    assert conn.dbsize() == 5000


def test_a_cache_started_with_requirepass_is_probed_backed_up_and_restored(client, write_spec, project):
    """The official redis image takes its password only on the command line: health, backup
    and restore must find it there, and never print it."""
    secret = "pw-" + secrets.token_hex(8)
    loaded = write_spec("""
        version: 1
        project: {project}
        services:
          cache:
            kind: redis
            image: reconcile-lab/redis:7
            command: ["redis-server", "--requirepass", "${env:CACHE_PW}", "--appendonly", "no"]
            stateful: true
        backup:
          local: { path: ./backups }
        """, environ={"CACHE_PW": secret})
    ids = materialise(client, loaded)
    conn = redis.Redis(host=container_ip(dockerio.inspect_container(client, ids["cache"])), port=6379,
                       password=secret)
    deadline = time.monotonic() + 60
    while not _answers(conn) and time.monotonic() < deadline:
        time.sleep(0.3)
    conn.mset({f"k{i}": f"v{i}" for i in range(500)})

    def run(*args):
        result = cli(loaded.file, {**os.environ, "NO_COLOR": "1", "CACHE_PW": secret}, *args, timeout=120)
        assert secret not in result.stdout + result.stderr
        return result

    health = run("health", "--json")
    assert health.returncode == 0, health.stdout + health.stderr
    backup = run("backup", "--json")
    assert backup.returncode == 0, backup.stderr
    assert '"key_count": 500' in backup.stdout
    conn.flushall()
    conn.set("after", "the backup")
    restore = run("restore", "--yes")
    assert restore.returncode == 0, restore.stderr
    assert conn.dbsize() == 500 and conn.get("k7") == b"v7" and conn.get("after") is None


def _answers(conn: redis.Redis) -> bool:
    try:
        return bool(conn.ping())
    except redis.ConnectionError:
        return False
