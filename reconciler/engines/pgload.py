"""Load table data into PostgreSQL over several connections at once (a restore's COPY half).

One server process parses and stores a COPY stream at about one core's speed; on a large
table that is most of a restore. Here each connection runs its own ``COPY … FROM STDIN``
and takes whole-line pieces of the rows from one shared queue, so a single big table is
loaded by all of them together. The rows' order in the table may differ from the dump's;
their set does not (the restore verifies exact row counts before anything is swapped in).

Each connection commits once, at ``finish``; ``abort`` makes every connection cancel its
COPY and roll back. The caller loads into a staging database, so what a failed load left
behind is dropped with it and the live database is never touched.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from contextlib import ExitStack

import psycopg

_POLL = 0.2


class LoadAborted(Exception):
    """Raised inside the loading threads when the caller gave up."""


class ParallelCopy:
    """``put(statement, rows)`` pieces in order; ``finish()`` commits, ``abort()`` undoes."""

    def __init__(self, connect: Callable[[], psycopg.Connection], workers: int,
                 settings: list[bytes]) -> None:
        self._connect = connect
        self._settings = settings
        self._queue: queue.Queue = queue.Queue(maxsize=4 * workers)
        self._abort = threading.Event()
        self._errors: list[BaseException] = []
        self._threads = [threading.Thread(target=self._work, name=f"pgload-{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def put(self, statement: bytes, rows: bytes) -> None:
        """Queue whole lines of ``statement``'s data; raises a loading thread's error."""
        while True:
            self._raise_first()
            try:
                self._queue.put((statement, rows), timeout=_POLL)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        """Wait until every piece is stored and committed; raises a loading thread's error."""
        for _ in self._threads:
            self.put(b"", b"")  # an empty statement: this thread is done
        for thread in self._threads:
            thread.join()
        self._raise_first()

    def abort(self) -> None:
        """Cancel every COPY and roll back; waits for the threads."""
        self._abort.set()
        for thread in self._threads:
            thread.join()

    def _raise_first(self) -> None:
        if self._errors:
            self._abort.set()
            raise self._errors[0]

    def _next(self) -> tuple[bytes, bytes]:
        while True:
            if self._abort.is_set():
                raise LoadAborted()
            try:
                return self._queue.get(timeout=_POLL)
            except queue.Empty:
                continue

    def _work(self) -> None:
        try:
            with ExitStack() as stack:
                conn = stack.enter_context(self._connect())
                for setting in self._settings:
                    conn.execute(setting)
                conn.execute("SET synchronous_commit = off")
                cursor = conn.cursor()
                self._copy_all(cursor)
                conn.commit()
        except LoadAborted:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by put/finish
            self._errors.append(exc)
            self._abort.set()

    def _copy_all(self, cursor: psycopg.Cursor) -> None:
        """Run one COPY per run of pieces of the same statement, until the empty one."""
        current = None
        with ExitStack() as copies:
            while True:
                statement, rows = self._next()
                if statement != current:
                    copies.close()  # ends the previous COPY (or cancels it, on an error)
                    if not statement:
                        return
                    copy = copies.enter_context(cursor.copy(statement))
                    current = statement
                copy.write(rows)
