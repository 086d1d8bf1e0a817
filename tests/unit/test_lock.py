"""The apply lock: one holder at a time, a clear message when busy, waiting, dead-holder takeover."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from reconciler.apply.lock import ApplyLock, LockError


def test_a_second_apply_is_refused_with_who_holds_it(tmp_path):
    with ApplyLock(tmp_path, "first"):
        with pytest.raises(LockError) as caught, ApplyLock(tmp_path, "second"):
            pass
    error = caught.value
    assert error.exit_code == 1 and error.ref == "lock.busy"
    assert f"pid {os.getpid()}" in error.message and "--lock-wait" in error.hint


def test_waiting_gets_the_lock_when_the_holder_finishes(tmp_path):
    first = ApplyLock(tmp_path, "first").__enter__()
    threading.Timer(0.3, first.__exit__, (None, None, None)).start()
    began = time.monotonic()
    with ApplyLock(tmp_path, "second", wait=5, poll=0.05) as second:
        assert second.took_over is None
    assert 0.25 <= time.monotonic() - began < 5


def test_waiting_gives_up_after_the_wait(tmp_path):
    with ApplyLock(tmp_path, "first"):
        began = time.monotonic()
        with pytest.raises(LockError), ApplyLock(tmp_path, "second", wait=0.3, poll=0.05):
            pass
        assert time.monotonic() - began >= 0.3


def test_a_dead_holders_lock_is_taken_over_and_named(tmp_path):
    # A killed apply leaves its holder record, but the kernel has dropped its flock.
    record = {"who": "ops", "host": "web-1", "pid": 999999, "since": "2026-01-01T00:00:00+00:00",
              "apply_id": "20260101T000000Z-dead00"}
    (tmp_path / "apply.lock").write_text(json.dumps(record))
    with ApplyLock(tmp_path, "next") as lock:
        assert lock.took_over is not None and lock.took_over.apply_id == "20260101T000000Z-dead00"
        assert "ops@web-1 pid 999999" in lock.took_over.describe()
        assert json.loads((tmp_path / "apply.lock").read_text())["apply_id"] == "next"


def test_a_clean_exit_leaves_nothing_to_take_over(tmp_path):
    with ApplyLock(tmp_path, "one"):
        pass
    assert (tmp_path / "apply.lock").read_text() == ""
    with ApplyLock(tmp_path, "two") as lock:
        assert lock.took_over is None


@pytest.fixture()
def host_locks(tmp_path, monkeypatch):
    from reconciler.apply.lock import LOCK_DIR_ENV

    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path / "host"))
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    return tmp_path


def test_two_state_dirs_of_one_project_share_the_host_lock(host_locks):
    """Two checkouts of one stack (a CI workspace, an operator's folder): QA saw two applies
    at once take each other's new containers for leftovers."""
    from reconciler.apply.lock import held_by

    with ApplyLock(host_locks / "ci", "first", project="shop"):
        with pytest.raises(LockError) as caught, ApplyLock(host_locks / "ops", "second", project="shop"):
            pass
        assert held_by(host_locks / "ops", "shop").apply_id == "first"
        assert held_by(host_locks / "ops") is None  # that state dir's own lock is free
        with ApplyLock(host_locks / "ops", "other", project="blog"):  # another project: no wait
            pass
    error = caught.value
    assert error.ref == "lock.busy" and "another apply of project shop" in error.message
    assert "share one state_dir" in error.hint
    assert not (host_locks / "ops" / "apply.lock").read_text()  # the refused one let its own go
    with ApplyLock(host_locks / "ops", "third", project="shop"):
        pass
    assert held_by(host_locks / "ci", "shop") is None


def test_another_engine_is_another_lock(host_locks, monkeypatch):
    with ApplyLock(host_locks / "a", "first", project="shop"):
        monkeypatch.setenv("DOCKER_HOST", "ssh://deploy@staging")
        with ApplyLock(host_locks / "b", "second", project="shop"):
            pass


def test_a_waiting_apply_says_so_once_and_how_long_it_waited(host_locks):
    told = []
    with ApplyLock(host_locks / "a", "first", project="shop"):
        with pytest.raises(LockError) as caught, ApplyLock(host_locks / "b", "second", wait=0.2, poll=0.05,
                                                          project="shop", on_wait=told.append):
            pass
    assert [holder.apply_id for holder in told] == ["first"]
    assert "(waited 0.2s)" in caught.value.message
