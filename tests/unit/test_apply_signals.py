"""SIGTERM is Ctrl-C for apply; a rollback finishes whatever arrives meanwhile."""

from __future__ import annotations

import os
import signal

import pytest

from reconciler.apply.signals import finishing, stop_on_sigterm


def test_sigterm_interrupts_like_ctrl_c():
    previous = signal.getsignal(signal.SIGTERM)
    try:
        stop_on_sigterm()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 0.5)  # let the handler run
    finally:
        signal.signal(signal.SIGTERM, previous)


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
