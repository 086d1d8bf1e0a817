"""Engine values: targets keep secrets out of repr, stats survive the metadata JSON."""

from __future__ import annotations

import json

import pytest

from reconciler.engines import engine_for
from reconciler.engines.base import (
    BackupStats,
    DatabaseStats,
    ProbeResult,
    ProbeStatus,
    RestoreStats,
    VerifyCheck,
    VerifyReport,
    make_target,
    postgres_databases,
)
from reconciler.engines.tarscan import ASPECTS, TreeDigest
from reconciler.spec.models import Kind, Service

SECRET = "pa55-w0rd-XYZ"


def service(**fields) -> Service:
    return Service.model_validate({"image": "img", **fields})


def test_postgres_target_credentials_and_repr():
    target = make_target("db", service(kind="postgres", env={"POSTGRES_PASSWORD": SECRET,
                                                             "POSTGRES_DB": "shop"}), "cid", "10.0.0.2")
    assert (target.user, target.password, target.port) == ("postgres", SECRET, 5432)
    assert SECRET not in repr(target)
    assert postgres_databases(target) == ["shop"]
    assert target.redact(f"failed for {SECRET}!") == "failed for ***!"


def test_database_defaults_follow_the_image():
    target = make_target("db", service(kind="postgres", env={"POSTGRES_USER": "app"}), "c", "h")
    assert postgres_databases(target) == ["app"]
    listed = make_target("db", service(kind="postgres", backup={"databases": ["a", "b"]}), "c", "h")
    assert postgres_databases(listed) == ["a", "b"]


def test_only_secret_looking_env_values_are_redacted():
    target = make_target("api", service(env={"API_TOKEN": "tok-3141592", "DB_NAME": "healthcare"}),
                         "c", "h")
    assert target.redact("healthcare tok-3141592") == "healthcare ***"


def test_redis_and_http_targets():
    cache = make_target("cache", service(kind="redis", env={"REDIS_PASSWORD": SECRET}), "c", "h")
    assert (cache.port, cache.password) == (6379, SECRET) and SECRET not in repr(cache)
    web = make_target("web", service(kind="http", health={"http": {"port": 8080}}), "c", "h")
    assert web.port == 8080


@pytest.mark.parametrize(("fields", "expected"), [
    ({"command": ["redis-server", "--appendonly", "yes", "--requirepass", SECRET]}, SECRET),
    ({"command": ["--requirepass", SECRET]}, SECRET),  # arguments the image hands to redis-server
    ({"command": ["dragonfly", f"--requirepass={SECRET}", "--dbfilename", "dump"]}, SECRET),
    ({"entrypoint": ["dragonfly", f"--requirepass={SECRET}"], "command": ["--logtostderr"]}, SECRET),
    ({"command": ["redis-server", "--requirepass", "old", "--requirepass", SECRET]}, SECRET),
    ({"command": ["redis-server", "--requirepass", SECRET], "env": {"REDIS_PASSWORD": "other"}}, SECRET),
    ({"env": {"DFLY_requirepass": SECRET}}, SECRET),
    ({"command": ["redis-server", "--requirepass"]}, ""),  # redis-server itself refuses this line
    ({"command": ["redis-server", "--appendonly", "yes"]}, ""),
])
def test_cache_password_is_the_one_the_server_starts_with(fields, expected):
    cache = make_target("cache", service(kind="redis", **fields), "c", "h")
    assert cache.password == expected
    if expected:
        assert SECRET not in repr(cache) and cache.redact(f"AUTH {SECRET}") == "AUTH ***"


@pytest.mark.parametrize(("fields", "expected"), [
    ({"kind": "postgres"}, 5432),
    ({"kind": "postgres", "command": ["postgres", "-c", "port=5433"]}, 5433),
    ({"kind": "postgres", "command": ["-p", "5433"]}, 5433),
    ({"kind": "postgres", "command": ["postgres", "--port=5433", "-c", "shared_buffers=1GB"]}, 5433),
    ({"kind": "postgres", "command": ["postgres", "-cport=5433"]}, 5433),
    ({"kind": "postgres", "env": {"PGPORT": "5434"}}, 5434),
    ({"kind": "postgres", "env": {"PGPORT": "5434"}, "command": ["postgres", "-p", "5433"]}, 5433),
    ({"kind": "postgres", "command": ["postgres", "-p", "5433", "-c", "port=5435"]}, 5435),
    ({"kind": "postgres", "command": ["postgres", "-c", "port=none"]}, 5432),
    ({"kind": "redis"}, 6379),
    ({"kind": "redis", "command": ["redis-server", "--port", "6380"]}, 6380),
    ({"kind": "redis", "command": ["dragonfly", "--port=6381"]}, 6381),
    ({"kind": "redis", "env": {"DFLY_port": "6382"}}, 6382),
])
def test_port_is_the_one_the_server_listens_on(fields, expected):
    assert make_target("s", service(**fields), "c", "h").port == expected


def test_a_running_server_is_reached_as_its_container_was_started():
    """The spec rotated the cache password and moved both ports; the containers still run
    with the old command lines: those are what the servers listen and answer on."""
    cache = make_target("cache", service(kind="redis", command=["redis-server", "--requirepass", "new-pw-2222",
                                                               "--port", "6400"]), "c", "h",
                        config={"Entrypoint": ["docker-entrypoint.sh"],
                                "Cmd": ["redis-server", "--requirepass", "old-pw-1111"],
                                "Env": ["PATH=/usr/bin", "REDIS_VERSION=7"]})
    assert (cache.password, cache.port) == ("old-pw-1111", 6379)
    pg = make_target("db", service(kind="postgres", env={"POSTGRES_PASSWORD": "altered-pw-3333"},
                                   command=["postgres", "-p", "5499"]), "c", "h",
                     config={"Cmd": ["postgres"], "Env": ["POSTGRES_PASSWORD=initdb-pw-4444", "PGPORT=5433"]})
    # the port is the server's; the password is the data's, which the operator keeps in the spec
    assert (pg.port, pg.password) == (5433, "altered-pw-3333")
    assert {"altered-pw-3333", "initdb-pw-4444"} <= set(pg.secrets())  # both masked in errors
    assert "initdb-pw-4444" not in pg.redact("FATAL: password initdb-pw-4444 rejected")


def test_secret_files_are_read_inside_the_container():
    files = {"/run/secrets/pg": f"{SECRET}\n\n", "/run/secrets/user": "app\n", "/run/secrets/r": SECRET,
             "/run/secrets/db": "shop\n"}
    read = files.__getitem__
    pg = make_target("db", service(kind="postgres", env={"POSTGRES_PASSWORD_FILE": "/run/secrets/pg",
                                                         "POSTGRES_USER_FILE": "/run/secrets/user"}),
                     "c", "h", read_file=read)
    assert (pg.user, pg.password) == ("app", SECRET) and SECRET not in repr(pg)
    assert postgres_databases(pg) == ["app"]  # the image names the database after the user
    named = make_target("db", service(kind="postgres", env={"POSTGRES_DB_FILE": "/run/secrets/db"}),
                        "c", "h", read_file=read)
    assert postgres_databases(named) == ["shop"]
    assert pg.redact(f"password {SECRET} refused") == "password *** refused"
    assert pg.redact("cannot read /run/secrets/pg") == "cannot read /run/secrets/pg"  # a path, named
    both = make_target("db", service(kind="postgres", env={"POSTGRES_PASSWORD": "direct",
                                                           "POSTGRES_PASSWORD_FILE": "/missing"}),
                       "c", "h", read_file=read)
    assert both.password == "direct"  # the file is not even read
    cache = make_target("cache", service(kind="redis", env={"REDIS_PASSWORD_FILE": "/run/secrets/r"}),
                        "c", "h", read_file=read)
    assert cache.password == SECRET
    unread = make_target("db", service(kind="postgres", env={"POSTGRES_PASSWORD_FILE": "/x"}), "c", "h")
    assert unread.password == ""


def test_backup_stats_round_trip_through_json():
    stats = BackupStats(Kind.POSTGRES, raw_bytes=10, databases=(
        DatabaseStats("shop", 4096, {"public.users": 3, "public.orders": 5}),))
    data = json.loads(json.dumps(stats.as_dict()))
    assert data["table_count"] == 2 and data["row_count"] == 8 and data["database_size"] == 4096
    assert data["tables"] == {"public.users": 3, "public.orders": 5}
    assert BackupStats.from_dict(data) == stats
    cache = BackupStats(Kind.REDIS, key_count=7, keys_per_db={0: 5, 3: 2}, expiring_per_db={0: 1},
                        memory_bytes=1000)
    assert BackupStats.from_dict(json.loads(json.dumps(cache.as_dict()))) == cache


def test_volume_stats_keep_the_tree_digest_and_old_ones_load_without():
    tree = TreeDigest({name: f"{i:064x}" for i, name in enumerate(ASPECTS)}, {"srv/data/a": "0" * 32})
    files = BackupStats(Kind.GENERIC, raw_bytes=10240, paths=("/srv/data",), file_count=2,
                        content_bytes=5, tree=tree)
    data = json.loads(json.dumps(files.as_dict()))
    assert data["tree_digest"]["sha256"] == tree.sha256
    assert BackupStats.from_dict(data) == files
    old = {k: v for k, v in data.items() if k != "tree_digest"}
    assert BackupStats.from_dict(old) == BackupStats(Kind.GENERIC, raw_bytes=10240, paths=("/srv/data",),
                                                     file_count=2, content_bytes=5)


def test_several_databases_prefix_table_names():
    stats = BackupStats(Kind.POSTGRES, databases=(DatabaseStats("a", 1, {"public.t": 1}),
                                                  DatabaseStats("b", 1, {"public.t": 2})))
    assert stats.tables == {"a/public.t": 1, "b/public.t": 2}


def test_verify_report_summary_names_failures():
    report = VerifyReport((VerifyCheck("rows in public.users", 3, 2, False),
                           VerifyCheck("table count", 2, 2, True)))
    assert not report.ok and report.summary() == "rows in public.users: expected 3, found 2"


@pytest.mark.parametrize(("stats", "fields"), [
    (RestoreStats(Kind.POSTGRES, 10, tables_restored=2, rows_restored=8, seconds=1.5),
     {"kind": "postgres", "raw_bytes": 10, "tables_restored": 2, "rows_restored": 8, "seconds": 1.5}),
    (RestoreStats(Kind.REDIS, 10, keys_restored=7, keys_skipped_expired=0, seconds=0.5),
     {"kind": "redis", "raw_bytes": 10, "keys_restored": 7, "keys_skipped_expired": 0, "seconds": 0.5}),
    (RestoreStats(Kind.GENERIC, 10, seconds=2.0),
     {"kind": "generic", "raw_bytes": 10, "seconds": 2.0}),
])
def test_restore_stats_as_dict_holds_only_the_kinds_own_fields(stats, fields):
    assert stats.as_dict() == fields
    with_verify = RestoreStats(stats.kind, verify=VerifyReport()).as_dict()
    assert with_verify["verify"] == {"ok": True, "checks": []}
    assert ("keys_skipped_expired" in with_verify) == (stats.kind is Kind.REDIS)


def test_probe_result_as_dict():
    assert ProbeResult(ProbeStatus.DEGRADED, {"a": 1}, 12.345).as_dict() == {
        "status": "degraded", "details": {"a": 1}, "latency_ms": 12.3}


@pytest.mark.parametrize(("kind", "extension"), [(Kind.POSTGRES, "sql"), (Kind.REDIS, "redis-dump"),
                                                 (Kind.GENERIC, "tar"), (Kind.HTTP, "")])
def test_engine_for_each_kind(kind, extension):
    assert engine_for(kind, client=object()).file_extension == extension
