"""Data engines: probe, back up, restore and verify each kind of service.

``engine_for(kind)`` is the one entry point; engines move raw streams and the caller wraps
them with ``compress`` (compression + SHA-256). See ``base`` for the contract.
"""

from __future__ import annotations

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
    make_target,
)
from reconciler.spec.models import Kind


def engine_for(kind: Kind, client=None) -> DataEngine:
    """The engine for a service kind; ``client`` is a Docker client (connected lazily if None)."""
    if kind is Kind.POSTGRES:
        from reconciler.engines.postgres import PostgresEngine
        return PostgresEngine(client)
    if kind is Kind.REDIS:
        from reconciler.engines.redis import RedisEngine
        return RedisEngine(client)
    if kind is Kind.HTTP:
        from reconciler.engines.http import HttpEngine
        return HttpEngine(client)
    from reconciler.engines.volume import VolumeEngine
    return VolumeEngine(client)


__all__ = ["BackupStats", "DataEngine", "DatabaseStats", "ProbeResult", "ProbeStatus",
           "RestoreStats", "Target", "VerifyCheck", "VerifyReport", "engine_for", "make_target"]
