"""Data engines: probe, back up, restore and verify each kind of service.

``engine_for(kind)`` is the one entry point; engines move raw streams and the caller wraps
them with ``compress`` (compression + SHA-256). See ``base`` for the contract.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reconciler.engines.base import (
    BackupStats,
    DatabaseStats,
    DataEngine,
    ProbeResult,
    ProbeStatus,
    RestoreStats,
    Target,
    VerifyCheck,
    VerifyReport,
    container_ip,
    make_target,
)
from reconciler.spec.models import Kind


def engine_for(kind: Kind, client=None, connect: Callable[[], Any] | None = None) -> DataEngine:
    """The engine for a service kind. ``client`` is a Docker client; when None, the engine
    calls ``connect`` (else ``dockerio.connect``) the first time it needs one."""
    if kind is Kind.POSTGRES:
        from reconciler.engines.postgres import PostgresEngine
        return PostgresEngine(client, connect)
    if kind is Kind.REDIS:
        from reconciler.engines.redis import RedisEngine
        return RedisEngine()
    if kind is Kind.HTTP:
        from reconciler.engines.http import HttpEngine
        return HttpEngine(client, connect)
    from reconciler.engines.volume import VolumeEngine
    return VolumeEngine(client, connect)


__all__ = ["BackupStats", "DataEngine", "DatabaseStats", "ProbeResult", "ProbeStatus",
           "RestoreStats", "Target", "VerifyCheck", "VerifyReport", "container_ip", "engine_for",
           "make_target"]
