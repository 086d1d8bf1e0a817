"""A blue-green switch interrupted, or timing out, after the proxy may already serve the new
container; and a proxy whose host port changes to one another process holds. In every case
the API keeps answering, and what the tool says is true.

The command is held at a chosen point by a wrapper script (it writes a marker, then waits),
so the signal arrives there every time, not at whatever moment a sleep would hit."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bench.zero_downtime import HttpLoad
from tests.conftest_s3 import free_ports
from tests.integration.apply_support import ROOT, apply, cli, containers, show
from tests.integration.test_blue_green import served_by, stack, version_of

pytestmark = pytest.mark.engine
WEB = ("-p", "web")

# Runs the CLI with ``proxy.confirm`` replaced: its first call (the switch to the new
# container, after nginx has reloaded) either writes the marker and waits for a signal
# ("hold"), or sees a control server that never answers and times out after 1s ("timeout").
# Later calls (the undo pointing the proxy back) run as usual.
_CONFIRM = """
import sys, time
from pathlib import Path
from reconciler.deploy import proxy
marker, mode = Path(sys.argv.pop(1)), sys.argv.pop(1)
original, ask, calls = proxy.confirm, proxy._ask, [0]
def confirm(run, action_id, proxy_id, upstream, timeout=proxy.CONFIRM_TIMEOUT):
    calls[0] += 1
    if calls[0] > 1:
        return original(run, action_id, proxy_id, upstream, timeout)
    if mode == "hold":
        marker.write_text("here")
        time.sleep(120)
    proxy._ask = lambda ip: None
    try:
        return original(run, action_id, proxy_id, upstream, 1.0)
    finally:
        proxy._ask = ask
proxy.confirm = confirm
from reconciler.cli.launch import main
sys.argv[0] = "reconcile"
main()
"""


def held(spec: Path, env: dict, tmp_path: Path, mode: str, *args: str) -> subprocess.Popen:
    """The CLI with ``_CONFIRM``; in "hold" mode, returned once it waits at the marker."""
    marker = tmp_path / "held"
    process = subprocess.Popen([sys.executable, "-c", _CONFIRM, str(marker), mode, "-f", str(spec), *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    deadline = time.monotonic() + 180
    while mode == "hold" and not marker.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"never reached proxy.confirm: {process.communicate()}")
        time.sleep(0.1)
    return process


def ids(client, project: str) -> dict[str, str]:
    return {n: d["Id"] for n, d in containers(client, project).items()}


@pytest.mark.parametrize(("command", "mode", "stop"), [
    ("apply", "hold", signal.SIGTERM), ("apply", "timeout", None), ("rollback", "hold", signal.SIGINT)],
    ids=["apply-sigterm", "apply-confirm-timeout", "rollback-ctrl-c"])
def test_a_switch_stopped_after_the_reload_points_the_proxy_back(client, project, tmp_path, command, mode, stop):
    spec, env = stack(tmp_path, project)
    assert apply(spec, env, *WEB).returncode == 0
    args, run_env = ["apply", "--auto-approve", *WEB], {**env, "APP": "2"}
    if command == "rollback":  # app 2 serves, app 1 is kept: the rollback switches to app 1
        assert apply(spec, run_env, *WEB).returncode == 0
        args, env = ["rollback", "api", "--auto-approve"], run_env
    before, serving = ids(client, project), version_of(env)
    process = held(spec, run_env, tmp_path, mode, *args)
    if stop is not None:
        process.send_signal(stop)
    out, err = process.communicate(timeout=180)
    result = subprocess.CompletedProcess(args, process.returncode, out, err)

    assert result.returncode == 2, show(result)
    assert version_of(env) == serving  # not a 502: the proxy serves the old container again
    after = ids(client, project)
    assert after == before, show(result)
    assert served_by(tmp_path) == after[f"{project}-api"]
    assert "traffic never moved" not in err, show(result)
    assert "the proxy was pointed back at it" in err, show(result)
    plan = cli(spec, env, "plan", "--detailed-exitcode", *WEB)
    assert plan.returncode == 0, show(plan)


# -- the proxy's host port ------------------------------------------------------------------

def refused(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).close()
    except urllib.error.URLError as exc:
        return isinstance(exc.reason, ConnectionRefusedError)
    return False


def test_a_new_host_port_that_is_taken_leaves_the_old_proxy_serving(client, project, tmp_path):
    spec, env = stack(tmp_path, project)
    assert apply(spec, env, *WEB).returncode == 0
    before = ids(client, project)
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    taken = holder.getsockname()[1]
    moved = {**env, "LAB_API_PORT": str(taken)}
    load = HttpLoad(int(env["LAB_API_PORT"]), rate=100, threads=2, max_seconds=120).start()
    try:
        result = apply(spec, moved, *WEB)
    finally:
        seen = load.stop()
        holder.close()
    assert result.returncode == 2, show(result)
    assert f"127.0.0.1:{taken}" in result.stderr and "in use" in result.stderr, show(result)
    assert "the old proxy still serves" in result.stderr, show(result)
    assert seen.failed == 0 and seen.sent, (seen.errors, seen.sent)
    assert version_of(env) == "1" and ids(client, project) == before

    again = apply(spec, moved, *WEB)  # the port is free now: the proxy moves to it
    assert again.returncode == 0, show(again)
    assert version_of(moved) == "1" and refused(int(env["LAB_API_PORT"]))
    boxes = ids(client, project)
    assert set(boxes) == set(before) and boxes[f"{project}-api"] == before[f"{project}-api"]
    assert cli(spec, moved, "plan", "--detailed-exitcode", *WEB).returncode == 0


def test_an_interrupted_proxy_move_leaves_the_old_proxy_serving(client, project, tmp_path):
    spec, env = stack(tmp_path, project)
    assert apply(spec, env, *WEB).returncode == 0
    before = ids(client, project)
    moved = {**env, "LAB_API_PORT": str(free_ports(1)[0])}
    # held while the new proxy (beside the old one) is confirmed
    process = held(spec, moved, tmp_path, "hold", "apply", "--auto-approve", *WEB)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=180)
    assert process.returncode == 2, (out, err)
    assert version_of(env) == "1" and refused(int(moved["LAB_API_PORT"]))
    assert ids(client, project) == before and served_by(tmp_path) == before[f"{project}-api"]
    assert cli(spec, env, "plan", "--detailed-exitcode", *WEB).returncode == 0


def test_a_new_proxy_on_the_same_port_that_does_not_run_gives_it_back_to_the_old_one(client, project,
                                                                                      tmp_path):
    spec, env = stack(tmp_path, project)
    assert apply(spec, env, *WEB).returncode == 0
    before = ids(client, project)
    text = spec.read_text()
    # an image that exits at once: the proxy is recreated (its image changed) on the same port
    spec.write_text(text.replace("reconcile-lab/nginx:latest", "reconcile-lab/debian:bookworm"))
    result = apply(spec, env, *WEB)
    assert result.returncode == 2, show(result)
    assert "the old proxy serves again" in result.stderr, show(result)
    assert version_of(env) == "1" and ids(client, project) == before
    assert served_by(tmp_path) == before[f"{project}-api"]

    tag = f"reconcile-lab/nginx:{project}"  # the same nginx by another name: a new proxy that runs
    client.api.tag("reconcile-lab/nginx:latest", "reconcile-lab/nginx", tag=project)
    try:
        spec.write_text(text.replace("reconcile-lab/nginx:latest", tag))
        again = apply(spec, env, *WEB)
        assert again.returncode == 0, show(again)
        boxes = containers(client, project)
        assert set(boxes) == set(before) and boxes[f"{project}-api-proxy"]["Config"]["Image"] == tag
        assert version_of(env) == "1" and served_by(tmp_path) == before[f"{project}-api"]
        assert cli(spec, env, "plan", "--detailed-exitcode", *WEB).returncode == 0
    finally:
        client.api.remove_image(tag)
