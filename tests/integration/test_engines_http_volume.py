"""HTTP probes against nginx, and generic volume archives (stop, copy, always restart after a
backup; after a restore only once the folders match the backup)."""

from __future__ import annotations

import io
import os
import secrets
import time

import pytest

from reconciler import dockerio
from reconciler.engines import container_ip, engine_for, make_target
from reconciler.engines.base import BackupStats, ProbeStatus
from reconciler.engines.compress import CompressingWriter, DecompressingReader
from reconciler.errors import BackupError, RestoreError
from reconciler.spec.load import load_spec
from reconciler.spec.models import Compression, Kind
from tests.integration.conftest import materialise, purge

pytestmark = pytest.mark.engine

SPEC = """\
version: 1
project: {project}
volumes:
  site: {}
  uploads: { bind: "{uploads}" }
services:
  web:
    kind: http
    image: reconcile-lab/nginx:latest
    health: { http: { port: 80, path: /health, timeout: 2s } }
  files:
    kind: generic
    image: reconcile-lab/nginx:latest
    volumes: ["site:/srv/site", "uploads:/srv/uploads", "{config}:/srv/config:ro"]
    stateful: true
    backup: { stop_service: true }
"""
FILL = r"""
set -e
mkdir -p /srv/site/a/b/c /srv/site/empty /srv/uploads/u
printf 'hello\n' > /srv/site/index.html
printf 'dot' > /srv/site/.hidden
head -c 300000 /dev/urandom > /srv/site/a/b/c/blob.bin
printf 'owned' > /srv/uploads/u/owned.txt && chown 33:33 /srv/uploads/u/owned.txt
chmod 0640 /srv/uploads/u/owned.txt
ln -s ../index.html /srv/site/a/link
"""
LISTING = ("cd /srv && find site uploads -printf '%p %y %m %U:%G %s %l\\n' | sort && "
           "find site uploads -type f -exec sha256sum {} + | sort")


@pytest.fixture(scope="module")
def stack(client, tmp_path_factory):
    """nginx twice: ``web`` (kind http) and ``files`` (generic, with volumes)."""
    project = f"it-{secrets.token_hex(3)}"
    folder = tmp_path_factory.mktemp("vol")
    (folder / "uploads").mkdir()
    (folder / "config").mkdir()
    (folder / "config" / "app.conf").write_text("read-only config\n")
    path = folder / "reconcile.yaml"
    path.write_text(SPEC.replace("{project}", project).replace("{uploads}", str(folder / "uploads"))
                    .replace("{config}", str(folder / "config")))
    loaded = load_spec(path, dict(os.environ))
    try:
        ids = materialise(client, loaded)
        targets = {name: make_target(name, loaded.spec.services[name], cid,
                                     container_ip(dockerio.inspect_container(client, cid)))
                   for name, cid in ids.items()}
        yield targets
    finally:
        purge(client, project)


def wait_for(engine, target, status=ProbeStatus.HEALTHY, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = engine.probe(target, timeout=2)
        if result.status is status:
            return result
        time.sleep(0.3)
    pytest.fail(f"{target.service_name} never became {status}: {engine.probe(target, 2)}")


def run(client, target, script: str) -> str:
    exec_id = client.api.exec_create(target.container_id, ["sh", "-c", script])["Id"]
    output = client.api.exec_start(exec_id).decode()
    assert client.api.exec_inspect(exec_id)["ExitCode"] == 0, output
    return output


def started_at(client, target) -> str:
    return client.api.inspect_container(target.container_id)["State"]["StartedAt"]


def test_http_probe_healthy_wrong_path_and_unreachable(client, stack):
    web = stack["web"]
    engine = engine_for(Kind.HTTP, client)
    result = wait_for(engine, web)
    assert result.details["status_code"] == 200 and result.latency_ms > 0
    wrong = web.service.model_copy(update={"health": web.service.health.model_copy(update={
        "http": web.service.health.http.model_copy(update={"path": "/no-such-page"})})})
    result = engine.probe(make_target("web", wrong, web.container_id, web.host))
    assert result.status is ProbeStatus.UNHEALTHY and result.details["status_code"] == 404
    closed = wrong.model_copy(update={"health": wrong.health.model_copy(update={
        "http": wrong.health.http.model_copy(update={"port": 81})})})
    result = engine.probe(make_target("web", closed, web.container_id, web.host))
    assert result.status is ProbeStatus.UNREACHABLE
    with pytest.raises(BackupError, match="holds no data"):
        engine.backup(web, io.BytesIO())


def test_generic_probe_follows_container_and_healthcheck(client, stack):
    files = stack["files"]
    engine = engine_for(Kind.GENERIC, client)
    assert wait_for(engine, files).details["health"] == "healthy"
    dockerio.stop(client, files.container_id, 5)
    try:
        result = engine.probe(files)
        assert result.status is ProbeStatus.UNHEALTHY and result.details["state"] == "exited"
    finally:
        dockerio.start(client, files.container_id)
    wait_for(engine, files)


def test_volume_round_trip_restarts_the_service(client, stack):
    files = stack["files"]
    engine = engine_for(Kind.GENERIC, client)
    wait_for(engine, files)
    run(client, files, FILL)
    before = run(client, files, LISTING)
    first_start = started_at(client, files)

    dest = io.BytesIO()
    writer = CompressingWriter(dest, Compression.ZSTD)
    stats = engine.backup(files, writer)
    written = writer.finish()
    assert stats.paths == ("/srv/site", "/srv/uploads")  # the read-only config is not data
    assert started_at(client, files) != first_start      # stopped for the copy, started again
    assert client.api.inspect_container(files.container_id)["State"]["Running"]
    assert engine.estimate_size(files) > 300_000

    run(client, files, "rm -rf /srv/site/a /srv/site/.hidden && echo junk > /srv/site/junk "
                       "&& echo changed > /srv/uploads/u/owned.txt")
    restored = engine.restore(files, DecompressingReader(io.BytesIO(dest.getvalue()),
                                                         Compression.ZSTD, written.sha256), stats)
    assert restored.verify is not None and restored.verify.ok
    assert client.api.inspect_container(files.container_id)["State"]["Running"]
    assert run(client, files, LISTING) == before

    run(client, files, "echo extra > /srv/site/extra")
    assert not engine.verify(files, stats).ok


def test_failed_archive_still_restarts_the_service(client, stack):
    files = stack["files"]
    engine = engine_for(Kind.GENERIC, client)
    wait_for(engine, files)
    run(client, files, "head -c 3000000 /dev/urandom > /srv/site/big.bin")
    first_start = started_at(client, files)

    class Full:
        def write(self, data: bytes) -> int:
            raise OSError(28, "No space left on device")

    with pytest.raises(BackupError, match="No space left"):
        engine.backup(files, Full())
    state = client.api.inspect_container(files.container_id)["State"]
    assert state["Running"] and state["StartedAt"] != first_start


def test_truncated_archive_is_refused(client, stack):
    files = stack["files"]
    engine = engine_for(Kind.GENERIC, client)
    wait_for(engine, files)
    dest = io.BytesIO()
    writer = CompressingWriter(dest)
    stats = engine.backup(files, writer)
    written = writer.finish()
    damaged = dest.getvalue()[:-50]
    with pytest.raises(RestoreError, match="left stopped"):
        engine.restore(files, DecompressingReader(io.BytesIO(damaged), Compression.ZSTD,
                                                  written.sha256), stats)
    # the folders hold part of the backup: the service is not started on them
    assert not client.api.inspect_container(files.container_id)["State"]["Running"]
    restored = engine.restore(files, DecompressingReader(io.BytesIO(dest.getvalue()), Compression.ZSTD,
                                                         written.sha256), stats)
    assert restored.verify is not None and restored.verify.ok
    # the engine starts what it stopped; the restore command starts what an earlier attempt left
    # stopped (tests/integration/test_restore_interrupted.py)
    assert not client.api.inspect_container(files.container_id)["State"]["Running"]
    client.api.start(files.container_id)
    wait_for(engine, files)


def test_verify_sees_same_size_edits_owners_and_modes(client, stack):
    """Entry count and bytes stay equal; the tree digest still names what changed, and where."""
    files = stack["files"]
    engine = engine_for(Kind.GENERIC, client)
    wait_for(engine, files)
    run(client, files, "mkdir -p /srv/site/data && printf hello > /srv/site/data/a.txt && "
                       "chown 1234:2345 /srv/site/data/a.txt && chmod 0640 /srv/site/data/a.txt && "
                       "printf same > /srv/uploads/keep.txt")
    stats = engine.backup(files, io.BytesIO())
    assert stats.tree is not None and engine.verify(files, stats).ok
    run(client, files, "touch -d 2001-01-01 /srv/uploads/keep.txt")  # mtime alone is not a change
    assert engine.verify(files, stats).ok

    changes = {"file content": "printf HELLO > /srv/site/data/a.txt",
               "owners": "chown 0:0 /srv/site/data/a.txt", "modes": "chmod 0777 /srv/site/data/a.txt"}
    for aspect, command in changes.items():
        run(client, files, command)
        report = engine.verify(files, stats)
        failed = {check.name.split(" in ")[0]: check.actual for check in report.failures}
        assert aspect in failed and failed["changed entries"] == "/srv/site/data", report.summary()
        counted = BackupStats.from_dict({k: v for k, v in stats.as_dict().items() if k != "tree_digest"})
        assert engine.verify(files, counted).ok  # a backup from before the digest: counts only
    report = engine.verify(files, stats)
    assert {c.name.split(" in ")[0] for c in report.failures} == {
        "file content", "owners", "modes", "changed entries"}
    run(client, files, "rm -rf /srv/site/data")
