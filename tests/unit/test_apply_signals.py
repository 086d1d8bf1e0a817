"""SIGTERM is Ctrl-C for apply; a rollback finishes whatever arrives meanwhile; an interrupt
is reported with what the stages it crossed noted."""

from __future__ import annotations

import os
import signal

import pytest

from reconciler.apply.signals import finishing, stop_on_sigterm
from reconciler.errors import Interrupted


def test_sigterm_interrupts_like_ctrl_c():
    previous = signal.getsignal(signal.SIGTERM)
    try:
        stop_on_sigterm()
        with pytest.raises(KeyboardInterrupt) as caught:
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 0.5)  # let the handler run
    finally:
        signal.signal(signal.SIGTERM, previous)
    caught.value.add_note("no backup was kept")
    said = Interrupted.from_stop(caught.value)
    assert (said.message, said.exit_code, said.ref) == ("stopped by SIGTERM: no backup was kept", 130, "interrupted")


def test_an_interrupt_says_what_each_stage_left():
    stop = KeyboardInterrupt()
    assert Interrupted.from_stop(stop).message == "interrupted"
    stop.add_note("no live data was changed")
    stop.add_note("already restored: cache (from 2026-11-29-101010)")
    assert Interrupted.from_stop(stop).message == \
        "interrupted: no live data was changed; already restored: cache (from 2026-11-29-101010)"


def test_a_rollback_is_not_cut_short_by_ctrl_c_or_sigterm(capsys):
    before = signal.getsignal(signal.SIGINT)
    done = []
    with finishing("the rollback"):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        done.append("undo finished")
    assert done == ["undo finished"]
    err = capsys.readouterr().err
    assert "SIGINT received: the rollback finishes first" in err
    assert "SIGTERM received: the rollback finishes first" in err
    assert signal.getsignal(signal.SIGINT) is before


def test_a_command_whose_stages_note_their_changes_says_nothing_was_changed_when_none_did():
    """QA: Ctrl-C early in backup or restore printed a bare "interrupted"."""
    from reconciler.cli.app import NOTED_COMMANDS

    assert Interrupted.from_stop(KeyboardInterrupt(), silent_means_unchanged=True).message == \
        "interrupted: nothing was changed"
    noted = KeyboardInterrupt()
    noted.add_note("no backup was kept")
    assert Interrupted.from_stop(noted, silent_means_unchanged=True).message == "interrupted: no backup was kept"
    assert {"backup", "restore", "plan"} <= NOTED_COMMANDS and not {"apply", "heal", "backups"} & NOTED_COMMANDS
