"""S3Store against a real S3 server over HTTP (moto in server mode; see tests/conftest_s3.py).

Nothing is mocked in-process: requests are signed, sent over a socket and parsed, so
path-style addressing, the checksum settings, multipart and error translation are the
ones production will see.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import traceback
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from reconciler.errors import StorageError
from reconciler.spec.models import Retention
from reconciler.spec.models import S3Store as S3Settings
from reconciler.storage.base import (
    Store,
    StoredObject,
    data_key,
    metadata_key,
    sha256_file,
)
from reconciler.storage.local import LocalStore
from reconciler.storage.prune import prune_store
from reconciler.storage.s3 import MAX_PARTS, MIB, RetryPolicy, S3Store, part_size_bytes
from tests.conftest_s3 import FAST_RETRY, TEST_ACCESS_KEY, TEST_SECRET_KEY, closed_port

KEY = "postgres/postgres-2026-11-28-020000.sql.zst"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def full_error_text(exc: BaseException) -> str:
    """Everything a log could show about an error: message, hint, repr and traceback."""
    hint = getattr(exc, "hint", "")
    return "\n".join([str(exc), hint, repr(exc), *traceback.format_exception(exc)])


def assert_no_secrets(text: str) -> None:
    assert TEST_ACCESS_KEY not in text
    assert TEST_SECRET_KEY not in text


# -- pure helpers (no server) ------------------------------------------------------------

@pytest.mark.parametrize(("size", "part_mb", "expected"), [
    (0, 64, 64 * MIB),
    (20 * MIB, 5, 5 * MIB),
    (64 * MIB * MAX_PARTS, 64, 64 * MIB),
    (64 * MIB * MAX_PARTS + 1, 64, 65 * MIB),
    (1024 * 1024 * MIB, 5, 105 * MIB),  # 1 TiB with 5 MiB parts would need 209,716 parts
])
def test_part_size_keeps_the_part_count_under_the_limit(size, part_mb, expected):
    chosen = part_size_bytes(size, part_mb)
    assert chosen == expected
    assert -(-size // chosen) <= MAX_PARTS


def test_missing_credentials_name_the_variables_not_values():
    settings = S3Settings(enabled=True, endpoint="http://127.0.0.1:1", bucket="b-123")
    with pytest.raises(StorageError) as caught:
        S3Store.from_env(settings, {"S3_ACCESS_KEY_ID": TEST_ACCESS_KEY})
    assert "S3_SECRET_ACCESS_KEY" in caught.value.message
    assert "S3_ACCESS_KEY_ID" not in caught.value.message  # that one is set
    assert_no_secrets(full_error_text(caught.value))


def test_empty_bucket_setting_is_refused():
    with pytest.raises(StorageError, match="bucket is empty"):
        S3Store(S3Settings(enabled=True, bucket=""), "a", "b")


def test_describe_and_repr_hide_credentials_and_user_info():
    settings = S3Settings(enabled=True, endpoint="https://user:pw@s3.example.com:8443",
                          bucket="backups-1")
    store = S3Store(settings, TEST_ACCESS_KEY, TEST_SECRET_KEY)
    for text in (store.describe(), repr(store)):
        assert_no_secrets(text)
        assert "pw" not in text and "user" not in text
        assert "s3.example.com:8443" in text


# -- against the server ------------------------------------------------------------------


@pytest.mark.s3
def test_s3_store_is_a_store(s3_store):
    assert isinstance(s3_store, Store)


@pytest.mark.s3
def test_put_get_round_trip_with_checksum_in_metadata(s3_store, s3_client, s3_settings, tmp_path):
    src = tmp_path / "dump"
    src.write_bytes(os.urandom(300_000))
    digest = sha256_file(src)
    uploaded, downloaded = [], []
    assert s3_store.put(src, KEY, f"sha256:{digest}", uploaded.append) == StoredObject(KEY, 300_000, digest)
    head = s3_client.head_object(Bucket=s3_settings.bucket, Key=f"backups/{KEY}")
    assert head["Metadata"]["sha256"] == digest
    dest = s3_store.get(KEY, tmp_path / "restore" / "dump", digest, downloaded.append)
    assert dest.read_bytes() == src.read_bytes()
    assert sum(uploaded) == sum(downloaded) == 300_000  # what a progress bar is told
    assert oct(dest.stat().st_mode & 0o777) == oct(0o600)
    assert s3_store.exists(KEY) and not s3_store.exists("postgres/other.sql.zst")


@pytest.mark.s3
def test_corrupt_object_is_detected_and_no_dest_is_left(s3_store, s3_client, s3_settings,
                                                        tmp_path):
    data = b"the real dump" * 1000
    s3_store.write_bytes(KEY, data)
    s3_client.put_object(Bucket=s3_settings.bucket, Key=f"backups/{KEY}",
                         Body=b"X" + data[1:], Metadata={"sha256": sha(data)})
    dest = tmp_path / "restore" / "dump"
    with pytest.raises(StorageError, match="checksum mismatch") as caught:
        s3_store.get(KEY, dest, sha(data))
    assert caught.value.hint
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []


@pytest.mark.s3
def test_metadata_disagreeing_with_expected_is_a_mismatch(s3_store, s3_client, s3_settings,
                                                          tmp_path):
    data = b"dump"
    s3_client.put_object(Bucket=s3_settings.bucket, Key=f"backups/{KEY}", Body=data,
                         Metadata={"sha256": sha(b"something else")})
    with pytest.raises(StorageError, match="checksum mismatch"):
        s3_store.get(KEY, tmp_path / "d", sha(data))
    assert not (tmp_path / "d").exists()


@pytest.mark.s3
def test_list_and_delete_with_prefix(s3_store, s3_client, s3_settings):
    for key in ["postgres/a.sql.zst", "postgres/b.sql.zst", "dragonfly/a.bin",
                "metadata/backup-1.json"]:
        s3_store.write_bytes(key, b"12345")
    s3_client.put_object(Bucket=s3_settings.bucket, Key="elsewhere/x", Body=b"not ours")
    assert [o.key for o in s3_store.list("postgres/")] == ["postgres/a.sql.zst",
                                                           "postgres/b.sql.zst"]
    assert s3_store.list("dragonfly/") == [StoredObject("dragonfly/a.bin", 5, "")]
    assert len(s3_store.list()) == 4  # the prefix scopes us to backups/
    s3_store.delete("postgres/a.sql.zst")
    s3_store.delete("postgres/a.sql.zst")  # idempotent
    assert [o.key for o in s3_store.list("postgres/")] == ["postgres/b.sql.zst"]
    assert json.loads(s3_store.read_bytes("metadata/backup-1.json")) == 12345


@pytest.mark.s3
def test_multipart_upload_of_20_mb_with_5_mib_parts(s3_store, s3_client, s3_settings, tmp_path):
    src = tmp_path / "big"
    src.write_bytes(os.urandom(20 * 1000 * 1000))
    digest = sha256_file(src)
    s3_store.put(src, KEY, digest)
    head = s3_client.head_object(Bucket=s3_settings.bucket, Key=f"backups/{KEY}")
    assert head["ETag"].strip('"').endswith("-4")  # 20 MB / 5 MiB → 4 parts
    assert head["ContentLength"] == src.stat().st_size
    dest = s3_store.get(KEY, tmp_path / "out", digest)
    assert sha256_file(dest) == digest


@pytest.mark.s3
def test_missing_object_and_missing_bucket_have_hints(s3_endpoint, s3_store, tmp_path):
    with pytest.raises(StorageError, match="not found") as caught:
        s3_store.get("postgres/nope.sql.zst", tmp_path / "x", sha(b""))
    assert "backups list" in caught.value.hint
    ghost = S3Settings(enabled=True, endpoint=s3_endpoint.url, bucket="no-such-bucket-xyz")
    store = S3Store.from_env(ghost, s3_endpoint.environ, retry=FAST_RETRY)
    with pytest.raises(StorageError) as caught:
        store.write_bytes("metadata/backup-1.json", b"{}")
    assert "create bucket no-such-bucket-xyz" in caught.value.hint
    assert_no_secrets(full_error_text(caught.value))


@pytest.mark.s3
def test_unreachable_endpoint_fails_fast_with_a_hint(tmp_path):
    settings = S3Settings(enabled=True, endpoint=f"http://127.0.0.1:{closed_port()}",
                          bucket="backups-1")
    store = S3Store(settings, TEST_ACCESS_KEY, TEST_SECRET_KEY, retry=FAST_RETRY)
    src = tmp_path / "f"
    src.write_bytes(b"x")
    for attempt in (lambda: store.put(src, KEY, sha(b"x")), lambda: store.list(),
                    lambda: store.get(KEY, tmp_path / "out", sha(b"x"))):
        started = time.monotonic()
        with pytest.raises(StorageError, match="cannot reach S3 endpoint") as caught:
            attempt()
        assert time.monotonic() - started < 10
        assert "check backup.s3.endpoint and the network" in caught.value.hint
        assert_no_secrets(full_error_text(caught.value))
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_a_server_that_never_answers_fails_in_bounded_time_without_our_retries(tmp_path, monkeypatch):
    """A stuck S3 (it takes the connection, then nothing) held a backup for over 11 minutes:
    botocore's attempts each waited out the read timeout, inside our own retries."""
    import socket
    import threading

    from reconciler.backup import run as backup_run
    from reconciler.storage import s3 as s3_module

    monkeypatch.setattr(s3_module, "READ_TIMEOUT", 0.3)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted = []

    def take_and_say_nothing() -> None:
        try:
            while True:
                accepted.append(listener.accept()[0])
        except OSError:  # the listener is closed: the test is over
            return

    threading.Thread(target=take_and_say_nothing, daemon=True).start()
    settings = S3Settings(enabled=True, endpoint=f"http://127.0.0.1:{listener.getsockname()[1]}", bucket="b-1")
    store = S3Store(settings, TEST_ACCESS_KEY, TEST_SECRET_KEY, retry=RetryPolicy(attempts=3, wait_initial=0.01))
    started = time.monotonic()
    with pytest.raises(StorageError, match="did not answer in time") as caught:
        store.abort_stale_uploads()
    assert caught.value.ref == "storage.s3-timeout" and "stuck" in caught.value.hint
    assert time.monotonic() - started < 5 and len(accepted) <= 4  # botocore's attempts, not 3 times those
    with pytest.raises(StorageError, match="did not answer"):  # the copy is not attempted after it
        backup_run._abort_stale_uploads(store, lambda _: None)
    listener.close()
    for connection in accepted:
        connection.close()


@pytest.mark.s3
def test_bad_credentials_get_a_hint_and_never_appear(s3_auth_endpoint, tmp_path):
    settings = S3Settings(enabled=True, endpoint=s3_auth_endpoint.url, bucket="backups-1")
    store = S3Store(settings, TEST_ACCESS_KEY, TEST_SECRET_KEY, retry=FAST_RETRY)
    src = tmp_path / "f"
    src.write_bytes(b"x")
    for attempt in (lambda: store.put(src, KEY, sha(b"x")), lambda: store.list(),
                    lambda: store.read_bytes(KEY), lambda: store.exists(KEY),
                    lambda: store.get(KEY, tmp_path / "out", sha(b"x"))):
        with pytest.raises(StorageError) as caught:
            attempt()
        assert "check S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY" in caught.value.hint
        assert_no_secrets(full_error_text(caught.value))


# -- prune on both stores ----------------------------------------------------------------

T0 = datetime(2026, 10, 20, 2, 0, tzinfo=timezone.utc)


def write_backup(store: Store, when: datetime, verified: bool = False) -> None:
    backup_id = when.strftime("%Y%m%d-%H%M%S")
    services = {}
    for service, suffix in (("postgres", ".sql.zst"), ("dragonfly", ".bin")):
        key = data_key(service, when, suffix)
        obj = store.write_bytes(key, f"{service} {backup_id}".encode())
        services[service] = {"file": Path(key).name, "checksum": f"sha256:{obj.sha256}"}
    doc = {"backup_id": backup_id, "timestamp": when.isoformat(), "verified": verified,
           "services": services}
    store.write_bytes(metadata_key(backup_id), json.dumps(doc).encode())


@pytest.mark.s3
def test_prune_on_s3_and_local_with_a_real_decision(s3_store, tmp_path):
    local = LocalStore(tmp_path / "backups")
    nightly = [T0 + timedelta(days=i) for i in range(40)]  # 2026-10-20 … 2026-11-28
    for store in (local, s3_store):
        for when in nightly:
            write_backup(store, when, verified=(when.day == 1 and when.month == 11))
    s3_store.delete("postgres/postgres-2026-11-28-020000.sql.zst")  # never reached S3
    retention = Retention(daily=3, weekly=2, monthly=2)

    local_report = prune_store(local, retention)
    s3_report = prune_store(s3_store, retention)

    local_kept = {o.key for o in local.list("postgres/")}
    assert local_kept == {f"postgres/postgres-2026-{d}-020000.sql.zst" for d in
                          ["11-28", "11-27", "11-26", "11-22", "10-31", "11-01"]}
    # 11-28 never reached S3, so S3's dailies reach one day further back
    s3_kept = {o.key for o in s3_store.list("postgres/")}
    assert s3_kept == {f"postgres/postgres-2026-{d}-020000.sql.zst" for d in
                       ["11-27", "11-26", "11-25", "11-22", "10-31", "11-01"]}
    assert s3_report.decisions["postgres"].reasons["20261101-020000"] == ["newest verified"]
    assert local_report.decisions["dragonfly"].keep == local_report.decisions["postgres"].keep
    # S3's dragonfly still has 11-28, so its metadata stays there
    assert s3_store.exists("metadata/backup-20261128-020000.json")
    assert len(local.list("metadata/")) == 6
    assert len(s3_store.list("metadata/")) == 7


@pytest.mark.s3
def test_unfinished_uploads_of_killed_backups_are_aborted(s3_store, s3_client, s3_settings):
    started = s3_client.create_multipart_upload(Bucket=s3_settings.bucket, Key=f"backups/{KEY}")
    s3_client.upload_part(Bucket=s3_settings.bucket, Key=f"backups/{KEY}", PartNumber=1,
                          UploadId=started["UploadId"], Body=b"a part nobody will finish")
    # (moto dates every upload 2010-11-10, so "too young to abort" cannot be shown here)
    assert s3_store.abort_stale_uploads(older_than=0) == [KEY]
    assert not s3_client.list_multipart_uploads(Bucket=s3_settings.bucket).get("Uploads")
