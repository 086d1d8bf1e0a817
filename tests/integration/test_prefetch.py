"""Plan's head start (observe/prefetch): a forked child reads the engine while the CLI loads.

Each check runs in a fresh interpreter, as the real command does: forking the test process
itself (which holds threads) is what ``prefetch.start`` must never be used for.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.integration.conftest import materialise

pytestmark = pytest.mark.engine

SPEC = """\
version: 1
project: {project}
networks:
  backend: {{}}
services:
  cache:
    kind: redis
    image: reconcile-lab/redis:7
    networks: [backend]
  web:
    image: "reconcile-lab/app:${{env:APP_VERSION:-1}}"
    networks: [backend]
"""

CLAIM = """
import json, sys
from pathlib import Path
from reconciler.observe import prefetch
from reconciler.observe.collect import from_raw, observe
from reconciler import dockerio
from reconciler.spec.load import load_spec

spec = Path(sys.argv[1]).resolve()
prefetch.start(spec)
loaded = load_spec(spec)
project, refs = sys.argv[2], [s.image for s in loaded.spec.services.values()]
raw = prefetch.claim(spec, project, refs)
if raw is None:
    print(json.dumps(None))
else:
    direct = observe(dockerio.connect(), project, refs)
    print(json.dumps({"same": from_raw(project, raw) == direct,
                      "containers": [c.name for c in direct.containers]}))
"""


def run(args, env=None, **kwargs):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_COLOR": "1", **(env or {})}, **kwargs)


def test_the_child_snapshot_is_the_engine_state_and_is_used(client, write_spec, project):
    loaded = write_spec(SPEC.format(project=project))
    materialise(client, loaded)
    result = run(["-c", CLAIM, str(loaded.file), project])
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found == {"same": True, "containers": [f"{project}-cache", f"{project}-web"]}


def test_a_snapshot_taken_for_another_project_or_image_is_refused(client, write_spec, project):
    loaded = write_spec(SPEC.format(project=project))
    result = run(["-c", CLAIM, str(loaded.file), project + "-other"])
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) is None
    # The child read the default image; the parent's environment names another.
    result = run(["-c", CLAIM.replace("prefetch.start(spec)",
                                      "prefetch.start(spec); import os; os.environ['APP_VERSION'] = '2'"),
                  str(loaded.file), project])
    assert json.loads(result.stdout) is None


def test_plan_output_is_the_same_with_and_without_the_head_start(client, write_spec, project):
    loaded = write_spec(SPEC.format(project=project))
    materialise(client, loaded, ["cache"])
    cli = ["-m", "reconciler", "-f", str(loaded.file), "plan", "--json"]
    fast, slow = run(cli), run(cli, env={"RECONCILE_NO_PREFETCH": "1"})
    assert fast.returncode == slow.returncode == 0, fast.stderr + slow.stderr
    assert json.loads(fast.stdout) == json.loads(slow.stdout)
    assert [a["resource"] for a in json.loads(fast.stdout)["actions"]] == ["web"]


def test_an_engine_that_is_down_gives_the_usual_error(write_spec, tmp_path, project):
    loaded = write_spec(SPEC.format(project=project))
    dead = f"unix://{tmp_path}/no-engine.sock"
    result = run(["-m", "reconciler", "-f", str(loaded.file), "plan"], env={"DOCKER_HOST": dead})
    assert result.returncode == 1
    assert "cannot reach the Docker engine" in result.stderr and "Traceback" not in result.stderr


def test_an_unclaimed_child_is_stopped_when_the_process_exits(write_spec, project):
    loaded = write_spec(SPEC.format(project=project))
    script = ("import sys; from pathlib import Path; from reconciler.observe import prefetch;"
              "prefetch.start(Path(sys.argv[1])); print(prefetch._pending.pid)")
    result = run(["-c", script, str(loaded.file)])
    pid = int(result.stdout)
    time.sleep(0.05)  # the parent has exited; a live child would still be importing docker
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


BACKUP = """
import json, sys
from pathlib import Path
from reconciler.observe import prefetch
from reconciler.session import Session
from reconciler.spec.load import load_spec
from reconciler.backup.run import backup_services

spec = Path(sys.argv[1]).resolve()
prefetch.start(spec, containers_only=True)
loaded = load_spec(spec)
session = Session(loaded, prefetched=prefetch.claim_containers(spec, loaded.spec.project))
read = sorted(session.prefetched)
run = backup_services(session, ["cache"])
print(json.dumps({"docker_imported": "docker" in sys.modules, "psycopg_imported": "psycopg" in sys.modules,
                  "read": read, "left": sorted(session.prefetched),
                  "keys": run.document["services"]["cache"]["key_count"]}))
"""


def test_a_cache_backup_with_the_head_start_never_imports_the_sdk(client, write_spec, project):
    """backup, restore and verify: the child inspects the containers, the parent only uses them;
    nor psycopg, which the check of critical tables once imported after every backup."""
    import redis

    from reconciler.engines import container_ip

    loaded = write_spec(SPEC.format(project=project) + "backup:\n  local: { path: ./backups }\n")
    ids = materialise(client, loaded, ["cache"])
    ip = container_ip(client.api.inspect_container(ids["cache"]))
    redis.Redis(host=ip, port=6379).mset({"a": 1, "b": 2, "c": 3})
    result = run(["-c", BACKUP, str(loaded.file)])
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"docker_imported": False, "psycopg_imported": False,
                                         "read": [f"{project}-cache"], "left": [], "keys": 3}


def test_a_prefetched_document_is_used_once_then_the_engine_is_asked(client, write_spec, project):
    from reconciler.session import Session

    loaded = write_spec(SPEC.format(project=project))
    ids = materialise(client, loaded, ["cache"])
    name = f"{project}-cache"
    stale = {"Id": "read-at-start", "Name": "/" + name}
    session = Session(loaded, _client=client, prefetched={name: stale})
    assert session.container_doc("cache") is stale
    assert session.container_doc("cache")["Id"] == ids["cache"]


def test_containers_read_for_another_project_are_not_used(client, write_spec, project):
    loaded = write_spec(SPEC.format(project=project))
    materialise(client, loaded, ["cache"])
    script = ("import json, sys; from pathlib import Path; from reconciler.observe import prefetch\n"
              "spec = Path(sys.argv[1]).resolve(); prefetch.start(spec, containers_only=True)\n"
              "print(json.dumps([sorted(prefetch.claim_containers(spec, sys.argv[2])),"
              " prefetch.claim(spec, sys.argv[2], [])]))")
    mine = json.loads(run(["-c", script, str(loaded.file), project]).stdout)
    other = json.loads(run(["-c", script, str(loaded.file), project + "-other"]).stdout)
    assert mine == [[f"{project}-cache"], None] and other == [[], None]
