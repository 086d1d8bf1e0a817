"""QA of secrets in what changed on 2026-11-30 (networks, verify, saved plans, disk-full, OOM,
concurrency, terminal output, health "replacing", cache protocol errors), through the real CLI:
an interpolated value or a password never reaches stdout, stderr, JSON, the journal, the run
logs, a saved plan or a webhook."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from reconciler import dockerio
from reconciler.apply import builders
from reconciler.spec.load import load_spec
from tests.integration.conftest import purge

pytestmark = pytest.mark.engine


@pytest.fixture()
def project(client):
    name = f"qasec-{secrets.token_hex(3)}"
    yield name
    purge(client, name)


class Receiver:
    """A local webhook: every body it was sent."""

    def __init__(self) -> None:
        bodies = self.bodies = []

        class Hook(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                bodies.append(self.rfile.read(int(self.headers["Content-Length"])).decode())
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.env = {"RECONCILE_WEBHOOK_URL": f"http://127.0.0.1:{self.server.server_address[1]}/hook",
                    "RECONCILE_WEBHOOK_FORMAT": "json", "RECONCILE_NOTIFY_SUCCESS": "1"}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def receiver():
    hook = Receiver()
    yield hook
    hook.close()


def cli(spec: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reconciler", "-f", str(spec), *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "NO_COLOR": "1", **env})


def files_text(folder: Path) -> str:
    """Every text file under ``folder`` (journal, run logs, saved plans, metadata)."""
    return "\n".join(p.read_text(errors="replace") for p in sorted(folder.rglob("*"))
                     if p.is_file() and p.suffix in (".json", ".jsonl", ".txt", ".prom"))


NETWORK_SPEC = """\
version: 1
project: {project}
state_dir: ./state
networks:
  backend: { driver: "${env:QS_NET_DRIVER}" }
services:
  web:
    image: reconcile-lab/nginx:latest
    networks: [backend]
backup:
  local: { path: ./backups }
"""


def test_an_interpolated_network_driver_is_never_shown(client, project, tmp_path, receiver):
    """A network of the spec not as it says is a blocker; its message showed the spec's driver as
    it resolved ("driver bridge → <value>"), in plan, drift's JSON, its webhook, apply's error and
    a saved plan, where every interpolated value reads (sensitive) (QA)."""
    spec = tmp_path / "reconcile.yaml"
    spec.write_text(NETWORK_SPEC.replace("{project}", project))
    made = load_spec(spec, {**os.environ, "QS_NET_DRIVER": "bridge"})
    dockerio.create_network(client, builders.network_args(made, "backend"))  # the project's, made as bridge
    secret = "NetDrv-" + secrets.token_hex(6)
    env = {"QS_NET_DRIVER": secret, **receiver.env}

    said = [cli(spec, env, *args) for args in (("plan",), ("plan", "--json"), ("plan", "--markdown"),
                                                ("plan", "--out", str(tmp_path / "plan.json")),
                                                ("drift",), ("drift", "--json"),
                                                ("apply", "--auto-approve"), ("apply", "--auto-approve", "--json"))]
    assert [r.returncode for r in said] == [1] * 8, [r.stderr for r in said]
    assert "driver bridge → (sensitive)" in said[0].stdout, said[0].stdout
    assert receiver.bodies, "drift sent no notification"
    everything = "\n".join([*(r.stdout + r.stderr for r in said), *receiver.bodies, files_text(tmp_path)])
    assert secret not in everything


PORT_SPEC = """\
version: 1
project: {project}
state_dir: ./state
services:
  web:
    image: reconcile-lab/nginx:latest
    ports: ["127.0.0.1:{port}:80"]
backup:
  local: { path: ./backups }
"""

LISTENER = "import socket, sys, time\ns = socket.socket()\ns.bind(('127.0.0.1', int(sys.argv[1])))\ns.listen()\n" \
           "print('up', flush=True)\ntime.sleep(120)\n"


def test_a_port_holders_password_on_its_command_line_is_masked(project, tmp_path, receiver):
    """diagnose names the process holding a service's host port by its command line: another
    server's ``--requirepass`` reached the report, its JSON and the run log as it was (QA)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    spec = tmp_path / "reconcile.yaml"
    spec.write_text(PORT_SPEC.replace("{project}", project).replace("{port}", str(port)))
    secret = "Holder-" + secrets.token_hex(6)
    (tmp_path / "l.py").write_text(LISTENER)  # short: diagnose shows the first 120 characters
    holder = subprocess.Popen([sys.executable, "l.py", str(port), "--requirepass", secret, f"--db-password={secret}"],
                              stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert holder.stdout.readline().strip() == "up"
        text = cli(spec, receiver.env, "diagnose")
        as_json = cli(spec, receiver.env, "diagnose", "--json")
    finally:
        holder.kill()
        holder.wait()
    assert text.returncode == 2 and "--requirepass *** --db-password=***" in text.stdout, text.stdout
    report = json.loads(as_json.stdout)
    assert any("is held by pid" in json.dumps(issue) for issue in report["issues"]), report
    everything = "\n".join([text.stdout, text.stderr, as_json.stdout, as_json.stderr, *receiver.bodies,
                            files_text(tmp_path)])
    assert secret not in everything
