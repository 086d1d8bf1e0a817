"""Volume archives give back the same tree: sparse files with their holes, modification times
to the nanosecond; an image without GNU tar still backs up (noted, reduced), and archives made
the old way still restore and verify."""

from __future__ import annotations

import io
import json
import os
import secrets

import pytest

from reconciler import dockerio
from reconciler.engines import container_ip, engine_for, make_target
from reconciler.engines.base import BackupStats
from reconciler.engines.compress import CompressingWriter, DecompressingReader
from reconciler.errors import RestoreError
from reconciler.spec.load import load_spec
from reconciler.spec.models import Compression, Kind
from tests.integration.conftest import materialise, purge
from tests.integration.test_engines_http_volume import run, wait_for

pytestmark = pytest.mark.engine

SPEC = """\
version: 1
project: {project}
volumes:
  data: {}
services:
  files:
    kind: generic
    image: reconcile-lab/nginx:latest
    volumes: ["data:/srv/data"]
    stateful: true
    backup: { stop_service: true }
  plain:
    kind: generic
    image: {plain_image}
    volumes: ["data:/srv/data"]
"""  # not stateful: validate refuses two stateful services on one volume; the engine archives it alike
# An image whose tar does not say it is GNU tar (as BusyBox's does not): the fallback path.
NOT_GNU = b"""FROM reconcile-lab/nginx:latest
RUN mv /usr/bin/tar /usr/bin/tar.real && printf '%s\\n' '#!/bin/sh' \
    'case "$1" in --version) echo "faketar 0.1"; exit 0;; esac' 'exec /usr/bin/tar.real "$@"' \
    > /usr/bin/tar && chmod 0755 /usr/bin/tar
"""
GIB = 1 << 30
FILL = r"""
set -e
rm -rf /srv/data/* && mkdir -p /srv/data/sub
truncate -s {size} /srv/data/sparse.img
printf head | dd of=/srv/data/sparse.img conv=notrunc 2>/dev/null
printf middle | dd of=/srv/data/sparse.img bs=1 seek=$(({size} / 2 + 3)) conv=notrunc 2>/dev/null
printf tail | dd of=/srv/data/sparse.img bs=1 seek=$(({size} - 4)) conv=notrunc 2>/dev/null
printf 'plain\n' > /srv/data/sub/plain.txt
printf 'caf\303\251\n' > "/srv/data/sub/$(printf 'caf\303\251.txt')"
ln -s plain.txt /srv/data/sub/link
touch -d '2024-01-02 03:04:05.123456789' /srv/data/sub/plain.txt
touch -d '2023-05-06 07:08:09.987654321' /srv/data/sparse.img
touch -h -d '2022-01-01 00:00:00.5' /srv/data/sub/link
touch -d '2021-02-03 04:05:06.000000001' /srv/data/sub /srv/data
"""
STAT = "cd /srv && find data -exec stat -c '%n|%s|%b|%y|%a|%u:%g' {} + | sort"
HASHES = " && find data -type f -exec sha256sum {} +"
WIPE = "rm -rf /srv/data/* && echo junk > /srv/data/junk && touch /srv/data"


@pytest.fixture(scope="module")
def stack(client, tmp_path_factory):
    """``files`` (GNU tar in its image) and ``plain`` (a tar that is not), one volume for both."""
    project = f"it-{secrets.token_hex(3)}"
    tag = f"reconcile-lab/it-not-gnu-tar:{project}"
    client.images.build(fileobj=io.BytesIO(NOT_GNU), tag=tag, rm=True, forcerm=True)
    folder = tmp_path_factory.mktemp("fidelity")
    path = folder / "reconcile.yaml"
    path.write_text(SPEC.replace("{project}", project).replace("{plain_image}", tag))
    loaded = load_spec(path, dict(os.environ))
    try:
        ids = materialise(client, loaded)
        yield {name: make_target(name, loaded.spec.services[name], cid,
                                 container_ip(dockerio.inspect_container(client, cid)))
               for name, cid in ids.items()}
    finally:
        purge(client, project)
        client.images.remove(tag, force=True)


def listing(client, target, hashes: bool = True) -> dict[str, list[str]]:
    lines = run(client, target, STAT + HASHES if hashes else STAT).splitlines()
    return {line.split("|", 1)[0]: line.split("|")[1:] for line in lines if "|" in line} | {
        "sha256": sorted(line for line in lines if "|" not in line)}


def backup(engine, target) -> tuple[BackupStats, bytes, str]:
    dest = io.BytesIO()
    writer = CompressingWriter(dest, Compression.ZSTD)
    stats = engine.backup(target, writer)
    written = writer.finish()
    # as the metadata file keeps it
    return BackupStats.from_dict(json.loads(json.dumps(stats.as_dict()))), dest.getvalue(), written.sha256


def restore(engine, target, stats, archive: bytes, sha256: str):
    return engine.restore(target, DecompressingReader(io.BytesIO(archive), Compression.ZSTD, sha256), stats)


def test_sparse_files_and_nanosecond_mtimes_come_back(client, stack):
    files = stack["files"]
    engine = engine_for(Kind.GENERIC, client)
    wait_for(engine, files)
    run(client, files, FILL.replace("{size}", str(GIB)))
    before = listing(client, files)
    assert before["data/sub/plain.txt"][2].startswith("2024-01-02 03:04:05.123456789")

    stats, archive, sha256 = backup(engine, files)
    assert len(archive) < 1 << 20 and stats.raw_bytes < 1 << 20  # the holes are not stored
    assert stats.content_bytes == GIB + len(b"plain\n") + len("café\n".encode())  # real sizes, as restored
    assert stats.tree is not None and stats.tree.archive is not None
    assert stats.tree.archive["format"] == "posix" and stats.tree.archive["sparse_files"] == 1
    assert "GNU tar" in str(stats.tree.archive["tar"]) and "note" not in stats.tree.archive

    run(client, files, WIPE)
    restored = restore(engine, files, stats, archive, sha256)
    assert restored.verify is not None and restored.verify.ok, restored.verify.summary()
    after = listing(client, files)
    assert after == before  # names, sizes, blocks on disk, mtimes to the nanosecond, modes, owners, bytes
    assert int(after["data/sparse.img"][1]) < 2048  # under 1 MiB allocated for a 1 GiB file
    assert engine.verify(files, stats).ok


def test_an_image_without_gnu_tar_backs_up_the_old_way_and_says_so(client, stack):
    """The fallback archive is the old format: it restores (densely, whole seconds) and verifies,
    also in an image with GNU tar and as a backup whose metadata predates the format note; and
    a tree archived sparse verifies against its digest."""
    files, plain = stack["files"], stack["plain"]
    engine = engine_for(Kind.GENERIC, client)
    wait_for(engine, plain)
    size = 64 << 20
    run(client, files, FILL.replace("{size}", str(size)))
    before = listing(client, files)

    stats, archive, sha256 = backup(engine, plain)
    assert stats.tree is not None and stats.tree.archive is not None
    note = stats.tree.archive
    assert note["format"] == "plain" and note["tar"] == "faketar 0.1" and "not GNU tar" in str(note["note"])
    assert stats.raw_bytes > size  # dense: every zero stored
    assert engine.verify(files, stats).ok  # live tree archived sparse (pax) vs the dense digest

    data = stats.as_dict()
    del data["tree_digest"]["archive"]  # type: ignore[union-attr]
    old = BackupStats.from_dict(data)  # metadata written before the note existed
    for target, used in ((files, old), (plain, stats)):
        run(client, files, WIPE)
        restored = restore(engine, target, used, archive, sha256)
        assert restored.verify is not None and restored.verify.ok, restored.verify.summary()
        after = listing(client, files)
        assert after["sha256"] == before["sha256"] and after.keys() == before.keys()
        assert after["data/sparse.img"][0] == str(size) and int(after["data/sparse.img"][1]) >= size // 512
        assert after["data/sub/plain.txt"][2].startswith("2024-01-02 03:04:05.000000000")  # whole seconds
        assert engine.verify(files, old).ok and engine.verify(files, stats).ok


def test_a_sparse_archive_is_refused_before_wiping_by_a_tar_that_cannot_restore_it(client, stack):
    """Refused by the pre-check (nothing stopped), and by the unpacking helper itself (nothing
    wiped, the service started again) when called without it."""
    files, plain = stack["files"], stack["plain"]
    engine = engine_for(Kind.GENERIC, client)
    wait_for(engine, plain)
    run(client, files, FILL.replace("{size}", str(GIB)) + "head -c 6000000 /dev/urandom > /srv/data/random.bin")
    stats, archive, sha256 = backup(engine, files)
    assert stats.raw_bytes > 6_000_000  # more than the pipes hold: the refusing helper reads it all
    run(client, files, "echo after > /srv/data/after")
    before = listing(client, files, hashes=False)
    first_start = client.api.inspect_container(plain.container_id)["State"]["StartedAt"]
    with pytest.raises(RestoreError, match="sparse file") as refused:
        engine.restore_precheck(plain, stats)
    assert "nothing was stopped" in refused.value.hint
    assert client.api.inspect_container(plain.container_id)["State"]["StartedAt"] == first_start
    with pytest.raises(RestoreError, match="sparse file") as refused:
        restore(engine, plain, stats, archive, sha256)
    assert "nothing was wiped" in refused.value.hint
    assert listing(client, files, hashes=False) == before  # not wiped
    assert client.api.inspect_container(plain.container_id)["State"]["Running"]  # started again
    engine.restore_precheck(files, stats)  # GNU tar: no refusal
