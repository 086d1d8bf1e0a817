"""Benchmark: backup and restore of PostgreSQL and the cache against the usual shell ways.

In one run, side by side, on a database of realistic rows (random text and numbers, which
compress about 2:1, unlike pgbench filler):

  backup  vs the seed's way: pg_dump | gzip > f.sql.gz; sha256sum f.sql.gz   (target ≤ 0.5×)
  backup  vs the floor: pg_dump > /dev/null on the host                       (target ≤ 1.3×)
          and, for information, inside the server's container (no transport at all)
  restore vs gunzip -c f.sql.gz | psql into a fresh database                  (target ≤ 0.8×)
  cache backup and restore, N keys, vs redis-cli --rdb, medians of --runs     (target ≤ 2×)
          and, for information, the cache server's own CPU time during each: with
          SCAN + DUMP + PTTL (the only way Dragonfly allows) the server's per-key work
          alone can exceed the target on keys written in random memory order; and its CPU
          time for one bare SCAN of every key, which no SCAN-based backup can go below

    python bench/backup.py                          # full: 1 GiB database, 1 M keys
    python bench/backup.py --db-mb 8 --keys 5000 --runs 2   # smoke (CI)
    python bench/backup.py --record                 # also append the table to bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import compile_package, median, record, table  # noqa: E402

PASSWORD = "bench-" + secrets.token_hex(6)
SPEC = """\
version: 1
project: {project}
state_dir: ./state
volumes: {{ pgdata: {{}}, cachedata: {{}} }}
services:
  postgres:
    kind: postgres
    image: reconcile-lab/postgres:15
    env: {{ POSTGRES_PASSWORD: "{password}", POSTGRES_DB: bench }}
    command: ["postgres", "-c", "shared_buffers=256MB", "-c", "max_wal_size=4GB"]
    volumes: ["pgdata:/var/lib/postgresql/data"]
    stateful: true
    backup: {{ databases: [bench] }}
  dragonfly:
    kind: redis
    image: reconcile-lab/redis:7
    volumes: ["cachedata:/data"]
    stateful: true
backup:
  local: {{ path: ./backups }}
  compression: zstd
"""

FILL_SQL = """
CREATE TABLE IF NOT EXISTS customers (id bigserial PRIMARY KEY, name text, email text,
    city text, balance numeric(12,2), created timestamptz);
CREATE TABLE IF NOT EXISTS orders (id bigserial PRIMARY KEY, customer_id bigint, total numeric(12,2),
    status text, note text, placed timestamptz);
INSERT INTO customers (name, email, city, balance, created)
  SELECT md5(random()::text), substr(md5(random()::text), 1, 12) || '@example.org',
         (ARRAY['Berlin','Lagos','Lima','Osaka','Oslo','Pune'])[1 + (random()*5)::int],
         round((random()*100000)::numeric, 2), now() - random() * interval '900 days'
  FROM generate_series(1, {customers});
INSERT INTO orders (customer_id, total, status, note, placed)
  SELECT 1 + (random()*{customers})::bigint, round((random()*5000)::numeric, 2),
         (ARRAY['new','paid','shipped','returned'])[1 + (random()*3)::int],
         substr(md5(random()::text) || md5(random()::text) || md5(random()::text), 1, 20 + (random()*76)::int),
         now() - random() * interval '900 days'
  FROM generate_series(1, {orders});
"""


def sh(cmd: str, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, **kw)
    if result.returncode != 0:
        sys.exit(f"failed: {cmd}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return result


def timed(cmd: str, env: dict | None = None) -> float:
    start = time.perf_counter()
    sh(cmd, env=env)
    return time.perf_counter() - start


class Lab:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.project = f"bench-{secrets.token_hex(3)}"
        self.spec = folder / "reconcile.yaml"
        self.spec.write_text(SPEC.format(project=self.project, password=PASSWORD))
        self.env = {**os.environ, "NO_COLOR": "1"}
        self.pg = f"{self.project}-postgres"
        self.cache = f"{self.project}-dragonfly"

    def reconcile(self, *args: str) -> str:
        return f"{sys.executable} -m reconciler -f {self.spec} {' '.join(args)}"

    def up(self) -> None:
        from reconciler import dockerio
        from reconciler.apply import builders
        from reconciler.health import wait_healthy
        from reconciler.session import Session
        from reconciler.spec.load import load_spec

        loaded = load_spec(self.spec)
        client = dockerio.connect()
        for volume in loaded.spec.volumes:
            dockerio.create_volume(client, builders.volume_args(loaded, volume))
        session = Session(loaded)
        for name, service in loaded.spec.services.items():
            image = client.api.inspect_image(service.image)["Id"]
            cid = dockerio.create_container(client, builders.container_args(loaded, name, image))
            dockerio.start(client, cid)
            if wait_healthy(session, name, cid, timeout=120).level != 0:
                sys.exit(f"{name} did not become healthy")

    def psql(self, sql: str, db: str = "bench") -> str:
        return sh(f"docker exec -i {self.pg} psql -U postgres -d {db} -v ON_ERROR_STOP=1 -qAt",
                  input=sql).stdout

    def fill_postgres(self, megabytes: int) -> str:
        orders = max(1000, megabytes * 1024 * 1024 // 190)
        customers = max(100, orders // 10)
        for start in range(0, orders, 1_000_000):
            batch = min(1_000_000, orders - start)
            self.psql(FILL_SQL.format(customers=customers if start == 0 else 0, orders=batch))
        self.psql("VACUUM ANALYZE")
        return self.psql("SELECT pg_size_pretty(pg_database_size('bench'))").strip()

    def cache_cpu(self) -> float:
        """CPU seconds the cache server has used so far (its process, read from /proc)."""
        pid = sh(f"docker inspect -f '{{{{.State.Pid}}}}' {self.cache}").stdout.strip()
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def quiesce(self, timeout: float = 300.0) -> None:
        """Wait for the background work the PostgreSQL rows leave (a checkpoint of gigabytes,
        autovacuum of the restored tables) so the next rows measure what they time, not it."""
        started = time.perf_counter()
        self.psql("CHECKPOINT", db="postgres")
        busy = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"
        while self.psql(busy, db="postgres").strip() != "0" and time.perf_counter() - started < timeout:
            time.sleep(1)
        self.psql("CHECKPOINT", db="postgres")
        print(f"(waited {time.perf_counter() - started:.0f} s for PostgreSQL's background work)",
              file=sys.stderr)

    def fill_cache(self, keys: int) -> None:
        import redis

        from reconciler import dockerio
        from reconciler.engines import container_ip

        client = dockerio.connect()
        ip = container_ip(client.api.inspect_container(self.cache))
        r = redis.Redis(host=ip, port=6379)
        pipe = r.pipeline(transaction=False)
        for i in range(keys):
            kind = i % 4
            if kind == 0:
                pipe.set(f"session:{i}", os.urandom(48).hex(), ex=86400)
            elif kind == 1:
                pipe.hset(f"user:{i}", mapping={"name": secrets.token_hex(6), "visits": i})
            elif kind == 2:
                pipe.rpush(f"queue:{i}", *(secrets.token_hex(4) for _ in range(3)))
            else:
                pipe.set(f"counter:{i}", i)
            if i % 5000 == 4999:
                pipe.execute()
        pipe.execute()

    def scan_cpu(self) -> float:
        """The cache server's CPU seconds for one bare SCAN of every key, in pages of the
        backup's size: the part of its work that only a different command could avoid."""
        import redis

        from reconciler import dockerio
        from reconciler.engines import container_ip
        from reconciler.engines.redis import SCAN_COUNT

        ip = container_ip(dockerio.connect().api.inspect_container(self.cache))
        r = redis.Redis(host=ip, port=6379)
        before, cursor = self.cache_cpu(), None
        while cursor != 0:
            cursor, _ = r.scan(cursor or 0, count=SCAN_COUNT)
        return self.cache_cpu() - before

    def down(self) -> None:
        label = f"reconcile.project={self.project}"
        subprocess.run(f"docker rm -f -v $(docker ps -aq --filter label={label}) >/dev/null 2>&1; "
                       f"docker volume rm $(docker volume ls -q --filter label={label}) >/dev/null 2>&1",
                       shell=True)


def postgres_rows(lab: Lab) -> list[tuple]:
    out = lab.folder / "seed.sql.gz"
    seed = timed(f"docker exec {lab.pg} pg_dump -U postgres bench | gzip > {out} && sha256sum {out}")
    floor = timed(f"docker exec {lab.pg} pg_dump -U postgres bench > /dev/null")
    inside = timed(f"docker exec {lab.pg} sh -c 'pg_dump -U postgres bench > /dev/null'")
    ours = timed(lab.reconcile("backup", "postgres", "--no-prune"), lab.env)
    lab.psql("DROP DATABASE IF EXISTS bench_copy; CREATE DATABASE bench_copy;", db="postgres")
    seed_restore = timed(f"gunzip -c {out} | docker exec -i {lab.pg} psql -U postgres -d bench_copy -q "
                         f"-v ON_ERROR_STOP=1 > /dev/null")
    lab.psql("DROP DATABASE bench_copy", db="postgres")
    ours_restore = timed(lab.reconcile("restore", "latest", "postgres", "--yes"), lab.env)
    return [("postgres backup vs pg_dump + gzip, then sha256sum (seed)", ours, seed, 0.5),
            ("postgres backup vs pg_dump > /dev/null on the host (floor)", ours, floor, 1.3),
            ("postgres backup vs pg_dump > /dev/null inside the container (no transport)", ours, inside, None),
            ("postgres restore vs gunzip into psql", ours_restore, seed_restore, 0.8)]


def cache_rows(lab: Lab, runs: int) -> list[tuple]:
    """Medians of ``runs`` runs. The backups alternate with the baseline, so a slow spell of
    the machine (it has neighbours) hits both sides; the restores come after all of them,
    because a restore writes the keys back in SCAN order, which would speed later backups."""
    lab.quiesce()
    # redis-cli --rdb asks for a replica sync, which Redis delays 5 s by default to batch
    # replicas; without the delay the baseline is the dump itself, the fair comparison.
    sh(f"docker exec {lab.cache} redis-cli CONFIG SET repl-diskless-sync-delay 0")
    rdb, ours, server, scan = [], [], [], []
    for _ in range(runs):
        rdb.append(timed(f"docker exec {lab.cache} redis-cli --rdb /tmp/bench.rdb"))
        before = lab.cache_cpu()
        ours.append(timed(lab.reconcile("backup", "dragonfly", "--no-prune"), lab.env))
        server.append(lab.cache_cpu() - before)
        scan.append(lab.scan_cpu())
    ours_restore, server_restore = [], []
    for _ in range(runs):
        before = lab.cache_cpu()
        ours_restore.append(timed(lab.reconcile("restore", "latest", "dragonfly", "--yes"), lab.env))
        server_restore.append(lab.cache_cpu() - before)
    base = median(rdb)
    return [("cache backup vs redis-cli --rdb", median(ours), base, 2.0),
            ("cache restore vs redis-cli --rdb", median(ours_restore), base, 2.0),
            ("cache backup: the server's CPU for SCAN + DUMP + PTTL alone", median(server), base, None),
            ("cache backup: the server's CPU for a bare SCAN of every key", median(scan), base, None),
            ("cache restore: the server's CPU for RESTORE and freeing the old keys", median(server_restore),
             base, None)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db-mb", type=int, default=1200, help="approximate size of the rows (1200 gives a database over 1 GB)")
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5, help="cache cases: median of this many runs")
    parser.add_argument("--record", action="store_true", help="append results to bench/RESULTS.md")
    args = parser.parse_args()
    compile_package()
    with tempfile.TemporaryDirectory(prefix="reconcile-bench-") as tmp:
        lab = Lab(Path(tmp))
        try:
            lab.up()
            size = lab.fill_postgres(args.db_mb)
            lab.fill_cache(args.keys)
            rows = postgres_rows(lab) + cache_rows(lab, args.runs)
        finally:
            lab.down()
    title = (f"backup/restore: database {size} (one run), {args.keys} cache keys "
             f"(median of {args.runs} runs)")
    text = f"{title}\n\n{table(rows)}\n"
    print(text)
    if args.record:
        record("bench/backup.py", text)


if __name__ == "__main__":
    main()
