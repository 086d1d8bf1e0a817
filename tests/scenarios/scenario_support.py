"""One lab stack driven through the real CLI, and what the scenarios check after each apply.

``Stack`` owns a project name, host ports, state and backup folders, and the spec files it
applies (the reference stack of ``specs/lab.yaml`` with short health intervals; a few
variants change one thing, see ``write_spec``). Each ``apply`` returns the CLI's result and
the events of exactly that apply's journal. ``data`` is what must never be lost: every
PostgreSQL table as (rows, md5 of its rows in order) and every Redis key with its type,
value and whether it has a TTL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

from reconciler.engines.resp import RespConnection
from tests.conftest_s3 import free_ports
from tests.integration.apply_support import ROOT, psql, show

SPEC = """\
# specs/lab.yaml's stack (same services, profiles, kinds and data) with short health gates.
version: 1
project: "${env:LAB_PROJECT}"
state_dir: "${env:LAB_STATE_DIR}"
volumes:
  postgres_data: @POSTGRES_VOLUME@
  dragonfly_data: {}
networks:
  backend: {}
services:
  postgres:
    profile: infrastructure
    kind: postgres
    image: "reconcile-lab/postgres:${env:LAB_PG_VERSION:-15}"
    env: { POSTGRES_PASSWORD: lab-password, POSTGRES_DB: healthcare }
    volumes: ["postgres_data:/var/lib/postgresql/data"@POSTGRES_MOUNTS@]
    networks: [backend]
    ports: ["127.0.0.1:${env:LAB_PG_PORT}:5432"]
    stateful: true
    protect: true
    health: { interval: 1s, timeout: 60s }
    backup: { databases: [healthcare], critical_tables: [users, appointments] }
  dragonfly:
    profile: infrastructure
    kind: redis
    image: reconcile-lab/redis:7
    volumes: ["dragonfly_data:/data"]
    networks: [backend]
    ports: ["127.0.0.1:${env:LAB_REDIS_PORT}:6379"]
    stateful: true
    health: { interval: 1s, timeout: 30s }
  openvidu:
    profile: infrastructure
    kind: http
    image: reconcile-lab/nginx:latest
    networks: [backend]
    ports: ["127.0.0.1:${env:LAB_VIDEO_PORT}:80"]
    health: { http: { port: 80, path: /health }, interval: 1s, timeout: 30s }
  api:
    profile: app
    image: "reconcile-lab/app:${env:LAB_APP_VERSION:-1}"
    env:
      DATABASE_URL: "postgresql://postgres:lab-password@postgres:5432/healthcare"
      REDIS_URL: redis://dragonfly:6379/0
    depends_on: { postgres: healthy, dragonfly: healthy }
    health: { http: { port: 8000, path: /health, timeout: 5s }, interval: 1s, timeout: 30s }
    deploy: { strategy: recreate, drain: 1s, health_timeout: 30s, stop_grace: 5s }
    networks: [backend]
    ports: ["127.0.0.1:${env:LAB_API_PORT}:8000"]
  worker:
    profile: app
    image: "reconcile-lab/app:${env:LAB_APP_VERSION:-1}"
    command: ["python3", "/app/worker.py"]
    env:
      DATABASE_URL: "postgresql://postgres:lab-password@postgres:5432/healthcare"
      REDIS_URL: redis://dragonfly:6379/0
      WORKER_INTERVAL: "1"
    depends_on: { postgres: healthy, dragonfly: healthy }
    health: { interval: 1s, timeout: 30s }
    deploy: { stop_grace: 5s }
    networks: [backend]
backup:
  local: { path: "${env:LAB_BACKUP_DIR}" }
  s3:
    enabled: "${env:S3_ENABLED:-false}"
    endpoint: "${env:S3_ENDPOINT:-http://127.0.0.1:9555}"
    region: us-east-1
    bucket: "${env:S3_BUCKET:-scenarios}"
    prefix: backups/
    path_style: true
    required: "${env:S3_REQUIRED:-false}"
  compression: zstd
"""
INFRA = ("postgres", "dragonfly", "openvidu")
APP = ("api", "worker")
SEED_REDIS = """
for i = 1, 250 do redis.call('SET', 'user:' .. i, 'name-' .. i) end
for i = 1, 30 do redis.call('HSET', 'session:' .. i, 'user', i, 'device', 'phone-' .. i) end
for i = 1, 20 do redis.call('SET', 'cache:' .. i, 'page-' .. i, 'EX', 86400) end
return 300
"""
READ_REDIS = """
local out = {}
for _, key in ipairs(redis.call('KEYS', '*')) do
  local kind = redis.call('TYPE', key)['ok']
  local value = ''
  if kind == 'string' then value = redis.call('GET', key)
  elseif kind == 'hash' then
    local flat, pairs = redis.call('HGETALL', key), {}
    for i = 1, #flat, 2 do table.insert(pairs, flat[i] .. '=' .. flat[i + 1]) end
    table.sort(pairs)
    value = table.concat(pairs, ',')
  end
  table.insert(out, key); table.insert(out, kind); table.insert(out, value)
  table.insert(out, redis.call('PTTL', key) > 0 and 'ttl' or 'no-ttl')
end
return out
"""


@dataclass
class Run:
    """One CLI apply: its process result and the events of its own journal."""

    result: subprocess.CompletedProcess
    events: list[dict]

    @property
    def code(self) -> int:
        return self.result.returncode

    def actions(self) -> list[tuple[str, str]]:
        """``(action, status)`` of every finished action, in journal order."""
        return [(e["action"], e["status"]) for e in self.events if e["event"] == "action-end"]

    def kinds(self) -> list[str]:
        return [e["event"] for e in self.events]

    def first(self, event: str, **match: object) -> dict:
        return next(e for e in self.events if e["event"] == event
                    and all(e.get(k) == v for k, v in match.items()))

    def ended(self, action: str) -> dict:
        return self.first("action-end", action=action)

    def finish(self) -> dict:
        return self.first("finish")

    def __str__(self) -> str:
        lines = [f"{e['event']} {e.get('action', '')} {e.get('status', '')} {e.get('message', '')}"
                 for e in self.events]
        return show(self.result) + "\n--- journal\n" + "\n".join(lines)


@dataclass(frozen=True)
class Snapshot:
    """What must not be lost: PostgreSQL tables and Redis keys."""

    tables: dict[str, tuple[int, str]]
    keys: dict[str, tuple[str, str, str]]


class Stack:
    def __init__(self, client, project: str, root: Path) -> None:
        self.client, self.project, self.root = client, project, root
        self.state = root / "state"
        self.env = {**os.environ, "NO_COLOR": "1", "LAB_PROJECT": project,
                    "LAB_STATE_DIR": str(self.state), "LAB_BACKUP_DIR": str(root / "backups"),
                    "S3_ENABLED": "false", "RECONCILE_HEAL_BACKOFF": "0.1"}
        names = ("LAB_PG_PORT", "LAB_REDIS_PORT", "LAB_VIDEO_PORT", "LAB_API_PORT")
        self.env |= {name: str(port) for name, port in zip(names, free_ports(len(names)), strict=True)}
        self.spec = self.write_spec("stack.yaml")

    # -- specs and the CLI ---------------------------------------------------------------------

    def write_spec(self, name: str, *, postgres_volume: str = "{}", postgres_mounts: tuple[str, ...] = ()) -> Path:
        """The stack's spec; a variant may back ``postgres_data`` differently or add mounts."""
        mounts = "".join(f', "{m}"' for m in postgres_mounts)
        path = self.root / name
        path.write_text(SPEC.replace("@POSTGRES_VOLUME@", postgres_volume).replace("@POSTGRES_MOUNTS@", mounts))
        return path

    def environ(self, **extra: str) -> dict[str, str]:
        return {**self.env, **extra}

    def cli(self, *args: str, spec: Path | None = None, env: dict | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "reconciler", "-f", str(spec or self.spec), *args],
                              capture_output=True, text=True, env=env or self.env, timeout=timeout, cwd=ROOT,
                              check=False)

    def journals(self) -> set[Path]:
        return set((self.state / "journal").glob("*.jsonl"))

    def apply(self, *args: str, spec: Path | None = None, **extra: str) -> Run:
        before = self.journals()
        result = self.cli("apply", "--auto-approve", *args, spec=spec, env=self.environ(**extra))
        return Run(result, self.new_journal(before))

    def spawn_apply(self, *args: str, spec: Path | None = None, **extra: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "reconciler", "-f", str(spec or self.spec), "apply",
                                 "--auto-approve", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=self.environ(**extra), cwd=ROOT)

    def new_journal(self, before: set[Path]) -> list[dict]:
        files = sorted(self.journals() - before)
        if not files:
            return []
        return [json.loads(line) for line in files[-1].read_text().splitlines() if line.strip()]

    def pause_at(self, process: subprocess.Popen, before: set[Path], predicate, timeout: float = 120) -> None:
        """SIGSTOP the apply as soon as its journal satisfies ``predicate`` (SIGCONT it later)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.new_journal(before)):
                process.send_signal(signal.SIGSTOP)
                return
            if process.poll() is not None:
                raise AssertionError(f"apply ended first:\n{process.communicate()}")
            time.sleep(0.02)
        raise AssertionError("timed out waiting for the apply")

    # -- the engine ------------------------------------------------------------------------------

    def name(self, service: str) -> str:
        return f"{self.project}-{service}"

    def containers(self) -> dict[str, dict]:
        found = self.client.api.containers(all=True, filters={"label": f"reconcile.project={self.project}"})
        return {c["Names"][0].lstrip("/").removeprefix(f"{self.project}-"): self.client.api.inspect_container(c["Id"])
                for c in found}

    def identities(self, services=INFRA + APP) -> dict[str, tuple[str, str]]:
        """``{service: (container id, started at)}``: equal means not touched at all."""
        now = self.containers()
        return {s: (now[s]["Id"], now[s]["State"]["StartedAt"]) for s in services}

    def mounts(self, service: str) -> list[str]:
        return [m["Name"] for m in self.containers()[service]["Mounts"] if m["Type"] == "volume"]

    def volumes(self) -> set[str]:
        found = self.client.api.volumes(filters={"label": f"reconcile.project={self.project}"})
        return {v["Name"] for v in found.get("Volumes") or []}

    def sh(self, image: str, script: str, volume: str) -> None:
        """Run ``script`` as root in a throw-away container with ``volume`` at /data."""
        out = self.client.containers.run(image, ["sh", "-c", script], remove=True, user="root",
                                         volumes={volume: {"bind": "/data", "mode": "rw"}})
        return out

    # -- the data ----------------------------------------------------------------------------

    def sql(self, text: str) -> str:
        return psql(self.client, self.name("postgres"), text)

    def seed(self, rows: int = 2000) -> None:
        from tests.integration.apply_support import seed_rows

        seed_rows(self.client, self.name("postgres"), rows=rows)
        with self.redis() as conn:
            assert conn.call("EVAL", SEED_REDIS, 0) == 300

    def redis(self) -> RespConnection:
        return RespConnection("127.0.0.1", int(self.env["LAB_REDIS_PORT"]), timeout=10)

    def data(self) -> Snapshot:
        tables = {}
        for table in self.sql("select tablename from pg_tables where schemaname = 'public' order by 1").split():
            count, digest = self.sql(f"select count(*), md5(coalesce(string_agg(t::text, '|' order by t::text), '')) "
                                     f"from public.{table} t").split("|")
            tables[table] = (int(count), digest)
        with self.redis() as conn:
            flat = [v.decode() for v in conn.call("EVAL", READ_REDIS, 0)]
        keys = {flat[i]: (flat[i + 1], flat[i + 2], flat[i + 3]) for i in range(0, len(flat), 4)}
        return Snapshot(tables, keys)

    def pg_major(self) -> str:
        return self.sql("show server_version_num")[:2]

    def api_version(self) -> str:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.env['LAB_API_PORT']}/", timeout=5) as answer:
            return json.load(answer)["version"]

    def purge(self) -> None:
        from tests.integration.conftest import purge

        purge(self.client, self.project)


def login_trigger(folder: Path) -> Path:
    """An init script for a NEW PostgreSQL 17 cluster that makes verify fail, deterministically.

    It adds a login event trigger (PostgreSQL 17) to ``template0``, which the restore copies
    into its staging database. The trigger acts only in a database named ``healthcare``: the
    staging database (``healthcare__reconcile_restore``) is loaded and checked untouched, but
    once it is renamed to ``healthcare``, the first connection of apply's verify step creates a
    table there, and verify finds one table more than the backup holds. A stand-in for anything
    in a new server that changes data between the restore and the check.
    """
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "login-trigger.sql"
    script.write_text(textwrap.dedent("""\
        ALTER DATABASE template0 WITH ALLOW_CONNECTIONS true;
        \\c template0
        CREATE FUNCTION public.scenario_login() RETURNS event_trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF current_database() = 'healthcare' AND to_regclass('public.login_audit') IS NULL THEN
            CREATE TABLE public.login_audit (at timestamptz DEFAULT now());
          END IF;
          IF current_database() = 'healthcare' THEN
            INSERT INTO public.login_audit DEFAULT VALUES;
          END IF;
        END $$;
        CREATE EVENT TRIGGER scenario_login ON login EXECUTE FUNCTION public.scenario_login();
        \\c postgres
        ALTER DATABASE template0 WITH ALLOW_CONNECTIONS false;
        """))
    folder.chmod(0o755)
    script.chmod(0o644)
    return folder
