"""Removing a container takes its anonymous volumes with it, never a named volume."""

from __future__ import annotations

import pytest

from reconciler import dockerio

pytestmark = pytest.mark.engine


def test_remove_container_drops_anonymous_volumes_and_keeps_named_ones(client, project):
    named = dockerio.create_volume(client, {"name": f"{project}-kept",
                                            "labels": {"reconcile.project": project}})
    made = client.api.create_container(
        "reconcile-lab/redis:7", labels={"reconcile.project": project},
        host_config=client.api.create_host_config(binds={named: {"bind": "/kept", "mode": "rw"}}))
    mounts = client.api.inspect_container(made["Id"])["Mounts"]
    anonymous = [m["Name"] for m in mounts if m["Destination"] == "/data"]
    assert len(anonymous) == 1  # the image's VOLUME /data
    dockerio.remove_container(client, made["Id"])
    names = {v["Name"] for v in client.api.volumes().get("Volumes") or ()}
    assert anonymous[0] not in names
    assert named in names
