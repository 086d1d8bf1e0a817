"""S3Store against a misbehaving S3 server: moto behind a fault-injecting proxy
(``tests/faultproxy.py``) that resets, truncates, stalls, corrupts and refuses requests.

What the operator is owed whatever the provider does: a transient fault is retried and the
operation succeeds or fails with a StorageError that names the store and says what to do
(never a raw urllib3 exception), in a bounded time; a copy that fails its checksum never
replaces a good file; no temporary file is left; no credential appears anywhere.
"""

from __future__ import annotations

import hashlib
import os
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.errors import StorageError
from reconciler.spec.models import S3Store as S3Settings
from reconciler.storage.base import S3_TIMEOUT_REF
from reconciler.storage.s3 import S3Store
from tests.conftest_s3 import FAST_RETRY, TEST_ACCESS_KEY, TEST_SECRET_KEY, S3Endpoint
from tests.faultproxy import Action, FaultProxy, Rule

pytestmark = pytest.mark.s3

KEY = "postgres/postgres-2026-11-28-020000.sql.zst"
DATA_GET = r"/backups/postgres/.*\.sql\.zst$"  # a GET of the data object (not a listing)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_no_secrets(exc: BaseException) -> None:
    text = "\n".join([str(exc), getattr(exc, "hint", "") or "", repr(exc), *traceback.format_exception(exc)])
    assert TEST_ACCESS_KEY not in text and TEST_SECRET_KEY not in text


@pytest.fixture()
def proxy(s3_endpoint: S3Endpoint) -> Iterator[FaultProxy]:
    with FaultProxy(s3_endpoint.url) as running:
        yield running


@pytest.fixture()
def faulty(s3_store: S3Store, s3_settings: S3Settings, proxy: FaultProxy, s3_endpoint: S3Endpoint) -> S3Store:
    """The test's bucket (made by ``s3_store``), reached through the proxy."""
    settings = s3_settings.model_copy(update={"endpoint": proxy.url})
    return S3Store.from_env(settings, s3_endpoint.environ, retry=FAST_RETRY)


@pytest.fixture()
def stored(s3_store: S3Store) -> bytes:
    data = os.urandom(300_000)
    s3_store.write_bytes(KEY, data)
    return data


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# -- downloads -------------------------------------------------------------------------


@pytest.mark.parametrize("action", [Action.RESET_BODY, Action.TRUNCATE])
def test_a_download_cut_off_once_is_retried_and_succeeds(faulty, proxy, stored, tmp_path, action):
    """A connection reset or closed halfway through a body is a network hiccup: retried, not
    a raw urllib3 error (reset) nor a "corrupt" S3 copy (truncated)."""
    proxy.add(Rule(action, "GET", DATA_GET))
    dest = faulty.get(KEY, tmp_path / "restore" / "dump", sha(stored))
    assert dest.read_bytes() == stored
    assert proxy.count("GET", DATA_GET) == 2
    assert leftovers(tmp_path / "restore") == ["dump"]


@pytest.mark.parametrize("action", [Action.RESET_BODY, Action.TRUNCATE])
def test_a_download_cut_off_every_time_fails_as_a_broken_connection(faulty, proxy, stored, tmp_path, action):
    proxy.add(Rule(action, "GET", DATA_GET, times=None))
    with pytest.raises(StorageError) as caught:
        faulty.get(KEY, tmp_path / "restore" / "dump", sha(stored))
    assert "connection to S3 endpoint" in caught.value.message and "broke" in caught.value.message
    assert faulty.bucket in caught.value.message or proxy.url.split("//")[1] in caught.value.message
    assert "retried" in caught.value.hint
    assert proxy.count("GET", DATA_GET) == FAST_RETRY.attempts  # ours: botocore does not retry a body
    assert leftovers(tmp_path / "restore") == []
    assert_no_secrets(caught.value)


@pytest.mark.parametrize("action", [Action.RESET_BODY, Action.TRUNCATE])
def test_reading_metadata_cut_off_once_is_retried(faulty, proxy, stored, action):
    proxy.add(Rule(action, "GET", DATA_GET))
    assert faulty.read_bytes(KEY) == stored


def test_reading_metadata_reset_every_time_is_a_storage_error(faulty, proxy, stored):
    proxy.add(Rule(Action.RESET_BODY, "GET", DATA_GET, times=None))
    with pytest.raises(StorageError, match="broke while trying to download") as caught:
        faulty.read_bytes(KEY)
    assert_no_secrets(caught.value)


def test_a_body_that_stalls_fails_in_bounded_time_as_a_timeout(faulty, proxy, stored, tmp_path, monkeypatch,
                                                               s3_settings, s3_endpoint):
    """Headers sent, then nothing: the socket's read timeout ends it, reported as the stuck
    server it is (not a urllib3 traceback), and not retried (each attempt would wait it out)."""
    from reconciler.storage import s3 as s3_module

    monkeypatch.setattr(s3_module, "READ_TIMEOUT", 0.5)
    settings = s3_settings.model_copy(update={"endpoint": proxy.url})
    store = S3Store.from_env(settings, s3_endpoint.environ, retry=FAST_RETRY)
    proxy.add(Rule(Action.STALL_BODY, "GET", DATA_GET, times=None, seconds=30))
    started = time.monotonic()
    with pytest.raises(StorageError, match="did not answer in time") as caught:
        store.get(KEY, tmp_path / "restore" / "dump", sha(stored))
    assert caught.value.ref == S3_TIMEOUT_REF
    assert time.monotonic() - started < 5
    assert leftovers(tmp_path / "restore") == []


def test_a_corrupt_body_never_replaces_the_good_local_file(faulty, proxy, stored, tmp_path):
    local = tmp_path / "backups" / "dump"
    local.parent.mkdir()
    local.write_bytes(stored)
    proxy.add(Rule(Action.CORRUPT, "GET", DATA_GET, times=None))
    with pytest.raises(StorageError, match="checksum mismatch"):
        faulty.get(KEY, local, sha(stored))
    assert local.read_bytes() == stored
    assert leftovers(local.parent) == ["dump"]


# -- uploads ---------------------------------------------------------------------------


@pytest.fixture()
def big_file(tmp_path) -> tuple[Path, str]:
    path = tmp_path / "big.sql.zst"
    path.write_bytes(os.urandom(11 * 1024 * 1024))  # 3 parts of 5 MiB
    return path, sha(path.read_bytes())


@pytest.mark.parametrize("rule", [
    Rule(Action.ERROR, "PUT", r"partNumber=2", status=503, code="SlowDown"),
    Rule(Action.RESET_UPLOAD, "PUT", r"partNumber=3"),
    Rule(Action.ERROR, "POST", r"uploadId=", status=500, code="InternalError"),
], ids=["part-slowdown", "part-reset", "complete-500"])
def test_a_multipart_upload_survives_one_transient_fault(faulty, proxy, big_file, s3_client, s3_settings, rule):
    path, digest = big_file
    proxy.add(rule)
    faulty.put(path, KEY, digest)
    head = s3_client.head_object(Bucket=s3_settings.bucket, Key=f"backups/{KEY}")
    assert head["ContentLength"] == path.stat().st_size and head["Metadata"]["sha256"] == digest
    assert not s3_client.list_multipart_uploads(Bucket=s3_settings.bucket).get("Uploads")


@pytest.mark.parametrize("size", [300_000, 11 * 1024 * 1024], ids=["single", "multipart"])
def test_an_upload_damaged_on_the_way_once_is_refused_and_sent_again(faulty, proxy, s3_client, s3_settings,
                                                                     tmp_path, size):
    """A byte flipped in transit was stored under our SHA-256 and the backup said "S3: ok":
    the damage showed only when a restore needed that copy. Every upload request now carries
    a Content-MD5, which S3 checks (BadDigest), and the upload is retried."""
    path = tmp_path / "dump"
    path.write_bytes(os.urandom(size))
    digest = sha(path.read_bytes())
    proxy.add(Rule(Action.CORRUPT_UPLOAD, "PUT", r"/backups/postgres/"))
    faulty.put(path, KEY, digest)
    assert [what for _, _, what in proxy.requests].count("400") == 1
    stored = s3_client.get_object(Bucket=s3_settings.bucket, Key=f"backups/{KEY}")["Body"].read()
    assert sha(stored) == digest


def test_an_upload_damaged_every_time_fails_and_says_so(faulty, proxy, big_file, s3_client, s3_settings):
    path, digest = big_file
    proxy.add(Rule(Action.CORRUPT_UPLOAD, "PUT", r"partNumber=2", times=None))
    with pytest.raises(StorageError, match="BadDigest") as caught:
        faulty.put(path, KEY, digest)
    assert "damaged on its way to S3" in caught.value.hint
    assert not s3_client.list_multipart_uploads(Bucket=s3_settings.bucket).get("Uploads")
    assert "Contents" not in s3_client.list_objects_v2(Bucket=s3_settings.bucket)
    assert_no_secrets(caught.value)


def test_a_multipart_upload_refused_for_good_is_aborted(faulty, proxy, big_file, s3_client, s3_settings):
    path, digest = big_file
    proxy.add(Rule(Action.ERROR, "PUT", r"partNumber=2", status=403, code="AccessDenied", times=None))
    with pytest.raises(StorageError) as caught:
        faulty.put(path, KEY, digest)
    assert "check S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY" in caught.value.hint
    assert proxy.count("PUT", r"partNumber=2") == 1  # a refusal is not retried
    assert not s3_client.list_multipart_uploads(Bucket=s3_settings.bucket).get("Uploads")
    assert "Contents" not in s3_client.list_objects_v2(Bucket=s3_settings.bucket)
    assert_no_secrets(caught.value)


def test_a_listing_of_more_than_1000_keys_is_complete(faulty, proxy, s3_client, s3_settings):
    from concurrent.futures import ThreadPoolExecutor

    def put(i: int) -> None:
        s3_client.put_object(Bucket=s3_settings.bucket, Key=f"backups/dragonfly/dragonfly-{i:05d}.bin", Body=b"x")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(1234)))
    proxy.add(Rule(Action.ERROR, "GET", r"list-type=2.*continuation-token", status=503, code="SlowDown"))
    assert len(faulty.list("dragonfly/")) == 1234
    assert proxy.count("GET", "list-type=2") >= 3  # two pages, one of them refused once


# -- answers that are not S3's ---------------------------------------------------------


@pytest.mark.parametrize(("method", "call"), [
    ("GET", lambda store: store.list()),
    ("GET", lambda store: store.list("metadata/")),
    ("PUT", lambda store: store.write_bytes("metadata/backup-1.json", b"{}")),
], ids=["list", "list-metadata", "upload"])
def test_a_bucket_answered_404_by_something_else_is_not_a_pruned_copy(faulty, proxy, method, call):
    """A 404 with no S3 error code (a web server at S3_ENDPOINT, a reverse proxy with the
    wrong path) to a listing or an upload: the bucket or endpoint is wrong; no copy "may have
    been pruned"."""
    proxy.add(Rule(Action.ERROR, method, None, status=404, code="", times=None))
    with pytest.raises(StorageError) as caught:
        call(faulty)
    assert "pruned" not in caught.value.hint and "not found in bucket" not in caught.value.message
    assert faulty.bucket in caught.value.message and "404" in caught.value.message
    assert "backup.s3.bucket" in caught.value.hint and "backup.s3.endpoint is the S3 server" in caught.value.hint
    assert proxy.count(method) == 1  # not retried
    assert_no_secrets(caught.value)


def test_deleting_a_key_the_provider_calls_missing_is_done(faulty, proxy, stored):
    """Some S3-compatible stores answer 404 NoSuchKey to deleting a missing key, where AWS
    answers 204: it is deleted either way, or a prune cut short could never be finished."""
    proxy.add(Rule(Action.ERROR, "DELETE", DATA_GET, status=404, code="NoSuchKey", times=None))
    faulty.delete(KEY)
    assert proxy.count("DELETE") == 1


def test_a_full_disk_while_downloading_names_the_local_file_not_the_key(faulty, stored, tmp_path, monkeypatch):
    import errno

    from reconciler.storage import s3 as s3_module

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(s3_module, "copy_hashing", full)
    dest = tmp_path / "restore" / "dump"
    with pytest.raises(StorageError, match="disk full") as caught:
        faulty.get(KEY, dest, sha(stored))
    assert str(dest) in caught.value.message and str(dest) in caught.value.hint
    assert leftovers(dest.parent) == []
