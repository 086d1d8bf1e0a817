"""An exec whose exit event the engine lost (Debian's docker.io under load): the engine says
"running" for ever, the stream never closes. The watch ends it once the process is gone."""

from __future__ import annotations

import os
import subprocess
import sys

from reconciler.dockerio.stream import _ExecWatch


class LostExit:
    """What such an engine answers: the exec runs for ever; its pid known only after a while."""

    def __init__(self, pid: int, main_pid: int, pid_after: int = 0) -> None:
        self.pid, self.main_pid, self.asked = pid, main_pid, 0
        self.pid_after = pid_after
        self.api = self

    def exec_inspect(self, exec_id: str) -> dict:
        self.asked += 1
        return {"Running": True, "Pid": self.pid if self.asked > self.pid_after else 0}

    def inspect_container(self, container: str) -> dict:
        return {"State": {"Pid": self.main_pid}}


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_process_gone_while_the_engine_says_running_ends_the_stream():
    watch = _ExecWatch(LostExit(_dead_pid(), main_pid=os.getpid()), "db", "e1")
    assert watch.gone() and watch.lost


def test_a_pid_the_engine_gave_only_later_is_still_watched():
    engine = LostExit(_dead_pid(), main_pid=os.getpid(), pid_after=2)
    watch = _ExecWatch(engine, "db", "e1")
    assert not watch.gone() and not watch.gone()  # no pid yet: keep waiting
    assert watch.gone()


def test_a_live_process_or_one_this_host_cannot_see_keeps_the_stream():
    assert not _ExecWatch(LostExit(os.getpid(), main_pid=os.getpid()), "db", "e1").gone()
    unseen = _ExecWatch(LostExit(_dead_pid(), main_pid=_dead_pid()), "db", "e1")  # other PID namespace
    assert not unseen.gone() and not unseen.lost
