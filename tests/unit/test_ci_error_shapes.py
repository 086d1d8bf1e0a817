"""reconcile in CI, without an engine: `changes` in a checkout git refuses (another user's)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

SPEC = "version: 1\nproject: demo\nservices:\n  api:\n    image: app:1\n"
GIT_ENV = {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], env={**os.environ, **GIT_ENV}, check=True,
                   capture_output=True)


def test_changes_in_a_checkout_owned_by_another_user_says_so_and_how_to_trust_it(tmp_path):
    """A container job's checkout (another uid): git refuses it as "dubious ownership"; the error
    must say that and how to trust it, not "not inside a git repository, run in a checkout"."""
    repo = tmp_path / "repo"
    (repo / "deploy").mkdir(parents=True)
    (repo / "deploy" / "reconcile.yaml").write_text(SPEC)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "base")
    env = {k: v for k, v in os.environ.items() if k not in ("GITHUB_OUTPUT", "RECONCILE_FILE")}
    env |= GIT_ENV | {"GIT_TEST_ASSUME_DIFFERENT_OWNER": "1", "NO_COLOR": "1"}  # git's own switch for this check
    done = subprocess.run([sys.executable, "-m", "reconciler", "-f", str(repo / "deploy" / "reconcile.yaml"),
                           "changes", "--base", "main", "--json"], cwd=repo, env=env, capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    error = json.loads(done.stdout)
    assert error["error"] == "changes.unsafe-repo", error
    assert "owned by another user" in error["message"] and str(repo) in error["message"], error
    assert error["hint"] == f"trust it for this job: git config --global --add safe.directory {repo}", error


def test_a_spec_error_as_json_has_the_documented_error_shape(tmp_path):
    """docs/ci.md: an error is {"error", "message", "hint", "location"}; a spec with problems
    too (the first one's), with all of them under "errors"."""
    spec = tmp_path / "reconcile.yaml"
    spec.write_text(SPEC + "    bogus: 1\n    other: 2\n")
    env = {k: v for k, v in os.environ.items() if k != "RECONCILE_FILE"} | {"NO_COLOR": "1"}
    for command in (["plan", "--json"], ["drift", "--json"], ["validate", "--json"]):
        done = subprocess.run([sys.executable, "-m", "reconciler", "-f", str(spec), *command], env=env,
                              capture_output=True, text=True)
        assert done.returncode == 1, done.stderr
        error = json.loads(done.stdout)
        assert error["error"] == "spec" and [e["message"] for e in error["errors"]] == [
            "unknown key 'bogus'", "unknown key 'other'"], error
        assert error["message"] == "unknown key 'bogus' (and 1 more problem: see errors)", error
        assert error["hint"] and error["location"].endswith(":6:5 (services.api.bogus)"), error


def test_an_engine_socket_the_user_may_not_open_says_permission_denied_not_start_it(tmp_path):
    """A CI runner's user outside the docker group: the engine runs, its socket refuses the user.
    "start it" would send them the wrong way; the error names the permission and the group."""
    path = tmp_path / "docker.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    path.chmod(0)
    spec = tmp_path / "reconcile.yaml"
    spec.write_text(SPEC)
    env = {k: v for k, v in os.environ.items() if k != "RECONCILE_FILE"}
    env |= {"NO_COLOR": "1", "DOCKER_HOST": f"unix://{path}"}
    head = []
    if os.geteuid() == 0:  # root opens any file: drop the capability that lets it
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("setpriv is needed to drop root's file capabilities")
        head = [setpriv, "--inh-caps=-all", "--bounding-set=-all", "--"]
    try:
        done = subprocess.run([*head, sys.executable, "-m", "reconciler", "-f", str(spec), "drift", "--json"],
                              env=env, capture_output=True, text=True, cwd=tmp_path)
    finally:
        server.close()
    assert done.returncode == 1, done.stderr
    error = json.loads(done.stdout)
    assert error["error"] == "engine.unreachable", error
    assert error["message"].endswith("permission denied on its socket"), error
    assert "docker group" in error["hint"] and "start it" not in error["hint"], error


def test_a_usage_error_as_json_has_every_key_of_the_documented_error_shape(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RECONCILE_FILE"} | {"NO_COLOR": "1"}
    done = subprocess.run([sys.executable, "-m", "reconciler", "-f", str(tmp_path / "r.yaml"), "drift", "--json",
                           "--bogus"], env=env, capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    assert set(json.loads(done.stdout)) == {"error", "message", "hint", "location"}, done.stdout
