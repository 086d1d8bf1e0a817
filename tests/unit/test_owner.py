"""Whether the owner a leftover names still runs: only judged from the same host and pid
namespace; anything else is unknown (the caller then goes by age)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

from reconciler import owner


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_an_owner_that_exited_is_gone_and_this_process_is_not():
    me = owner.parse(owner.owner_text())
    assert me["pid"] == os.getpid() and owner.gone(me) is False
    assert owner.gone({**me, "pid": _dead_pid()}) is True


def test_an_owner_seen_from_another_host_or_pid_namespace_is_unknown():
    dead = {**owner.owner(), "pid": _dead_pid()}
    assert owner.gone({**dead, "host": socket.gethostname() + "-other"}) is None
    assert owner.gone({**dead, "pidns": "pid:[1]"}) is None
    assert owner.gone({}) is None and owner.gone(owner.parse("not json")) is None


def test_a_marker_written_before_pid_namespaces_were_recorded_is_judged_by_host_and_pid():
    legacy = json.dumps({"pid": _dead_pid(), "host": socket.gethostname()})
    assert owner.gone(owner.parse(legacy)) is True
