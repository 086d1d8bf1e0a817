"""The one module that imports the Docker SDK.

Everything else talks to the engine through these small functions, so errors from the SDK
are translated once into ``EngineError`` with a hint, and tests of the pure core never need
an engine.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound

from reconciler.errors import EngineError

INSPECT_THREADS = 8


def _engine_address() -> str:
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


def connect(timeout: float = 30.0) -> docker.DockerClient:
    """A client that has answered a ping, or an ``EngineError`` saying how to get one."""
    try:
        client = docker.DockerClient(base_url=_engine_address(), timeout=timeout)
        client.api.ping()
        return client
    except DockerException as exc:
        raise EngineError(
            f"cannot reach the Docker engine at {_engine_address()}",
            ref="engine.unreachable",
            hint="start it (sudo systemctl start docker, or bash lab/engine.sh), or set DOCKER_HOST; "
                 f"underlying error: {type(exc).__name__}",
        ) from None


@contextmanager
def engine_errors(what: str) -> Iterator[None]:
    """Turn SDK exceptions raised while doing ``what`` into an ``EngineError``."""
    try:
        yield
    except NotFound as exc:
        raise EngineError(f"{what}: not found ({_explain(exc)})", ref="engine.not-found",
                          hint="the engine changed under us; run plan again") from None
    except APIError as exc:
        raise EngineError(f"{what}: the engine refused ({_explain(exc)})", ref="engine.api",
                          hint="see the engine's message above; `docker info` shows its state") from None
    except DockerException as exc:
        raise EngineError(f"{what}: {type(exc).__name__}", ref="engine.unreachable",
                          hint="is the Docker engine running? (bash lab/engine.sh)") from None


def _explain(exc: APIError) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc.status_code or type(exc).__name__)


def engine_version(client: docker.DockerClient) -> str:
    with engine_errors("reading the engine version"):
        return str(client.api.version().get("Version", ""))


def project_containers(client: docker.DockerClient, project: str) -> list[dict]:
    """Full inspect documents of every container labelled with ``project``, in parallel."""
    with engine_errors("listing containers"):
        listed = client.api.containers(all=True, filters={"label": f"reconcile.project={project}"})
    ids = [c["Id"] for c in listed]
    if not ids:
        return []
    with ThreadPoolExecutor(max_workers=min(INSPECT_THREADS, len(ids))) as pool:
        found = list(pool.map(lambda cid: _inspect_or_none(client, cid), ids))
    return [doc for doc in found if doc is not None]


def _inspect_or_none(client: docker.DockerClient, container_id: str) -> dict | None:
    """Inspect, tolerating a container removed between list and inspect."""
    try:
        with engine_errors(f"inspecting container {container_id[:12]}"):
            return client.api.inspect_container(container_id)
    except EngineError as exc:
        if exc.ref == "engine.not-found":
            return None
        raise


def project_networks(client: docker.DockerClient, project: str) -> list[dict]:
    with engine_errors("listing networks"):
        return client.api.networks(filters={"label": f"reconcile.project={project}"})


def project_volumes(client: docker.DockerClient, project: str) -> list[dict]:
    with engine_errors("listing volumes"):
        answer = client.api.volumes(filters={"label": f"reconcile.project={project}"})
    return list(answer.get("Volumes") or [])


def inspect_images(client: docker.DockerClient, refs: list[str]) -> dict[str, dict | None]:
    """Inspect each image reference; ``None`` for those not present locally."""
    def one(ref: str) -> dict | None:
        try:
            with engine_errors(f"inspecting image {ref}"):
                return client.api.inspect_image(ref)
        except EngineError as exc:
            if exc.ref == "engine.not-found":
                return None
            raise

    if not refs:
        return {}
    with ThreadPoolExecutor(max_workers=min(INSPECT_THREADS, len(refs))) as pool:
        return dict(zip(refs, pool.map(one, refs)))


__all__ = ["ImageNotFound", "connect", "engine_errors", "engine_version", "inspect_images",
           "project_containers", "project_networks", "project_volumes"]
