"""One run's handles: the loaded spec, the engine client, the stores, and how to reach a service.

Built once per command, connected lazily, so commands that never touch S3 never import
boto3 and commands that never touch Docker never need an engine.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from reconciler.errors import EngineError, ReconcileError
from reconciler.spec.load import LoadedSpec
from reconciler.spec.models import Kind
from reconciler.spec.normalise import LABEL_PROJECT, container_name


@dataclass
class Session:
    loaded: LoadedSpec
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    _client: object = None
    # Inspect documents by container name, read by the launcher's head start (observe/prefetch)
    # a moment ago; each is used once, for the first lookup of its service, then read live.
    prefetched: dict[str, dict] = field(default_factory=dict)

    @property
    def spec(self):
        return self.loaded.spec

    @property
    def client(self):
        if self._client is None:
            from reconciler import dockerio

            self._client = dockerio.connect()
        return self._client

    @cached_property
    def local(self):
        from reconciler.storage.local import LocalStore

        root = Path(self.spec.backup.local.path)
        return LocalStore(root if root.is_absolute() else (self.loaded.base_dir / root).resolve())

    @cached_property
    def s3(self):
        """The off-site store, or None when S3 is not enabled in the spec."""
        settings = self.spec.backup.s3
        if not settings.enabled:
            return None
        from reconciler.storage.s3 import S3Store

        return S3Store.from_env(settings, self.environ)

    def state_dir(self) -> Path:
        path = self.loaded.state_dir()
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    def engine(self, service: str):
        """The service's engine, sharing this session's Docker client, connected only when the
        engine needs it (a cache is reached over TCP: its backup never imports the SDK)."""
        from reconciler.engines import engine_for

        return engine_for(self.spec.services[service].kind, self._client, connect=lambda: self.client)

    def container_doc(self, service: str, container: str | None = None) -> dict | None:
        """Inspect of the service's live container (or ``container``), None when absent. A
        container under the service's name that is not the project's (``docker run --name``
        without reconcile's labels) is not the service: it is never probed, backed up or
        restored in its place (diagnose names it: rule ``name-taken``; a plan that would create
        the service's container is blocked by it: ``plan.name-taken``)."""
        name = container or container_name(self.spec, service)
        if (doc := self.prefetched.pop(name, None)) is not None:
            return doc  # read from the project's labelled containers
        from reconciler import dockerio

        try:
            doc = dockerio.inspect_container(self.client, name)
        except EngineError as exc:
            if exc.ref == "engine.not-found":
                return None
            raise
        labels = (doc.get("Config") or {}).get("Labels") or {}
        if container is None and labels.get(LABEL_PROJECT) != self.spec.project:
            return None
        return doc

    def target(self, service: str, container: str | None = None):
        """How an engine reaches the service's running container from this host."""
        from reconciler.engines import container_ip, make_target

        doc = self.container_doc(service, container)
        name = container or container_name(self.spec, service)
        if doc is None:
            raise ReconcileError(f"service {service} has no container ({name})", ref="service.missing",
                                 hint="run `reconcile apply` to create it")
        # a generic service's data is its volumes, reached through a helper container: its own
        # may be stopped (and stays so), as an interrupted volume restore leaves it
        if not (doc.get("State") or {}).get("Running") and self.spec.services[service].kind is not Kind.GENERIC:
            raise ReconcileError(f"service {service}'s container {name} is not running",
                                 ref="service.stopped", hint=f"start it: docker start {name}")
        if (doc.get("State") or {}).get("Paused") and self.spec.services[service].kind is not Kind.GENERIC:
            raise ReconcileError(f"service {service}'s container {name} is paused: its server answers nothing, "
                                 "so reconcile would only wait on it, then time out",
                                 ref="service.paused", hint=f"unpause it: docker unpause {name}")
        return make_target(service, self.spec.services[service], doc["Id"], container_ip(doc),
                           read_file=lambda path: self._read_file(doc["Id"], path), config=doc.get("Config"))

    def _read_file(self, container: str, path: str) -> str:
        from reconciler import dockerio

        return dockerio.read_file(self.client, container, path).decode("utf-8", "replace")
