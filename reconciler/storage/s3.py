"""The off-site copy: an S3-compatible bucket (AWS, Contabo, MinIO, moto in tests).

Settings chosen for S3-compatible stores rather than for AWS alone: path-style
addressing; request/response checksums only "when required", because some providers
reject, or silently corrupt, the default CRC trailers newer botocore adds (a Content-MD5
header instead, on every upload request, which they all check); our own SHA-256 in the object
metadata, re-hashed on every download, so we never trust the provider's idea of integrity.
Credentials come only from the environment and never appear in messages.
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
from collections.abc import Callable, Mapping
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TypeVar

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from reconciler.errors import StorageError
from reconciler.spec import models as spec
from reconciler.storage.base import Advance, StoredObject, check_key, normalise_sha256
from reconciler.storage.files import (
    AtomicFile,
    checksum_mismatch,
    copy_hashing,
    ensure_dest_dir,
    os_error,
)
from reconciler.storage.s3errors import (
    ACCESS_KEY_ENV,
    SECRET_KEY_ENV,
    BotoError,
    S3Context,
    display_endpoint,
    error_code,
    is_missing_key,
    is_transient,
    translate,
)

MIB = 1024 * 1024
MAX_PARTS = 10_000
STALE_UPLOAD_AGE = 24 * 3600  # a multipart upload older than this is abandoned
CONNECT_TIMEOUT = 5
# Per socket read, in each of botocore's 4 attempts (``max_attempts`` 3 counts the retries): a
# server that stops answering fails a call in about 2 minutes (ours do not retry a timeout:
# botocore did), one that stops mid-body in 30 s (botocore does not retry reading a body).
READ_TIMEOUT = 30
META_SHA256 = "sha256"
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Our retries on top of botocore's own: whole operations (a multipart upload, a
    streamed download) restarted after a transient failure. Tests use tiny waits."""

    attempts: int = 3
    wait_initial: float = 1.0
    wait_max: float = 10.0


def part_size_bytes(file_size: int, part_size_mb: int) -> int:
    """Multipart chunk size: the configured size, raised (in whole MiB) so a big file
    needs at most 10,000 parts, S3's limit."""
    configured = part_size_mb * MIB
    needed = math.ceil(file_size / MAX_PARTS) if file_size > 0 else 0
    return max(configured, math.ceil(needed / MIB) * MIB)


def content_md5(params: dict, **_: object) -> None:
    """Content-MD5 on every upload request: the server checks it and refuses a body damaged on
    the way (BadDigest, retried), which it would otherwise store under our SHA-256, found bad
    only by a restore. The classic header every S3-compatible store checks, unlike the CRC
    trailers newer botocore adds (``when_required`` keeps those off)."""
    body = params.get("body")
    if body is None or "Content-MD5" in params["headers"]:
        return
    digest = hashlib.md5(usedforsecurity=False)
    if isinstance(body, (bytes, bytearray)):
        digest.update(body)
    else:  # s3transfer's chunk of the file: read it, then go back for the send
        start = body.tell()
        while chunk := body.read(MIB):
            digest.update(chunk)
        body.seek(start)
    params["headers"]["Content-MD5"] = base64.b64encode(digest.digest()).decode("ascii")


def client_config(settings: spec.S3Store) -> Config:
    return Config(
        s3={"addressing_style": "path" if settings.path_style else "auto"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
    )


class S3Store:
    """Backups under ``settings.prefix`` in ``settings.bucket``; keys as in every store."""

    def __init__(self, settings: spec.S3Store, access_key: str, secret_key: str, *,
                 retry: RetryPolicy = RetryPolicy()) -> None:
        if not settings.bucket:
            raise StorageError("backup.s3.bucket is empty",
                               hint="set backup.s3.bucket in the spec (e.g. ${S3_BUCKET})")
        self.settings = settings
        self.bucket = settings.bucket
        self.prefix = _clean_prefix(settings.prefix)
        self.retry = retry
        self._ctx = S3Context(display_endpoint(settings.endpoint, settings.region),
                              settings.bucket, (access_key, secret_key))
        self._client = boto3.session.Session().client(
            "s3", endpoint_url=settings.endpoint, region_name=settings.region,
            aws_access_key_id=access_key, aws_secret_access_key=secret_key,
            config=client_config(settings))
        for operation in ("PutObject", "UploadPart"):
            self._client.meta.events.register(f"before-call.s3.{operation}", content_md5)

    @classmethod
    def from_env(cls, settings: spec.S3Store, environ: Mapping[str, str] | None = None, *,
                 retry: RetryPolicy = RetryPolicy()) -> S3Store:
        """The only supported way in production: credentials from the environment."""
        env = os.environ if environ is None else environ
        missing = [name for name in (ACCESS_KEY_ENV, SECRET_KEY_ENV) if not env.get(name)]
        if missing:
            raise StorageError(f"S3 credentials missing: {' and '.join(missing)} not set",
                               hint=f"export {ACCESS_KEY_ENV} and {SECRET_KEY_ENV} "
                                    "(e.g. from the env file) before running reconcile")
        return cls(settings, env[ACCESS_KEY_ENV], env[SECRET_KEY_ENV], retry=retry)

    def __repr__(self) -> str:
        return (f"S3Store(bucket={self.bucket!r}, prefix={self.prefix!r}, "
                f"endpoint={self._ctx.endpoint!r})")

    def describe(self) -> str:
        return f"S3 bucket {self.bucket} (prefix {self.prefix or '/'}) at {self._ctx.endpoint}"

    # -- writing ---------------------------------------------------------------------

    def put(self, src: Path, key: str, sha256: str, advance: Advance | None = None) -> StoredObject:
        """Upload (multipart when large) with our SHA-256 in the metadata, then check size."""
        digest = normalise_sha256(sha256)
        full = self._full(key)
        try:
            size = Path(src).stat().st_size
        except OSError as exc:
            raise os_error(exc, "read", Path(src)) from exc
        chunk = part_size_bytes(size, self.settings.part_size_mb)
        transfer = TransferConfig(multipart_threshold=chunk, multipart_chunksize=chunk)
        self._call("upload", key, lambda: self._client.upload_file(
            str(src), self.bucket, full, ExtraArgs={"Metadata": {META_SHA256: digest}},
            Config=transfer, Callback=advance))
        head = self._call("check upload of", key, lambda: self._client.head_object(
            Bucket=self.bucket, Key=full))
        if head.get("ContentLength") != size:
            raise StorageError(f"S3 stored {head.get('ContentLength')} bytes of {key}, "
                               f"expected {size}",
                               hint="the upload was truncated; run the backup again")
        return StoredObject(key, size, digest)

    def write_bytes(self, key: str, data: bytes) -> StoredObject:
        digest = hashlib.sha256(data).hexdigest()
        full = self._full(key)
        self._call("upload", key, lambda: self._client.put_object(
            Bucket=self.bucket, Key=full, Body=data, Metadata={META_SHA256: digest}))
        return StoredObject(key, len(data), digest)

    def delete(self, key: str) -> None:
        """Remove ``key``; S3 treats a missing key as deleted, and so do we."""
        full = self._full(key)
        try:
            self._call("delete", key, lambda: self._client.delete_object(Bucket=self.bucket, Key=full))
        except _MissingKey:
            pass  # some S3-compatible stores answer 404 NoSuchKey where AWS answers 204

    # -- reading ---------------------------------------------------------------------

    def exists(self, key: str) -> bool:
        full = self._full(key)
        try:
            self._call("look up", key,
                       lambda: self._client.head_object(Bucket=self.bucket, Key=full))
        except _MissingKey:
            return False
        return True

    def read_bytes(self, key: str) -> bytes:
        """The object's bytes, checked against the SHA-256 put in its metadata when it was
        written (``write_bytes``): a metadata file the provider corrupted is not trusted."""
        full = self._full(key)

        def fetch() -> tuple[bytes, str]:
            response = self._client.get_object(Bucket=self.bucket, Key=full)
            with closing(response["Body"]) as body:  # see _download: not ``with Body``
                return body.read(), response.get("Metadata", {}).get(META_SHA256, "")

        data, recorded = self._call("download", key, fetch)
        if recorded and _normalised_or_blank(recorded) != hashlib.sha256(data).hexdigest():
            raise checksum_mismatch(key, self.describe())
        return data

    def get(self, key: str, dest: Path, expected_sha256: str, advance: Advance | None = None) -> Path:
        """Download to a temporary name, re-hashing on the fly; commit (0600) only if the
        bytes match both ``expected_sha256`` and the object's own metadata."""
        expected = normalise_sha256(expected_sha256)
        dest = Path(dest).absolute()
        try:
            ensure_dest_dir(dest.parent)
        except OSError as exc:
            raise os_error(exc, "create", dest.parent) from exc
        target, actual, recorded = self._call("download", key, lambda: self._download(key, dest, advance))
        if actual != expected or (recorded and recorded != expected):
            target.abort()
            raise checksum_mismatch(key, self.describe())
        try:
            target.commit()
        except OSError as exc:
            target.abort()
            raise os_error(exc, "write", dest) from exc
        return dest

    def list(self, prefix: str = "") -> list[StoredObject]:
        """Objects whose key starts with ``prefix``; ``sha256`` is ``""`` (one HEAD per
        object would be needed to read it)."""
        found: list[StoredObject] = []

        def walk() -> None:
            found.clear()
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + prefix)
            for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"][len(self.prefix):]
                    if _is_clean(key):
                        found.append(StoredObject(key, int(item["Size"]), ""))

        self._call("list", self.prefix + prefix or "/", walk)
        return sorted(found, key=lambda item: item.key)

    def abort_stale_uploads(self, older_than: float = STALE_UPLOAD_AGE, only: set[str] | None = None) -> list[str]:
        """Abort multipart uploads under our prefix begun more than ``older_than`` seconds ago
        (with ``only``, of those keys alone: a killed backup's, whose copy is made again).

        An upload whose process was killed stays in the bucket, unseen by listings, and
        providers charge for its parts until it is aborted. Returns the keys aborted.
        """
        cutoff = datetime.now(timezone.utc) - timedelta(seconds=older_than)
        aborted: list[str] = []

        def sweep() -> None:
            pages = self._client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=self.prefix)
            for page in pages:
                for upload in page.get("Uploads", []):
                    if upload["Initiated"] < cutoff and (only is None or upload["Key"][len(self.prefix):] in only):
                        self._client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"],
                                                            UploadId=upload["UploadId"])
                        aborted.append(upload["Key"][len(self.prefix):])

        self._call("clean up unfinished uploads under", self.prefix or "/", sweep)
        return aborted

    # -- lab -------------------------------------------------------------------------

    def ensure_bucket(self) -> None:
        """Create the bucket if missing. For tests and the lab: production buckets are
        made by whoever owns the account, with their own policies."""
        try:
            self._call("look up bucket", self.bucket,
                       lambda: self._client.head_bucket(Bucket=self.bucket))
            return
        except StorageError:
            pass
        extra = {} if self.settings.region == "us-east-1" else {
            "CreateBucketConfiguration": {"LocationConstraint": self.settings.region}}
        self._call("create bucket", self.bucket,
                   lambda: self._client.create_bucket(Bucket=self.bucket, **extra))

    # -- helpers ---------------------------------------------------------------------

    def _full(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _download(self, key: str, dest: Path, advance: Advance | None) -> tuple[AtomicFile, str, str]:
        """One download attempt into a fresh temporary file (removed if the attempt fails)."""
        target = AtomicFile(dest)
        try:
            handle = target.open()
        except OSError as exc:  # the local disk: named by its path, not by the S3 key (``_call``)
            raise os_error(exc, "write", dest) from exc
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._full(key))
            recorded = response.get("Metadata", {}).get(META_SHA256, "")
            # botocore's StreamingBody itself, not ``with Body`` (which yields the raw urllib3
            # stream): its reads check the length and raise botocore's errors, so a reset, a
            # short body or a stall mid-download is retried or translated like any other.
            with closing(response["Body"]) as body:
                actual, _ = copy_hashing(body, handle, advance)
        except BotoError:  # some are OSErrors too (a read timeout is requests' IOError)
            target.abort()
            raise
        except OSError as exc:  # not botocore's: the local disk
            target.abort()
            raise os_error(exc, "write", dest) from exc
        except BaseException:
            target.abort()
            raise
        return target, actual, _normalised_or_blank(recorded)

    def _call(self, action: str, target: str, work: Callable[[], T]) -> T:
        """Run ``work`` with retries on transient failures; translate what remains."""
        retrying = Retrying(
            stop=stop_after_attempt(max(self.retry.attempts, 1)),
            wait=wait_exponential(multiplier=self.retry.wait_initial, max=self.retry.wait_max),
            retry=retry_if_exception(is_transient), reraise=True)
        try:
            return retrying(work)
        except BotoError as exc:
            if (action == "look up" and is_missing_key(exc)) or (action == "delete" and error_code(exc) == "NoSuchKey"):
                raise _MissingKey() from None
            # ``from None``: botocore's own exception text is not ours to vouch for.
            raise translate(exc, action, target, self._ctx) from None
        except OSError as exc:
            raise os_error(exc, action, Path(target)) from exc


class _MissingKey(Exception):
    """Internal: HEAD said 404, which ``exists`` reports as False (and ``delete`` as done)."""


def _clean_prefix(prefix: str) -> str:
    """``backups`` → ``backups/``; ``""`` stays empty (keys at the bucket's top)."""
    prefix = prefix.strip().lstrip("/")
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


def _is_clean(key: str) -> bool:
    try:
        check_key(key)
    except StorageError:
        return False
    return True


def _normalised_or_blank(value: str) -> str:
    """Metadata written by someone else may be junk; junk must count as a mismatch."""
    if not value:
        return ""
    try:
        return normalise_sha256(value)
    except StorageError:
        return "invalid"
