"""What people and CI logs see of a container's own output: its words, never the terminal codes
in it (colour, a window title, a cursor move that would overwrite reconcile's lines)."""

from __future__ import annotations

import json

import pytest

from tests.integration.apply_support import cli, lab_env, show
from tests.integration.conftest import materialise

pytestmark = pytest.mark.engine

SPEC = """\
version: 1
project: "{project}"
state_dir: ./state
services:
  crashy:
    image: reconcile-lab/debian:bookworm
    command: ["sh", "-c", "printf '{codes}'; exit 3"]
    restart: "no"
    health: { http: { port: 80, path: /health }, timeout: 20s }  # never ready: apply fails whenever it looks
"""
CODES = r"\\033[31mERROR\\033[0m boom \\033]0;pwned\\007 done\\033[1A\\033[2K\\n"  # printf's, in YAML
CONTROL = ("\x1b", "\x07")


def test_apply_shows_a_failing_container_log_lines_without_terminal_codes(project, tmp_path):
    spec = tmp_path / "reconcile.yaml"
    spec.write_text(SPEC.replace("{project}", project).replace("{codes}", CODES))
    applied = cli(spec, lab_env(project, tmp_path), "apply", "--auto-approve")
    assert applied.returncode == 2, show(applied)
    assert "  | ERROR boom  done\n" in applied.stdout, show(applied)
    assert not any(code in applied.stdout + applied.stderr for code in CONTROL), show(applied)  # was: raw codes


def test_diagnose_shows_a_stopped_container_log_lines_without_terminal_codes(client, project, write_spec, tmp_path):
    loaded = write_spec(SPEC.replace("{codes}", CODES))
    container = materialise(client, loaded)["crashy"]
    assert client.api.wait(container, timeout=60)["StatusCode"] == 3
    env = lab_env(project, tmp_path)
    diagnosed = cli(loaded.file, env, "diagnose")
    assert diagnosed.returncode == 2, show(diagnosed)
    assert "  | ERROR boom  done\n" in diagnosed.stdout, show(diagnosed)
    assert not any(code in diagnosed.stdout for code in CONTROL), show(diagnosed)  # was: raw codes
    as_json = cli(loaded.file, env, "diagnose", "--json")
    assert json.loads(as_json.stdout)["logs"]["crashy"] == ["ERROR boom  done"], show(as_json)


def test_health_of_a_service_named_twice_shows_it_once(project, tmp_path):
    spec = tmp_path / "reconcile.yaml"
    spec.write_text(f'version: 1\nproject: "{project}"\nstate_dir: ./state\n'
                    "services:\n  web:\n    image: reconcile-lab/nginx:latest\n")
    env = lab_env(project, tmp_path)
    assert cli(spec, env, "apply", "--auto-approve").returncode == 0
    checked = cli(spec, env, "health", "web", "web")
    assert checked.returncode == 0, show(checked)
    assert [row.split()[0] for row in checked.stdout.splitlines()] == ["service", "web"], show(checked)  # was: twice
