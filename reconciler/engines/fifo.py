"""The fast path for big streams: a named pipe on this host shared with a helper container.

Why: Docker's exec/attach streams pass every byte through containerd-shim and dockerd,
which on a 2-core host costs ~2.5 CPU-seconds per 178 MB (≈70 MB/s, measured), more than
pg_dump itself. A helper container started from the SERVER's own image (so the tools match
the server's version), sharing its network namespace or its volumes, reads or writes a FIFO
that is bind-mounted from a private 0700 temporary folder; the bytes then go straight from
the tool to this process through the kernel (measured ≈150 MB/s end to end, near
``pg_dump > /dev/null``).

The FIFO file itself is bind-mounted (not its folder): if the engine does not see our file
system after all (reconcile in a container with the engine's socket mounted), the engine
creates a directory there instead, the tool fails on it without writing anything anywhere,
and we fall back. It needs the engine to share this host's file system and a helper able to
open a 0600 FIFO (it runs as root). When the helper never opened the pipe (for example with
user-namespace remapping), the functions return ``None`` before any data was consumed and
the caller falls back to the exec stream, which always works.
"""

from __future__ import annotations

import fcntl
import glob
import os
import shutil
import tempfile
import termios
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from itertools import chain

from reconciler import dockerio

CONTAINER_DIR = "/reconcile-stream"
CONTAINER_PATH = f"{CONTAINER_DIR}/stream"
CHUNK = 1024 * 1024
_F_SETPIPE_SZ = 1031


def available() -> bool:
    """Whether to try the pipe; ``RECONCILE_STREAM=exec`` forces the exec/attach path."""
    wanted = os.environ.get("RECONCILE_STREAM", "auto").lower()
    return wanted != "exec" and dockerio.local_engine() and hasattr(os, "mkfifo")


def stream_out(client, image: str, cmd_for: Callable[[str], list[str]],
               sink: Callable[[bytes], object], helper_args: dict,
               fallback: Callable[[], dockerio.ExecResult]) -> dockerio.ExecResult:
    """The pipe when it works, else ``fallback()`` (nothing was passed to ``sink`` then)."""
    if available():
        result = stream_from_helper(client, image, cmd_for, sink, **helper_args)
        if result is not None:
            return result
    return fallback()


def stream_in(client, image: str, cmd_for: Callable[[str], list[str]], source: Iterable[bytes],
              helper_args: dict,
              fallback: Callable[[Iterable[bytes]], dockerio.ExecResult]) -> dockerio.ExecResult:
    """The pipe when it works, else ``fallback(source)`` with the source still whole."""
    if available():
        result, source = stream_to_helper(client, image, cmd_for, source, **helper_args)
        if result is not None:
            return result
    return fallback(source)


STALE_SECONDS = 3600


@contextmanager
def _fifo() -> Iterator[str]:
    _prune_stale_folders()
    folder = tempfile.mkdtemp(prefix=_PREFIX)  # 0700, ours
    path = os.path.join(folder, "stream")
    os.mkfifo(path, 0o600)
    try:
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


_PREFIX = "reconcile-stream-"


def _prune_stale_folders() -> None:
    """Remove pipe folders left by a run killed mid-stream (they hold no data, only a FIFO)."""
    now = time.time()
    for folder in glob.glob(os.path.join(tempfile.gettempdir(), _PREFIX + "*")):
        with suppress(OSError):
            if now - os.stat(folder).st_mtime > STALE_SECONDS:
                shutil.rmtree(folder)


def _helper_user() -> str:
    """Root in the helper: it can open our 0600 pipe and read every file of a volume.

    With user-namespace remapping it cannot, never opens the pipe, and the caller falls back.
    """
    return "0:0"


class _End:
    """A pipe fd that may be closed from either thread, once."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1


@contextmanager
def _ends(path: str, mode: int) -> Iterator[tuple[_End, _End]]:
    """Our end of the pipe (``mode``) and a keep-alive opposite end, opened without blocking.

    The keep-alive end is closed when the helper exits: until then our reads wait for data
    (instead of seeing EOF before the helper opened the pipe) and our writes cannot fail;
    after it, a helper that never opened the pipe shows as EOF or a broken pipe, not a hang.
    """
    if mode == os.O_RDONLY:
        mine = _End(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
        other = _End(os.open(path, os.O_WRONLY))
    else:
        other = _End(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
        mine = _End(os.open(path, os.O_WRONLY))
    os.set_blocking(mine.fd, True)
    with suppress(OSError):
        fcntl.fcntl(mine.fd, _F_SETPIPE_SZ, CHUNK)
    try:
        yield mine, other
    finally:
        mine.close()
        other.close()


class _Helper:
    """A started helper, and a thread that records its exit and then closes the keep-alive."""

    def __init__(self, client, image: str, cmd: list[str], path: str, keepalive: _End,
                 helper_args: dict) -> None:
        self.client = client
        self.id = dockerio.start_helper(client, image, cmd, user=_helper_user(),
                                        binds={path: CONTAINER_PATH}, **helper_args)
        self.result: dockerio.ExecResult | None = None
        self.failure: BaseException | None = None
        self.exited = threading.Event()
        self._keepalive = keepalive
        threading.Thread(target=self._wait, daemon=True).start()

    def _wait(self) -> None:
        try:
            self.result = dockerio.wait_helper(self.client, self.id)
        except BaseException as exc:  # noqa: BLE001 - reported by outcome()
            self.failure = exc
        finally:
            self.exited.set()
            self._keepalive.close()

    def outcome(self) -> dockerio.ExecResult:
        self.exited.wait()
        if self.failure is not None:
            raise self.failure
        assert self.result is not None
        return self.result

    def stop(self) -> None:
        """Kill (if still running) and remove; waits for the watcher so no fd outlives us."""
        dockerio.remove_helper(self.client, self.id)
        self.exited.wait(30)


def stream_from_helper(client, image: str, cmd_for: Callable[[str], list[str]],
                       sink: Callable[[bytes], object], **helper_args) -> dockerio.ExecResult | None:
    """Run ``cmd_for(path)`` (it writes to ``path``) and pass what it writes to ``sink``.

    ``None`` means the helper failed without writing a byte: use the exec path instead.
    """
    with _fifo() as path, _ends(path, os.O_RDONLY) as (reader, keepalive):
        helper = _Helper(client, image, cmd_for(CONTAINER_PATH), path, keepalive, helper_args)
        try:
            moved = _drain(reader.fd, sink)
            result = helper.outcome()
        finally:
            reader.close()  # a helper still writing (our sink failed) gets EPIPE
            helper.stop()
        return None if moved == 0 and result.exit_code != 0 else result


def _drain(fd: int, sink: Callable[[bytes], object]) -> int:
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    moved = 0
    while (count := os.readv(fd, [buffer])) > 0:
        moved += count
        try:
            sink(bytes(view[:count]))
        except Exception as exc:  # noqa: BLE001 - re-raised as the stream's failure
            raise dockerio.StreamAborted("the output could not be written") from exc
    return moved


def stream_to_helper(client, image: str, cmd_for: Callable[[str], list[str]],
                     source: Iterable[bytes], **helper_args
                     ) -> tuple[dockerio.ExecResult | None, Iterator[bytes]]:
    """Run ``cmd_for(path)`` (it reads ``path``) and feed it ``source``.

    Returns ``(result, rest)``. ``result`` is ``None`` when the helper never took the first
    chunk; ``rest`` is then the whole source again (first chunk included) for the exec
    fallback. The first chunk should be small (a prelude) so that it fits the pipe.
    """
    chunks = iter(source)
    first = _next(chunks)
    with _fifo() as path, _ends(path, os.O_WRONLY) as (writer, keepalive):
        helper = _Helper(client, image, cmd_for(CONTAINER_PATH), path, keepalive, helper_args)
        try:
            if not (_write_all(writer.fd, first or b"") and _taken_up(writer.fd, helper)):
                helper.outcome()
                return None, chain([first] if first is not None else [], chunks)
            while (chunk := _next(chunks)) is not None and _write_all(writer.fd, chunk):
                pass
            writer.close()  # EOF for the helper
            return helper.outcome(), iter(())
        finally:
            writer.close()
            helper.stop()


def _next(chunks: Iterator[bytes]) -> bytes | None:
    """The next chunk, ``None`` at the end; the source's own failure aborts the stream."""
    try:
        return next(chunks)
    except StopIteration:
        return None
    except Exception as exc:  # noqa: BLE001 - e.g. a checksum mismatch at the end of the file
        raise dockerio.StreamAborted("the input could not be read") from exc


def _write_all(fd: int, data: bytes) -> bool:
    """Write everything; ``False`` on a broken pipe (the helper stopped: its exit code says why)."""
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view):]
    except BrokenPipeError:
        return False
    return True


def _taken_up(fd: int, helper: _Helper) -> bool:
    """Wait until the helper has read the first chunk (it works) or exited (it does not)."""
    while not helper.exited.is_set():
        if _pending(fd) == 0:
            return True
        time.sleep(0.01)
    return _pending(fd) == 0 and helper.outcome().exit_code == 0


def _pending(fd: int) -> int:
    return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"), "little")
