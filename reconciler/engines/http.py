"""HTTP services: a probe of the configured path; they hold no data to back up.

A service of kind http without an ``health.http`` check is probed like a generic
container (running, Docker healthcheck), so ``reconcile health`` still says something.
"""

from __future__ import annotations

import http.client
import time
from typing import BinaryIO

from reconciler.engines.base import (
    BackupStats,
    DockerBacked,
    ProbeResult,
    ProbeStatus,
    RestoreStats,
    Target,
    VerifyReport,
)
from reconciler.engines.compress import ZSTD_DEFAULT
from reconciler.engines.volume import container_probe
from reconciler.errors import BackupError, RestoreError

BODY_LIMIT = 4096


class HttpEngine(DockerBacked):
    file_extension = ""
    zstd = ZSTD_DEFAULT  # never used: nothing to back up

    def probe(self, target: Target, timeout: float = 5.0) -> ProbeResult:
        check = target.service.health.http
        if check is None:
            return container_probe(self.client, target)
        timeout = min(timeout, check.timeout) if timeout else check.timeout
        url = f"http://{target.host}:{check.port}{check.path}"
        started = time.monotonic()
        try:
            status = _get(target.host, check.port, check.path, timeout)
        except (OSError, http.client.HTTPException) as exc:
            return ProbeResult(ProbeStatus.UNREACHABLE, {"url": url, "error": _reason(exc)},
                               _ms(started))
        latency = _ms(started)
        ok = status == check.expect_status
        return ProbeResult(ProbeStatus.HEALTHY if ok else ProbeStatus.UNHEALTHY,
                           {"url": url, "status_code": status, "expected": check.expect_status,
                            "latency_ms": round(latency, 1)}, latency)

    def backup(self, target: Target, out: BinaryIO) -> BackupStats:
        raise BackupError(f"service {target.service_name}: kind http holds no data",
                          ref="backup.no-data", hint="back up the services that hold its data instead")

    def restore(self, target: Target, stream: BinaryIO, stats: BackupStats) -> RestoreStats:
        raise RestoreError(f"service {target.service_name}: kind http holds no data",
                           ref="restore.no-data", hint="nothing to restore for this service")

    def verify(self, target: Target, expected: BackupStats) -> VerifyReport:
        return VerifyReport()

    def estimate_size(self, target: Target) -> int:
        return 0


def _get(host: str, port: int, path: str, timeout: float) -> int:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": "reconcile-health", "Connection": "close"})
        response = conn.getresponse()
        response.read(BODY_LIMIT)
        return response.status
    finally:
        conn.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"[:200]


def _ms(started: float) -> float:
    return (time.monotonic() - started) * 1000
