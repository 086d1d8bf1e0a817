"""Real-engine fixtures: a Docker client, a throw-away project, and spec files for it."""

from __future__ import annotations

import os
import secrets
import textwrap
from pathlib import Path

import pytest

from reconciler import dockerio
from reconciler.apply import builders
from reconciler.spec.load import LoadedSpec, load_spec


@pytest.fixture(scope="session")
def client():
    try:
        return dockerio.connect(timeout=60)
    except Exception as exc:  # noqa: BLE001 - the message is the point
        pytest.fail(f"no Docker engine: {exc}. Start the lab first: bash lab/up.sh", pytrace=False)


@pytest.fixture()
def project(client):
    """A unique project name; everything labelled with it is removed afterwards."""
    name = f"it-{secrets.token_hex(3)}"
    yield name
    purge(client, name)


def purge(client, project: str) -> None:
    label = {"label": f"reconcile.project={project}"}
    for container in client.api.containers(all=True, filters=label):
        client.api.remove_container(container["Id"], force=True, v=True)
    for network in client.api.networks(filters=label):
        client.api.remove_network(network["Id"])
    for volume in client.api.volumes(filters=label).get("Volumes") or []:
        client.api.remove_volume(volume["Name"], force=True)


@pytest.fixture()
def write_spec(tmp_path, project):
    """Write a spec (``{project}`` is filled in) and load it."""
    def write(text: str, name: str = "reconcile.yaml", environ: dict | None = None) -> LoadedSpec:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).replace("{project}", project))
        return load_spec(path, {**os.environ, **(environ or {})})
    return write


def materialise(client, loaded: LoadedSpec, services: list[str] | None = None,
                start: bool = True) -> dict[str, str]:
    """Create networks, volumes and containers exactly as the spec says (labels included)."""
    spec = loaded.spec
    for network in spec.networks:
        if not client.api.networks(names=[builders.network_args(loaded, network)["name"]]):
            dockerio.create_network(client, builders.network_args(loaded, network))
    for volume in spec.volumes:
        dockerio.create_volume(client, builders.volume_args(loaded, volume))
    ids = {}
    for name in services or list(spec.services):
        image_id = client.api.inspect_image(spec.services[name].image)["Id"]
        ids[name] = dockerio.create_container(client, builders.container_args(loaded, name, image_id))
        if start:
            dockerio.start(client, ids[name])
    return ids


def spec_dir(loaded: LoadedSpec) -> Path:
    return loaded.file.parent
