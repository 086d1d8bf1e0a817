"""The launcher's early guess at the subcommand and spec file (before typer parses argv)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.cli.app import OWN_COMMANDS, app
from reconciler.cli.launch import command_of


@pytest.mark.parametrize(("argv", "command", "spec", "rest"), [
    (["plan"], "plan", "reconcile.yaml", []),
    (["-f", "s.yaml", "plan", "--json"], "plan", "s.yaml", ["--json"]),
    (["--file", "s.yaml", "plan"], "plan", "s.yaml", []),
    (["--file=s.yaml", "plan", "-p", "app"], "plan", "s.yaml", ["-p", "app"]),
    (["-fs.yaml", "apply", "--auto-approve"], "apply", "s.yaml", ["--auto-approve"]),
    (["--version"], None, "reconcile.yaml", []),
    (["--help", "plan"], None, "reconcile.yaml", []),
    ([], None, "reconcile.yaml", []),
    (["-f"], None, "", []),
])
def test_command_of(argv, command, spec, rest):
    assert command_of(argv, environ={}) == (command, Path(spec), rest)


def test_command_of_takes_the_spec_from_the_environment():
    assert command_of(["plan"], environ={"RECONCILE_FILE": "env.yaml"})[1] == Path("env.yaml")
    assert command_of(["-f", "x.yaml", "plan"], environ={"RECONCILE_FILE": "env.yaml"})[1] == Path("x.yaml")


def test_own_commands_are_the_ones_app_registers_before_the_others():
    assert {c.name or c.callback.__name__ for c in app.registered_commands} >= OWN_COMMANDS


def test_help_shows_defaults_in_plain_brackets():
    result = subprocess.run([sys.executable, "-m", "reconciler", "restore", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "[default: latest]" in result.stdout and "\\[" not in result.stdout


@pytest.mark.parametrize(("argv", "started"), [
    (["plan"], {"containers_only": False}),
    (["-f", "s.yaml", "backup", "cache"], {"containers_only": True}),
    (["restore", "latest", "--yes"], {"containers_only": True}),
    (["verify"], {"containers_only": True}),
    (["backup", "--help"], None),
    (["health"], None),
    (["apply"], None),
])
def test_which_commands_get_a_head_start(monkeypatch, argv, started):
    from reconciler.cli import app as app_module
    from reconciler.cli import launch
    from reconciler.observe import prefetch

    calls = []
    monkeypatch.setattr(sys, "argv", ["reconcile", *argv])
    monkeypatch.setattr(prefetch, "start", lambda spec, **kw: calls.append(kw))
    monkeypatch.setattr(app_module, "main", lambda command: None)
    monkeypatch.setattr(launch.gc, "freeze", lambda: None)
    launch.main()
    assert calls == ([] if started is None else [started])


def test_ctrl_c_while_starting_up_says_so_without_a_traceback():
    """QA: Ctrl-C in the first ~50 ms (while the CLI is imported) printed a traceback and died
    of the signal."""
    code = """
import builtins, sys
real = builtins.__import__
def cut(name, *args, **kwargs):
    if name == "reconciler.cli.app":
        raise KeyboardInterrupt
    return real(name, *args, **kwargs)
builtins.__import__ = cut
sys.argv = ["reconcile", "validate"]
from reconciler.cli.launch import main
main()
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 130
    assert result.stderr == "error[interrupted] interrupted while starting: nothing was done\n"
