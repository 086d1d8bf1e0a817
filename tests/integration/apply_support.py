"""Helpers for the apply tests: run the real CLI in a subprocess, read PostgreSQL, per-test env.

Every test gets its own project name, host ports, state and backup folders (via the lab
spec's ``LAB_*`` variables), so tests never see each other's containers or journals.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest_s3 import free_ports

ROOT = Path(__file__).resolve().parents[2]
LAB_SPEC = ROOT / "specs" / "lab.yaml"
PG_SPEC = """\
version: 1
project: "${env:LAB_PROJECT}"
state_dir: "${env:LAB_STATE_DIR}"
volumes:
  pgdata: {}
networks:
  backend: {}
services:
  postgres:
    profile: infrastructure
    kind: postgres
    image: "reconcile-lab/postgres:${env:LAB_PG_VERSION:-15}"
    env: { POSTGRES_PASSWORD: lab-password, POSTGRES_DB: healthcare, TUNING: "${env:PG_TUNING:-a}" }
    volumes: ["pgdata:/var/lib/postgresql/data"]
    networks: [backend]
    ports: ["127.0.0.1:${env:LAB_PG_PORT}:5432"]
    stateful: true
    protect: true
    health: { timeout: 60s, interval: 1s }
    backup: { databases: [healthcare], critical_tables: [users] }
backup:
  local: { path: "${env:LAB_BACKUP_DIR}" }
  s3:
    enabled: "${env:S3_ENABLED:-false}"
    endpoint: "${env:S3_ENDPOINT:-http://127.0.0.1:9555}"
    bucket: "${env:S3_BUCKET:-apply-tests}"
    required: "${env:S3_REQUIRED:-false}"
"""


def lab_env(project: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of one test's stack (unique ports, folders under ``tmp_path``)."""
    env = {**os.environ, "NO_COLOR": "1", "LAB_PROJECT": project,
           "LAB_STATE_DIR": str(tmp_path / "state"), "LAB_BACKUP_DIR": str(tmp_path / "backups"),
           "S3_ENABLED": "false"}
    names = ("LAB_PG_PORT", "LAB_REDIS_PORT", "LAB_VIDEO_PORT", "LAB_API_PORT")
    env |= {name: str(port) for name, port in zip(names, free_ports(len(names)), strict=True)}
    env.update(extra)
    return env


def pg_spec(tmp_path: Path) -> Path:
    path = tmp_path / "pg.yaml"
    path.write_text(PG_SPEC)
    return path


def pg_stack(client, project: str, tmp_path: Path, rows: int = 5000) -> tuple[Path, dict, str, str]:
    """postgres 15 applied from the small spec and seeded: (spec, env, container, rows' checksum)."""
    spec, env = pg_spec(tmp_path), lab_env(project, tmp_path)
    result = apply(spec, env)
    assert result.returncode == 0, show(result)
    name = f"{project}-postgres"
    return spec, env, name, seed_rows(client, name, rows=rows)


def cli(spec: Path, env: dict, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reconciler", "-f", str(spec), *args],
                          capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)


def apply(spec: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return cli(spec, env, "apply", "--auto-approve", *args)


# Runs the CLI with the journal patched to hold the apply for a while right after it wrote
# its N-th progress line (0-based): a test that kills it then kills it exactly there.
_HOLD_AFTER = """
import sys, time
from reconciler.apply import journal
hold, seen, write = int(sys.argv.pop(1)), [0], journal.Journal.write
def held(self, event, **fields):
    write(self, event, **fields)
    if event in ("action-begin", "step"):
        if seen[0] == hold:
            time.sleep(30)
        seen[0] += 1
journal.Journal.write = held
from reconciler.cli.launch import main
main()
"""


def spawn_apply(spec: Path, env: dict, *args: str, hold_after: int | None = None) -> subprocess.Popen:
    """``reconcile apply`` in the background; ``hold_after`` holds it after that progress line."""
    head = ["-m", "reconciler"] if hold_after is None else ["-c", _HOLD_AFTER, str(hold_after)]
    return subprocess.Popen([sys.executable, *head, "-f", str(spec), "apply", "--auto-approve", "--json",
                             *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)


def show(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def psql(client, container: str, sql: str, db: str = "healthcare") -> str:
    run = client.api.exec_create(container, ["psql", "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1",
                                             "-qtAc", sql])
    out = client.api.exec_start(run["Id"]).decode()
    assert client.api.exec_inspect(run["Id"])["ExitCode"] == 0, out
    return out.strip()


def seed_rows(client, container: str, rows: int = 5000) -> str:
    """Users and appointments with varied types; returns the content checksum."""
    psql(client, container, f"""
        create table users (id int primary key, name text, born date, score numeric(8,2), tags text[]);
        insert into users select g, 'user ' || g || E' \\u00e9', date '1970-01-01' + g,
               g * 1.25, array['a' || g, 'b'] from generate_series(1, {rows}) g;
        create table appointments (id bigserial primary key, user_id int references users,
               at timestamptz, note jsonb);
        insert into appointments (user_id, at, note) select g, timestamptz '2024-01-01' + g * interval '1 h',
               jsonb_build_object('n', g) from generate_series(1, {rows}) g;""")
    return checksum(client, container)


def checksum(client, container: str) -> str:
    """A digest of every row of both tables, in key order: equal means identical content."""
    return psql(client, container, """
        select md5((select string_agg(u::text, '|' order by id) from users u) ||
                   (select string_agg(a::text, '|' order by id) from appointments a))""")


def containers(client, project: str) -> dict[str, dict]:
    """Name → inspect document of every container of the project."""
    found = client.api.containers(all=True, filters={"label": f"reconcile.project={project}"})
    return {c["Names"][0].lstrip("/"): client.api.inspect_container(c["Id"]) for c in found}


def journal_events(state_dir: Path, before: set[Path] = frozenset()) -> list[dict]:
    """Events of the newest journal not in ``before`` (a torn last line is skipped)."""
    files = sorted(set((state_dir / "journal").glob("*.jsonl")) - set(before))
    if not files:
        return []
    events = []
    for line in files[-1].read_text().splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            break
    return events


def wait_for(predicate, timeout: float = 120, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out waiting")
