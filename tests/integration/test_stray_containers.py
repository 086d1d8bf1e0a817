"""A container someone started by hand with the project's labels (or a clone with copied
labels) is not the service: apply never backs it up in the service's place, replaces it or
removes it; the plan names it; and one running on the service's data volume stops the plan."""

from __future__ import annotations

import pytest

from tests.integration.apply_support import apply, checksum, cli, containers, pg_stack, show

pytestmark = pytest.mark.engine


def test_a_hand_started_container_with_the_service_labels_is_left_alone(client, project, tmp_path):
    spec, env, name, rows = pg_stack(client, project, tmp_path, rows=300)
    live = containers(client, project)[name]["Id"]
    labels = {"reconcile.project": project, "reconcile.service": "postgres"}
    stray = client.containers.run("reconcile-lab/postgres:15", name=f"{project}-by-hand", labels=labels,
                                  environment={"POSTGRES_PASSWORD": "other"}, detach=True)
    try:
        plan = cli(spec, env, "plan", "--detailed-exitcode")
        assert plan.returncode == 0, show(plan)  # nothing to do for postgres
        assert f"container {project}-by-hand carries this project's labels" in plan.stdout
        result = apply(spec, env)
        assert result.returncode == 0, show(result)
        assert containers(client, project)[name]["Id"] == live and checksum(client, name) == rows
        stray.reload()
        assert stray.status == "running"  # not stopped, replaced or removed

        stray.remove(force=True)
        volume = next(m["Name"] for m in client.api.inspect_container(name)["Mounts"] if m["Type"] == "volume")
        client.api.remove_container(name, force=True)  # the service's container is gone ...
        stray = client.containers.run("reconcile-lab/postgres:15", name=f"{project}-by-hand", labels=labels,
                                      environment={"POSTGRES_PASSWORD": "other"}, detach=True,
                                      volumes={volume: {"bind": "/var/lib/postgresql/data", "mode": "rw"}})
        refused = apply(spec, env)  # ... and a stray runs on its data: no second server on it
        assert refused.returncode == 1, show(refused)
        assert f"container {project}-by-hand" in refused.stderr and "runs on volume pgdata" in refused.stderr
        assert [c for c in containers(client, project)] == [f"{project}-by-hand"]
    finally:
        stray.remove(force=True, v=False)
