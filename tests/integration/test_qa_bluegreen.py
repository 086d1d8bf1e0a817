"""Blue-green deploys an operator breaks on purpose (QA): a new version that crashes after its
health check, a container port the app does not listen on, Ctrl-C while the old version stops,
while it is being kept, during the drain (with a request in flight) and during a rollback, a
proxy removed by hand, a rollback to a version that cannot start. Traffic must keep being
served, and what the tool says (text, JSON, journal) must be true and hold no secret."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from bench.zero_downtime import HttpLoad
from tests.integration.apply_support import ROOT, apply, cli, containers, lab_env, show
from tests.integration.test_blue_green import served_by, version_of

pytestmark = pytest.mark.engine
WEB = ("-p", "web")

SPEC = """\
version: 1
project: "${env:LAB_PROJECT}"
state_dir: "${env:LAB_STATE_DIR}"
networks: { backend: {} }
services:
  api:
    profile: web
    image: "reconcile-lab/app:${env:APP:-1}"
    command: ["sh", "-c", "${env:CMD:-exec python3 /app/app.py}"]
    env: { DATABASE_URL: "${env:DB:-}", RELEASE: "${env:RELEASE:-a}", API_KEY: "${env:API_KEY:-k-initial-1}" }
    health: { http: { port: 8000, path: /health }, interval: 500ms }
    deploy:
      strategy: blue-green
      proxy_image: "reconcile-lab/nginx:latest"
      drain: "${env:DRAIN:-1s}"
      health_timeout: 8s
    networks: [backend]
    ports: ["127.0.0.1:${env:LAB_API_PORT}:${env:CPORT:-8000}"]
backup: { local: { path: "${env:LAB_BACKUP_DIR}" } }
"""

# healthy at once, killed 3 s later; the restart policy brings it back, and it dies again
CRASHES_AFTER_START = "python3 /app/app.py & sleep 3; kill -9 $!; exit 1"
# a graceful shutdown that takes 3 s: PID 1 (sh) waits before it exits, the app serves meanwhile
SLOW_TO_STOP = "trap 'sleep 3; exit 0' TERM; python3 /app/app.py & wait"


def stack(tmp_path: Path, project: str, **extra: str) -> tuple[Path, dict]:
    path = tmp_path / "qabg.yaml"
    path.write_text(textwrap.dedent(SPEC))
    return path, lab_env(project, tmp_path, **extra)


def ids(client, project: str) -> dict[str, str]:
    return {n: d["Id"] for n, d in containers(client, project).items()}


def test_a_version_that_crashes_during_the_drain_is_undone_and_the_old_one_keeps_serving(
        client, project, tmp_path):
    """It passed its health check, then died while the old one drained: apply stopped the old
    one anyway, said ok (exit 0), and the API answered 502 (QA)."""
    spec, env = stack(tmp_path, project, DRAIN="6s")
    assert apply(spec, env, *WEB).returncode == 0
    before = ids(client, project)
    load = HttpLoad(int(env["LAB_API_PORT"]), rate=40, threads=2, max_seconds=120).start()
    try:
        result = apply(spec, {**env, "APP": "2", "CMD": CRASHES_AFTER_START}, *WEB)
    finally:
        load.stop()
    assert result.returncode == 2, show(result)
    assert "was ready, then" in result.stderr, show(result)
    assert "the proxy was pointed back at it, confirmed" in result.stderr, show(result)
    assert ids(client, project) == before, show(result)
    assert version_of(env) == "1" and served_by(tmp_path) == before[f"{project}-api"]
    assert cli(spec, env, "plan", "--detailed-exitcode", *WEB).returncode == 0


# Runs the CLI with ``dockerio.stop`` held on its first call: the old container gets SIGTERM
# (as ``docker stop`` sends it), then the marker is written and the stop waits, so the test's
# Ctrl-C lands while the old container is still in its grace period.
_STOP_HELD = """
import sys, time
from pathlib import Path
from reconciler import dockerio
marker, original, calls = Path(sys.argv.pop(1)), dockerio.stop, [0]
def stop(client, container, timeout=30):
    calls[0] += 1
    if calls[0] > 1:
        return original(client, container, timeout)
    client.api.kill(container, signal="SIGTERM")
    marker.write_text("here")
    time.sleep(120)
dockerio.stop = stop
from reconciler.cli.launch import main
sys.argv[0] = "reconcile"
main()
"""


def test_ctrl_c_while_the_old_version_stops_starts_it_again_before_pointing_back(client, project, tmp_path):
    """The undo pointed the proxy back at the old container while it was still shutting down,
    said "still serves", and then the API was down until the next apply (QA)."""
    spec, env = stack(tmp_path, project, CMD=SLOW_TO_STOP)
    assert apply(spec, env, *WEB).returncode == 0
    before = ids(client, project)
    marker = tmp_path / "held"
    load = HttpLoad(int(env["LAB_API_PORT"]), rate=40, threads=2, max_seconds=120).start()
    try:
        process = subprocess.Popen([sys.executable, "-c", _STOP_HELD, str(marker), "-f", str(spec), "apply",
                                    "--auto-approve", *WEB], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env={**env, "APP": "2"}, cwd=ROOT)
        deadline = time.monotonic() + 120
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
        time.sleep(4)  # past the old container's 3 s shutdown
    finally:
        seen = load.stop()
    result = subprocess.CompletedProcess("apply", process.returncode, out, err)
    assert result.returncode == 2, show(result)
    assert "still serves" in err, show(result)
    boxes = containers(client, project)
    assert ids(client, project) == before, show(result)
    assert boxes[f"{project}-api"]["State"]["Running"], show(result)
    assert version_of(env) == "1" and served_by(tmp_path) == before[f"{project}-api"]
    assert seen.failed == 0, (seen.errors, show(result))
    assert cli(spec, env, "plan", "--detailed-exitcode", *WEB).returncode == 0


@pytest.mark.parametrize("change", [{}, {"APP": "2"}], ids=["port-only", "port-and-image"])
def test_a_container_port_the_app_does_not_listen_on_is_refused_before_traffic_moves(
        client, project, tmp_path, change):
    """``ports: …:9000`` for an app that listens on 8000 (its health check still on 8000):
    apply said ok, exit 0, and the proxy answered 502 from then on (QA)."""
    spec, env = stack(tmp_path, project)
    assert apply(spec, env, *WEB).returncode == 0
    before = ids(client, project)
    result = apply(spec, {**env, "CPORT": "9000", **change}, *WEB)
    assert result.returncode == 2, show(result)
    assert "does not accept connections on port 9000" in result.stderr, show(result)
    assert version_of(env) == "1", show(result)
    assert {n: i for n, i in ids(client, project).items() if "proxy" not in n} == \
        {n: i for n, i in before.items() if "proxy" not in n}


# Runs the CLI with ``gate.wait_ready`` held on its first call (the kept version a rollback
# starts): the marker is written, then it waits for the test's Ctrl-C.
_READY_HELD = """
import sys, time
from pathlib import Path
from reconciler.apply import gate
marker, original, calls = Path(sys.argv.pop(1)), gate.wait_ready, [0]
def wait_ready(*args, **kwargs):
    calls[0] += 1
    if calls[0] == 1:
        marker.write_text("here")
        time.sleep(120)
    return original(*args, **kwargs)
gate.wait_ready = wait_ready
from reconciler.cli.launch import main
sys.argv[0] = "reconcile"
main()
"""


def test_a_rollback_stopped_by_ctrl_c_says_interrupted_and_to_run_the_rollback_again(client, project, tmp_path):
    """The record said ``KeyboardInterrupt: `` and the hint "run apply again", which changes
    nothing after a rollback (QA)."""
    spec, env = stack(tmp_path, project)
    assert apply(spec, env, *WEB).returncode == 0
    assert apply(spec, {**env, "APP": "2"}, *WEB).returncode == 0
    before, marker = ids(client, project), tmp_path / "held"
    process = subprocess.Popen([sys.executable, "-c", _READY_HELD, str(marker), "-f", str(spec), "rollback",
                                "api", "--auto-approve"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**env, "APP": "2"}, cwd=ROOT)
    deadline = time.monotonic() + 120
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    result = subprocess.CompletedProcess("rollback", process.returncode, out, err)
    assert result.returncode == 2, show(result)
    assert "run `reconcile rollback` again" in err and "run apply again" not in err, show(result)
    assert "KeyboardInterrupt" not in out + err, show(result)
    ends = [json.loads(line) for path in (tmp_path / "state" / "journal").glob("*.jsonl")
            for line in path.read_text().splitlines() if '"action-end"' in line and "rollback:api" in line]
    assert [e["error"] for e in ends] == ["interrupted"], ends
    assert ids(client, project) == before and version_of({**env, "APP": "2"}) == "2"


# Runs the CLI with the first ``dockerio.set_restart_policy(…, "no")`` (the retired old
# container being kept) slowed: the marker is written, and the test's Ctrl-C lands in it.
_KEEP_HELD = """
import sys, time
from pathlib import Path
from reconciler import dockerio
marker, original, calls = Path(sys.argv.pop(1)), dockerio.set_restart_policy, [0]
def set_restart_policy(client, container, policy):
    if policy == "no":
        calls[0] += 1
        if calls[0] == 1:
            marker.write_text("here")
            time.sleep(3)
    return original(client, container, policy)
dockerio.set_restart_policy = set_restart_policy
from reconciler.cli.launch import main
sys.argv[0] = "reconcile"
main()
"""


def test_ctrl_c_once_traffic_moved_keeps_the_old_version_whole_and_says_the_new_one_serves(
        client, project, tmp_path):
    """A Ctrl-C while the old container was being kept left it as ``-old-`` with its restart
    policy, and the apply said "switch-traffic:api failed" while app 2 served (QA)."""
    spec, env = stack(tmp_path, project)
    assert apply(spec, env, *WEB).returncode == 0
    old, marker = ids(client, project)[f"{project}-api"], tmp_path / "held"
    process = subprocess.Popen([sys.executable, "-c", _KEEP_HELD, str(marker), "-f", str(spec), "apply",
                                "--auto-approve", *WEB], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**env, "APP": "2"}, cwd=ROOT)
    deadline = time.monotonic() + 120
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    result = subprocess.CompletedProcess("apply", process.returncode, out, err)
    assert result.returncode == 2, show(result)
    assert "error[apply.interrupted]" in err and "reconcile rollback api" in err, show(result)
    kept = {n: d for n, d in containers(client, project).items() if d["Id"] == old}
    assert [n.startswith(f"{project}-api-kept-") for n in kept] == [True], show(result)
    assert [d["HostConfig"]["RestartPolicy"]["Name"] for d in kept.values()] == ["no"]
    assert version_of(env) == "2"


@pytest.mark.parametrize("by_hand", ["rm", "stop"])
def test_a_failed_deploy_does_not_say_the_old_version_serves_when_its_proxy_is_gone(
        client, project, tmp_path, by_hand):
    """The proxy removed (or stopped) by hand, then a deploy that fails: "qabg1-api still
    serves" while nothing answered on the host port (QA)."""
    spec, env = stack(tmp_path, project)
    assert apply(spec, env, *WEB).returncode == 0
    proxy = f"{project}-api-proxy"
    if by_hand == "rm":
        client.api.remove_container(proxy, force=True)
    else:
        client.api.stop(proxy)
    broken = {**env, "APP": "2", "DB": "postgresql://app:x@127.0.0.1:1/none"}
    result = apply(spec, broken, *WEB)
    assert result.returncode == 2, show(result)
    assert "still serves" not in result.stderr, show(result)
    state = "missing" if by_hand == "rm" else "exited"
    assert f"its proxy {proxy} is {state}" in result.stderr, show(result)
    assert "nothing serves its host ports" in result.stderr, show(result)


# runs once; started again (as a rollback starts a kept version) it says why and exits 3
ONLY_ONCE = "[ -f /tmp/once ] && { echo \"boot refused: started twice (key $API_KEY)\"; exit 3; }; " \
            "touch /tmp/once; exec python3 /app/app.py"


def test_a_rollback_to_a_version_that_cannot_start_shows_its_logs_and_valid_json(client, project, tmp_path):
    """A failed rollback said "fix the cause shown above" and showed nothing: unlike apply, it
    did not show the kept container's last log lines (QA). Shown, they must not print the
    secret the kept version runs with, which the spec has since rotated."""
    spec, env = stack(tmp_path, project, API_KEY="rotated-new-key-2222")
    assert apply(spec, {**env, "CMD": ONLY_ONCE, "API_KEY": "old-secret-key-1111"}, *WEB).returncode == 0
    assert apply(spec, env, *WEB).returncode == 0
    before = ids(client, project)
    result = cli(spec, env, "rollback", "api", "--auto-approve", "--json")
    assert result.returncode == 2, show(result)
    events = [json.loads(line) for line in result.stdout.splitlines()]
    logs = [e for e in events if e["event"] == "logs"]
    assert logs and any("boot refused: started twice" in line for line in logs[0]["lines"]), show(result)
    assert events[-1]["event"] == "error" and events[-1]["exit_code"] == 2, events[-1]
    assert "still serves" in events[-1]["message"], events[-1]
    assert ids(client, project) == before and version_of(env) == "1"
    journals = "".join(p.read_text() for p in (tmp_path / "state" / "journal").glob("*.jsonl"))
    assert "old-secret-key-1111" not in result.stdout + result.stderr + journals, show(result)


def test_ctrl_c_during_the_drain_lets_requests_on_the_new_version_finish(client, project, tmp_path):
    """The undo removed the new container at once (``rm -f``): a request it was serving was
    cut, and the client got a 502 (QA)."""
    spec, env = stack(tmp_path, project, DRAIN="6s")
    assert apply(spec, env, *WEB).returncode == 0
    answers: dict[str, object] = {}

    def slow() -> None:
        url = f"http://127.0.0.1:{env['LAB_API_PORT']}/sleep?seconds=3"
        try:
            with urllib.request.urlopen(url, timeout=30) as answer:
                answers["ok"] = json.load(answer)
        except Exception as exc:  # noqa: BLE001 - the failure is the finding
            answers["error"] = repr(exc)

    process = subprocess.Popen([sys.executable, "-m", "reconciler", "-f", str(spec), "apply", "--auto-approve",
                                *WEB], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**env, "APP": "2"}, cwd=ROOT)
    lines, request = [], threading.Thread(target=slow)
    for line in process.stdout:
        lines.append(line)
        if line.lstrip().startswith("drain ") and not request.is_alive():
            request.start()
            time.sleep(0.5)  # the request is on app 2 now
            process.send_signal(signal.SIGINT)
    process.wait(timeout=120)
    request.join(30)
    assert process.returncode == 2, "".join(lines)
    assert "ok" in answers, (answers, "".join(lines))  # app 2 finished it (or app 1 had it): not a 502
    assert version_of(env) == "1"
