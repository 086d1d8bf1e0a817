"""The data commands' command line, where no engine is needed: argument help, a missing
engine for `health`, and the slips `restore`/`verify` catch before any store is read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

SPEC = """\
version: 1
project: cli-data
services:
  postgres:
    kind: postgres
    image: reconcile-lab/postgres:15
    env: { POSTGRES_PASSWORD: secret-pw-0001 }
    stateful: true
    backup: { databases: [clinic] }
  cache:
    kind: redis
    image: reconcile-lab/redis:7
    stateful: true
  web:
    kind: http
    image: reconcile-lab/app:1
backup:
  local: { path: ./backups }
"""


@pytest.fixture()
def spec(tmp_path):
    path = tmp_path / "reconcile.yaml"
    path.write_text(textwrap.dedent(SPEC))
    return path


def run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "reconciler", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "NO_COLOR": "1", **(env or {})})


@pytest.mark.parametrize(("command", "texts"), [
    ("restore", ["latest, or a backup id.", "Services (default: all)."]),
    ("verify", ["latest, or a backup id.", "Services (default: all)."]),
    ("health", ["Services (default: all)."]),
])
def test_help_shows_each_arguments_help_once(command, texts):
    result = run(command, "--help")
    assert result.returncode == 0, result.stderr
    for text in texts:
        assert result.stdout.count(text) == 1, result.stdout
    assert "Positional arguments" not in result.stdout


def test_health_without_an_engine_is_critical_not_minor(spec):
    result = run("-f", str(spec), "health", env={"DOCKER_HOST": "unix:///nope"})
    assert result.returncode == 2, result.stderr
    assert "cannot reach the Docker engine at unix:///nope" in result.stderr
    assert "the services cannot be checked" in result.stderr and "hint:" in result.stderr
    result = run("-f", str(spec), "health", "--json", env={"DOCKER_HOST": "unix:///nope"})
    assert result.returncode == 2
    assert json.loads(result.stdout)["error"] == "engine.unreachable"


@pytest.mark.parametrize("command", ["verify", "restore"])
def test_a_service_given_as_the_backup_id_is_named_as_such(spec, command):
    result = run("-f", str(spec), command, "postgres", "--yes" if command == "restore" else "--json")
    assert result.returncode == 1
    text = result.stderr + result.stdout
    assert "postgres is a service, not a backup id" in text
    assert f"reconcile {command} latest postgres" in text
    assert "no backup with id" not in text


@pytest.mark.parametrize("command", ["verify", "restore"])
def test_an_unknown_service_is_refused_with_the_list(spec, command):
    args = ["--yes"] if command == "restore" else []
    result = run("-f", str(spec), command, "latest", "nosuchsvc", *args)
    assert result.returncode == 1
    assert f"error[{command}.unknown-service] unknown service nosuchsvc" in result.stderr
    assert "hint: services: cache, postgres, web" in result.stderr
    assert "no verified backup" not in result.stderr


def test_a_backup_id_is_still_looked_up(spec):
    result = run("-f", str(spec), "verify", "2026-01-01-000000", "postgres")
    assert result.returncode == 1
    assert "no backup with id 2026-01-01-000000" in result.stderr


@pytest.mark.parametrize("command", ["verify", "restore"])
def test_a_service_that_keeps_no_data_is_named_as_such(spec, command):
    args = ["--yes"] if command == "restore" else []
    result = run("-f", str(spec), command, "latest", "web", *args)
    assert result.returncode == 1
    assert f"error[{command}.no-data] nothing to {command} for web: no data is kept (web is kind http)" \
        in result.stderr
    assert "no verified backup" not in result.stderr


def test_an_unknown_id_says_s3_was_not_looked_at_when_the_spec_disables_it(spec):
    result = run("-f", str(spec), "restore", "2026-01-01-000000", "postgres", "--yes")
    assert result.returncode == 1
    assert "no backup with id 2026-01-01-000000 in the local folder (S3 is disabled in the spec" in result.stderr
