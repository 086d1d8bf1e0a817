"""Progress bars on a terminal for long transfers (rich); nothing anywhere else.

Only when stderr is a terminal and the output is not JSON: CI logs and pipes get the plain
"… backing up x" lines alone. A total that is an estimate (a dump's size is known only once
it is done) grows when passed, and each bar ends at what was really moved.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from reconciler.backup.meter import NO_METER, Meter

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID


def meter_for(console: Console, as_json: bool) -> Meter:
    if as_json or not sys.stderr.isatty():
        return NO_METER
    return RichMeter(console)


class _Bar:
    """One task's bar; ``advance`` may be called from several threads (S3 multipart parts)."""

    def __init__(self, progress: Progress, task: TaskID, total: int | None) -> None:
        self._progress = progress
        self._task = task
        self._lock = threading.Lock()
        self.total = total
        self.done = 0

    def advance(self, amount: int) -> None:
        with self._lock:
            self.done += amount
            if self.total is not None and self.done > self.total:
                self.total = self.done
            self._progress.update(self._task, total=self.total, completed=self.done)


class RichMeter:
    def __init__(self, console: Console) -> None:
        self.console = console

    @contextmanager
    def task(self, label: str, total: int | None) -> Iterator[_Bar]:
        from rich.progress import Progress

        with Progress(*bar_columns(self.console.width), console=self.console, transient=True) as progress:
            bar = _Bar(progress, progress.add_task(label, total=total or None), total or None)
            yield bar
            progress.update(bar._task, total=bar.done, completed=bar.done)


_NUMBERS_WIDTH = 38  # "0.6/3.0 GB 123.4 MB/s 0:00:20", the spaces between the columns and a sliver of bar


def bar_columns(width: int) -> tuple:
    """One line at any width: the numbers whole, the label (``restoring <service>``) cut with
    "…" where a long service name leaves them no room (the "… restoring" line above says it
    whole). Left to rich, the label took the line and the numbers wrapped into "1…", "?"."""
    from rich.progress import BarColumn, DownloadColumn, TextColumn, TimeRemainingColumn, TransferSpeedColumn
    from rich.table import Column

    label = Column(no_wrap=True, overflow="ellipsis", max_width=max(width - _NUMBERS_WIDTH, 10))
    return (TextColumn("{task.description}", table_column=label), BarColumn(),
            DownloadColumn(table_column=Column(no_wrap=True)), TransferSpeedColumn(table_column=Column(no_wrap=True)),
            TimeRemainingColumn(table_column=Column(no_wrap=True)))
