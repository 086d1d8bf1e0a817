"""Stop signals during apply: SIGTERM (systemd stop, a cancelled CI job, ``timeout``) is
handled as Ctrl-C is, so an interrupted swap is rolled back; and while a rollback puts the
old version back, a further Ctrl-C or SIGTERM waits for it rather than leaving neither
version running."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

STOPS = (signal.SIGINT, signal.SIGTERM)


def stop_on_sigterm() -> None:
    """SIGTERM raises ``KeyboardInterrupt`` in the main thread, like SIGINT (the CLI calls it
    once, after the prefetch child is forked: the child keeps the default)."""
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt("SIGTERM")  # named, so the message can say what stopped the command


@contextmanager
def finishing(what: str, *, then_stop: bool = False) -> Iterator[None]:
    """Ctrl-C and SIGTERM are noted, not acted on, until the block ends; with ``then_stop``
    the first one then takes effect as it would have (the handler that was there before: a
    ``KeyboardInterrupt``), so a step that must not be cut halfway still ends the command.
    In the main thread only, where signals arrive; a block that fails keeps its own error."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {stop: signal.getsignal(stop) for stop in STOPS}

    def held(signum, frame) -> None:
        received.append(signum)
        sys.stderr.write(f"{signal.Signals(signum).name} received: {what} finishes first\n")

    for stop in STOPS:
        signal.signal(stop, held)
    try:
        yield
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, handler)
    if then_stop and received:
        signal.raise_signal(received[0])
