"""pytest plugin: a real S3 endpoint over HTTP (moto in server mode) for storage tests.

If ``RECONCILE_TEST_S3_ENDPOINT`` is set (the lab starts moto at http://127.0.0.1:9555),
that endpoint is used; otherwise a moto server is started on a free loopback port for the
session and stopped at the end. Either way the tests talk HTTP to a separate process,
exactly as production talks to Contabo or AWS, so signing, path-style addressing,
checksum settings and multipart are really exercised. A server that does not come up
fails the tests loudly: a skipped test proves nothing.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from reconciler.spec.models import S3Store as S3Settings
from reconciler.storage.s3 import RetryPolicy, S3Store

ENDPOINT_ENV = "RECONCILE_TEST_S3_ENDPOINT"
TEST_ACCESS_KEY = "AKIARECONCILETEST0001"
TEST_SECRET_KEY = "rEc0nc1le/TeSt+SeCrEt/KeY+" + "x" * 14
FAST_RETRY = RetryPolicy(attempts=3, wait_initial=0.01, wait_max=0.05)
START_TIMEOUT = 30.0


@dataclass(frozen=True)
class S3Endpoint:
    url: str
    access_key: str = TEST_ACCESS_KEY
    secret_key: str = TEST_SECRET_KEY

    @property
    def environ(self) -> dict[str, str]:
        return {"S3_ACCESS_KEY_ID": self.access_key, "S3_SECRET_ACCESS_KEY": self.secret_key}


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports: all held bound until all are chosen (one at a
    time, the kernel may hand out the same port twice)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def closed_port() -> int:
    """A loopback port nobody listens on (bound, released, not reused at once)."""
    return free_port()


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url + "/", timeout=1)
    except urllib.error.HTTPError:
        return True  # any HTTP answer means the server is up
    except OSError:
        return False
    return True


@dataclass
class MotoProcess:
    """A moto server we started: its URL, process and log file."""

    url: str
    process: subprocess.Popen
    log: Path

    @classmethod
    def start(cls, extra_env: dict[str, str] | None = None) -> MotoProcess:
        port = free_port()
        log = Path(tempfile.mkstemp(prefix="moto-", suffix=".log")[1])
        with open(log, "wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-p", str(port), "-H", "127.0.0.1"],
                stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **(extra_env or {})})
        server = cls(f"http://127.0.0.1:{port}", process, log)
        server._wait()
        return server

    def _wait(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if _answers(self.url):
                return
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"moto server did not answer on {self.url}; log:\n"
                    f"{self.log.read_text(errors='replace')[-2000:]}", pytrace=False)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.log.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[S3Endpoint]:
    """The S3 endpoint for the session: the lab's, or a moto server of our own."""
    url = os.environ.get(ENDPOINT_ENV, "").strip().rstrip("/")
    if url:
        if not _answers(url):
            pytest.fail(f"{ENDPOINT_ENV}={url} does not answer; start it with "
                        "bash lab/s3.sh start", pytrace=False)
        yield S3Endpoint(url)
        return
    server = MotoProcess.start()
    try:
        yield S3Endpoint(server.url)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_auth_endpoint() -> Iterator[S3Endpoint]:
    """A moto server that checks credentials (IAM auth mode): unknown keys are refused.

    Always our own process, so switching auth on cannot disturb the shared lab server.
    """
    server = MotoProcess.start({"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    try:
        yield S3Endpoint(server.url)
    finally:
        server.stop()


def raw_client(endpoint: S3Endpoint):
    """A plain boto3 client, to poke at objects behind the store's back."""
    return boto3.client(
        "s3", endpoint_url=endpoint.url, region_name="us-east-1",
        aws_access_key_id=endpoint.access_key, aws_secret_access_key=endpoint.secret_key,
        config=Config(s3={"addressing_style": "path"},
                      request_checksum_calculation="when_required",
                      response_checksum_validation="when_required"))


@pytest.fixture()
def s3_client(s3_endpoint: S3Endpoint):
    return raw_client(s3_endpoint)


@pytest.fixture()
def s3_settings(s3_endpoint: S3Endpoint) -> S3Settings:
    """Settings for a fresh bucket of this test's own (moto keeps buckets in memory)."""
    return S3Settings(enabled=True, endpoint=s3_endpoint.url, region="us-east-1",
                      bucket=f"reconcile-test-{secrets.token_hex(4)}", prefix="backups/",
                      path_style=True, part_size_mb=5)


@pytest.fixture()
def s3_store(s3_settings: S3Settings, s3_endpoint: S3Endpoint, s3_client) -> Iterator[S3Store]:
    """A store on a fresh bucket; the bucket and its objects are removed afterwards."""
    store = S3Store.from_env(s3_settings, s3_endpoint.environ, retry=FAST_RETRY)
    store.ensure_bucket()
    yield store
    empty_and_remove_bucket(s3_client, s3_settings.bucket)


def empty_and_remove_bucket(client, bucket: str) -> None:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    for page in pages:
        for item in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=item["Key"])
    client.delete_bucket(Bucket=bucket)
