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


START = """
import sys, time
from reconciler import dockerio
print(dockerio.start_helper(dockerio.connect(), "reconcile-lab/debian:bookworm", ["sleep", "300"]), flush=True)
time.sleep(300)
"""


def test_a_killed_runs_helper_is_removed_at_once_even_running_and_a_live_ones_is_kept(client):
    """A run killed outright leaves its helper running (a pg_dump would hold its snapshot);
    the next run removes it without waiting, and never a helper whose owner still runs."""
    import subprocess
    import sys

    run = subprocess.Popen([sys.executable, "-c", START], stdout=subprocess.PIPE, text=True)
    orphan = run.stdout.readline().strip()
    run.kill()
    run.wait()
    assert client.api.inspect_container(orphan)["State"]["Running"]
    mine = dockerio.start_helper(client, "reconcile-lab/debian:bookworm", ["sleep", "300"])  # prunes first
    try:
        assert not client.api.containers(all=True, filters={"id": orphan})
        dockerio.prune_stale_helpers(client)
        assert client.api.inspect_container(mine)["State"]["Running"]
    finally:
        dockerio.remove_helper(client, mine)
        dockerio.remove_helper(client, orphan)


@pytest.mark.parametrize("cut", ["create", "start"])
def test_ctrl_c_while_a_helper_is_made_leaves_no_container(client, monkeypatch, cut):
    """QA: Ctrl-C during a backup sometimes left a helper (created, or started and exited)
    that only the next run removed; its id had not reached the caller yet."""
    from reconciler.dockerio.stream import LABEL_HELPER_OWNER
    from reconciler.owner import owner_text

    api = type(client.api)
    real = getattr(api, f"{cut}_container" if cut == "create" else "start")

    def interrupted(self, *args, **kwargs):
        real(self, *args, **kwargs)  # the engine did it; the answer is cut off
        raise KeyboardInterrupt

    monkeypatch.setattr(api, f"{cut}_container" if cut == "create" else "start", interrupted)
    with pytest.raises(KeyboardInterrupt):
        dockerio.start_helper(client, "reconcile-lab/debian:bookworm", ["sleep", "30"])
    monkeypatch.undo()
    mine = client.api.containers(all=True, filters={"label": f"{LABEL_HELPER_OWNER}={owner_text()}"})
    assert mine == []
