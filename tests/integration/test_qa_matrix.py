"""QA of DESIGN.md's decision matrix, through the real CLI: what the plan and the apply say
about an infrastructure service that is unhealthy with its spec unchanged."""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.request

import pytest

from reconciler.cli.apply_cmd import _event_text
from tests.integration.apply_support import LAB_SPEC, checksum, cli, journal_events, lab_env, pg_stack, seed_rows, show
from tests.integration.conftest import purge

pytestmark = pytest.mark.engine


@pytest.fixture()
def project(client):
    name = f"qamatrix-{secrets.token_hex(3)}"
    yield name
    purge(client, name)


def test_a_network_cut_names_the_network_with_its_project_interpolated(client, project, tmp_path):
    """The project comes from ``${env:LAB_PROJECT}``: it is no secret (every container is named
    after it), and the plan's cause must say which network (was: ``(none) → (sensitive)_backend``)."""
    spec, env, name, rows = pg_stack(client, project, tmp_path, rows=500)
    client.api.disconnect_container_from_network(name, f"{project}_backend")

    plan = cli(spec, env, "plan", "--detailed-exitcode")
    assert plan.returncode == 2, show(plan)
    assert f"networks: (none) → {project}_backend" in plan.stdout, plan.stdout
    assert "(sensitive)_backend" not in plan.stdout
    applied = cli(spec, env, "apply", "--auto-approve")
    assert applied.returncode == 0, show(applied)
    assert f"reconnected {name} to {project}_backend" in applied.stdout, applied.stdout
    networks = client.api.inspect_container(name)["NetworkSettings"]["Networks"]
    assert f"{project}_backend" in networks
    assert checksum(client, name) == rows
    again = cli(spec, env, "plan", "--detailed-exitcode")
    assert again.returncode == 0 and "No changes." in again.stdout, show(again)


@pytest.mark.parametrize(("services", "text"), [
    (["dragonfly"], "re-planned: dragonfly stays unhealthy and will be recreated"),
    (["dragonfly", "postgres"], "re-planned: dragonfly, postgres stay unhealthy and will be recreated"),
])
def test_the_replan_line_agrees_with_the_number_of_services(services, text):
    assert _event_text({"event": "replan", "services": services}) == text  # was: "dragonfly stay unhealthy"


class Poller(threading.Thread):
    """GETs the app through its published port until stopped; counts what failed."""

    def __init__(self, port: str) -> None:
        super().__init__(daemon=True)
        self.url, self.ok, self.failed, self.versions, self.done = f"http://127.0.0.1:{port}/", 0, [], set(), False

    def run(self) -> None:
        while not self.done:
            try:
                with urllib.request.urlopen(self.url, timeout=5) as answer:
                    self.versions.add(json.load(answer)["version"])
                    self.ok += 1
            except Exception as exc:  # noqa: BLE001 - every failure counts
                self.failed.append(repr(exc))
            time.sleep(0.05)


def _redis_keys(client, name: str) -> str:
    run = client.api.exec_create(name, ["redis-cli", "dbsize"])
    return client.api.exec_start(run["Id"]).decode().strip()


def test_infrastructure_and_app_changed_at_once_keep_the_app_serving_and_the_data(client, project, tmp_path):
    """The lab's blue-green stack: PostgreSQL 15 → 17 and app 1 → 2 in one apply. The app answers
    throughout (the old version until the new one is healthy), PostgreSQL is verified before the
    app is touched, rows and keys are all there, and a second plan has nothing to do."""
    env = lab_env(project, tmp_path)
    first = cli(LAB_SPEC, env, "apply", "--auto-approve")
    assert first.returncode == 0, show(first)
    rows = seed_rows(client, f"{project}-postgres", rows=500)
    cache = client.api.exec_create(f"{project}-dragonfly", ["sh", "-c", "for i in $(seq 1 50); do echo SET k$i v$i; "
                                                                       "done | redis-cli >/dev/null"])
    client.api.exec_start(cache["Id"])
    assert _redis_keys(client, f"{project}-dragonfly") == "50"
    env |= {"LAB_PG_VERSION": "17", "LAB_APP_VERSION": "2"}
    before = set((tmp_path / "state" / "journal").glob("*.jsonl"))

    poller = Poller(env["LAB_API_PORT"])
    poller.start()
    try:
        applied = cli(LAB_SPEC, env, "apply", "--auto-approve")
    finally:
        poller.done = True
        poller.join()
    assert applied.returncode == 0, show(applied)
    assert not poller.failed and poller.ok > 0, poller.failed[:5]
    assert poller.versions == {"1", "2"}
    events = [(e["event"], e.get("action")) for e in journal_events(tmp_path / "state", before)
              if e["event"] in ("action-begin", "action-end")]
    order = [action for kind, action in events if kind == "action-end"]
    assert order[:4] == ["backup:postgres", "recreate:postgres", "restore:postgres", "verify:postgres"], order
    assert events.index(("action-end", "verify:postgres")) < events.index(("action-begin", "recreate:api"))
    assert checksum(client, f"{project}-postgres") == rows
    assert _redis_keys(client, f"{project}-dragonfly") == "50"
    again = cli(LAB_SPEC, env, "plan", "--detailed-exitcode")
    assert again.returncode == 0 and "No changes." in again.stdout, show(again)
