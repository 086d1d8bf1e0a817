"""How far a long transfer has got: the core counts bytes, the CLI decides how to show them.

A ``Meter`` opens one ``Task`` per stream (a dump being written, a file being read back);
the streams below count what passes through them. The core knows nothing of terminals:
the CLI passes a rich progress bar on a terminal and nothing otherwise (``NO_METER``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import BinaryIO, Protocol


class Task(Protocol):
    def advance(self, amount: int) -> None: ...


class Meter(Protocol):
    def task(self, label: str, total: int | None) -> AbstractContextManager[Task]:
        """A task of ``total`` bytes (None: unknown), finished when the block exits."""
        ...


class _Silent:
    def advance(self, amount: int) -> None:
        pass


class _NoMeter:
    @contextmanager
    def task(self, label: str, total: int | None) -> Iterator[Task]:
        yield _Silent()


NO_METER: Meter = _NoMeter()


class CountingWriter:
    """Passes writes on to ``inner`` and counts them on ``task``."""

    def __init__(self, inner, task: Task) -> None:
        self._inner = inner
        self._task = task

    def write(self, data: bytes) -> int:
        written = self._inner.write(data)
        self._task.advance(len(data))
        return written

    def writable(self) -> bool:
        return True


class CountingReader:
    """Reads from ``inner`` and counts what was read on ``task``."""

    def __init__(self, inner: BinaryIO, task: Task) -> None:
        self._inner = inner
        self._task = task

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)
        self._task.advance(len(data))
        return data

    def readinto(self, buffer) -> int:
        count = self._inner.readinto(buffer)
        self._task.advance(count or 0)
        return count

    def readable(self) -> bool:
        return True

    def __getattr__(self, name: str):
        return getattr(self._inner, name)
