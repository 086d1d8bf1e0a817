"""A mistyped option or value is an error like any other: exit 1, never click's 2, which CI
reads as "changes" (`plan --detailed-exitcode`) or "drift" (`drift`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reconciler", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)


@pytest.mark.parametrize("args", [("plan", "--detailed-exitcode", "--profiles", "app"),
                                  ("drift", "--metrics-fle", "x"),
                                  ("apply", "--lock-wait", "xx", "--auto-approve"),
                                  ("nosuch",)])
def test_usage_errors_exit_1_with_click_message(args):
    result = run(*args)
    assert result.returncode == 1, result
    assert "Error:" in result.stderr and "Usage:" in result.stderr


def test_usage_error_in_json_mode_is_json_on_stdout():
    result = run("plan", "--json", "--profiles", "app")
    assert result.returncode == 1
    error = json.loads(result.stdout)
    assert error["error"] == "usage" and "--profiles" in error["message"]


def test_help_and_version_still_exit_0():
    assert run("--help").returncode == 0 and run("plan", "--help").returncode == 0
    assert run("--version").stdout.startswith("reconcile ")


def test_health_of_a_service_the_spec_does_not_have_is_an_error_not_a_missing_container():
    result = run("-f", "specs/lab.yaml", "health", "nosuch", "--json")
    assert result.returncode == 1, result  # 3 would say "containers missing"
    assert json.loads(result.stdout)["error"] == "health.unknown-service"
