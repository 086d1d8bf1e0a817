"""QA soak: many applies in a row on one stack holding data (PostgreSQL, a cache, a generic
service, an app and a worker). Each keeps the data; afterwards nothing is left behind that the
applies did not report as kept, and the journal is rotated instead of growing forever."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest_s3 import empty_and_remove_bucket, raw_client
from tests.integration.conftest import purge

pytestmark = pytest.mark.engine

SPEC = """\
version: 1
project: {project}
state_dir: ./state
volumes: {{ pgdata: {{}}, cachedata: {{}}, files: {{}} }}
networks: {{ backend: {{}} }}
services:
  postgres:
    kind: postgres
    image: reconcile-lab/postgres:15
    env: {{ POSTGRES_PASSWORD: soak-pw-1, POSTGRES_DB: app }}
    volumes: ["pgdata:/var/lib/postgresql/data"]
    networks: [backend]
    stateful: true
    backup: {{ databases: [app] }}
  cache:
    kind: redis
    image: reconcile-lab/redis:7
    command: ["redis-server", "--appendonly", "{aof}"]
    volumes: ["cachedata:/data"]
    networks: [backend]
    stateful: true
  files:
    kind: generic
    image: reconcile-lab/nginx:latest
    env: {{ SOAK_CYCLE: "{cycle}" }}
    volumes: ["files:{path}"]
    networks: [backend]
    stateful: true
  api:
    image: reconcile-lab/app:{app}
    env: {{ DATABASE_URL: "postgresql://postgres:soak-pw-1@postgres:5432/app", REDIS_URL: "redis://cache:6379/0" }}
    depends_on: {{ postgres: healthy, cache: healthy }}
    health: {{ http: {{ port: 8000, path: /health, timeout: 5s }} }}
    networks: [backend]
  worker:
    image: reconcile-lab/app:{app}
    command: ["python3", "/app/worker.py"]
    env: {{ DATABASE_URL: "postgresql://postgres:soak-pw-1@postgres:5432/app", REDIS_URL: "redis://cache:6379/0" }}
    depends_on: {{ postgres: healthy, cache: healthy }}
    networks: [backend]
backup:
  local: {{ path: ./backups }}
  s3: {{ enabled: true, endpoint: "{endpoint}", region: us-east-1, bucket: {bucket}, prefix: soak/, path_style: true }}
  retention: {{ daily: 2, weekly: 1, monthly: 1 }}
"""

# (what changes, spec values): the app image, an infra env var, a cache flag that needs a
# restore, a volume path, nothing
CYCLES = [  # kept short for CI (each is a real recreate); run more by hand
    ("app image", {"app": 2}),
    ("nothing", {}),
    ("cache flag", {"aof": "yes"}),
    ("volume path", {"path": "/srv/data2"}),
    ("cache flag", {"aof": "no"}),
]
OLD_JOURNALS = 103


@pytest.fixture()
def soak(client, s3_endpoint):
    project = f"qasoak-{secrets.token_hex(3)}"
    folder = Path("/tmp/qa-soak") / project
    folder.mkdir(parents=True)
    bucket = project
    s3 = raw_client(s3_endpoint)
    s3.create_bucket(Bucket=bucket)
    yield project, folder, {**os.environ, **s3_endpoint.environ, "NO_COLOR": "1"}, s3, bucket, s3_endpoint.url
    purge(client, project)
    empty_and_remove_bucket(s3, bucket)
    shutil.rmtree(folder, ignore_errors=True)


def cli(folder: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reconciler", "-f", str(folder / "reconcile.yaml"), *args],
                          capture_output=True, text=True, timeout=300, env=env)


def sh(client, container: str, script: str) -> str:
    return client.api.exec_start(client.api.exec_create(container, ["sh", "-c", script])["Id"]).decode().strip()


def old_journal(folder: Path, n: int) -> None:
    """A finished apply of a year ago, as an apply of then wrote it."""
    apply_id = f"20250101T{n // 60:02d}{n % 60:02d}00Z-{n:06x}"
    ts = f"2025-01-01T{n // 60:02d}:{n % 60:02d}:00.000+00:00"
    lines = [{"ts": ts, "apply_id": apply_id, "event": "start", "actions": []},
             {"ts": ts, "apply_id": apply_id, "event": "finish", "result": "ok", "exit_code": 0}]
    (folder / f"{apply_id}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def data(client, project: str, path: str) -> tuple[str, str, str]:
    rows = sh(client, f"{project}-postgres", "psql -U postgres -d app -tAc 'select count(*) from t'")
    return rows, sh(client, f"{project}-cache", "redis-cli dbsize"), sh(client, f"{project}-files", f"cat {path}/note")


def test_many_applies_keep_the_data_leave_nothing_unreported_and_rotate_the_journal(client, soak):
    project, folder, env, s3, bucket, endpoint = soak
    values = {"project": project, "app": 1, "cycle": "a", "aof": "no", "path": "/srv/data",
              "endpoint": endpoint, "bucket": bucket}
    (folder / "reconcile.yaml").write_text(SPEC.format(**values))
    first = cli(folder, env, "apply", "--auto-approve")
    assert first.returncode == 0, first.stdout + first.stderr
    sh(client, f"{project}-postgres", "psql -U postgres -d app -c "
       "'create table t(id int primary key); insert into t select generate_series(1, 300)'")
    sh(client, f"{project}-cache", "for i in $(seq 1 40); do redis-cli set k$i v$i >/dev/null; done")
    sh(client, f"{project}-files", "mkdir -p /srv/data && echo kept > /srv/data/note")
    journal = folder / "state" / "journal"
    for n in range(OLD_JOURNALS):
        old_journal(journal, n)

    unused, applied = set(), [p.name.removesuffix(".jsonl") for p in journal.glob("*.jsonl")
                                   if not p.name.startswith("20250101")]
    for what, change in CYCLES:
        values.update(change)
        (folder / "reconcile.yaml").write_text(SPEC.format(**values))
        result = cli(folder, env, "apply", "--auto-approve", "--json")
        assert result.returncode == 0, f"{what}: {result.stdout[-3000:]}{result.stderr[-3000:]}"
        summary = json.loads(result.stdout.splitlines()[-1])
        assert (summary.get("event") == "no-changes") == (what == "nothing"), (what, summary)
        if summary.get("apply_id"):
            applied.append(summary["apply_id"])
            unused |= set(summary.get("unused_volumes") or [])
        assert data(client, project, values["path"]) == ("300", "40", "kept"), what
        assert "soak-pw-1" not in result.stdout + result.stderr

    # the journal: rotated (was: all 103 of a year ago kept forever), every apply of now listed
    history = json.loads(cli(folder, env, "history", "--json").stdout)
    assert len(history) == 100 + 1, len(history)  # the newest 100 when the last apply began, and it
    assert [r["apply_id"] for r in history if not r["apply_id"].startswith("20250101")] == applied
    assert all(r["result"] == "ok" for r in history)

    # containers: the services' own; volumes: declared or reported kept
    names = {c["Names"][0].lstrip("/") for c in client.api.containers(
        all=True, filters={"label": f"reconcile.project={project}"})}
    assert names == {f"{project}-{s}" for s in ("postgres", "cache", "files", "api", "worker")}, names
    volumes = {v["Name"] for v in client.api.volumes(filters={"label": f"reconcile.project={project}"})["Volumes"]}
    mounted = {m["Name"] for c in client.api.containers(filters={"label": f"reconcile.project={project}"})
               for m in c["Mounts"] if m["Type"] == "volume"}
    assert volumes - mounted <= unused, (volumes, mounted, unused)
    networks = {n["Name"] for n in client.api.networks(filters={"label": f"reconcile.project={project}"})}
    assert networks == {f"{project}_backend"}

    # backups: no temporary or unrecorded files, none left half-uploaded
    backups = folder / "backups"
    recorded = {entry["local_path"] for doc in (json.loads(p.read_text()) for p in backups.glob("metadata/*.json"))
                for entry in doc["services"].values()}
    files = {str(p) for p in backups.rglob("*") if p.is_file() and p.parent.name != "metadata"}
    assert files == recorded, files ^ recorded
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
