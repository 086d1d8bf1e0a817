"""Streaming exec and helper containers: the engines' way to move dumps in and out.

Part of ``reconciler.dockerio`` (the one place that imports the Docker SDK); split out
because it is a world of its own: multiplexed attach streams, FIFOs and helper lifetimes.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime

import docker
from docker.errors import DockerException

from reconciler.dockerio import engine_address, engine_errors
from reconciler.owner import gone, owner_text, parse

# --- Streaming exec and helper containers (used by reconciler.engines) ----------------------
#
# Data moves through the engine's hijacked attach socket, not through the docker CLI: the
# speed is the same (measured: 178 MB pg_dump in 1.5 s either way), there is no dependency on
# a CLI binary, and the exit code comes from the API. Docker does NOT stop an exec'd process
# when its client disconnects, so commands run under a tiny ``sh`` wrapper that reports its
# PID first; ``abort`` uses it to kill the process (a blocked pg_dump would otherwise hold its
# locks and snapshot forever).

STREAM_CHUNK = 1024 * 1024
STDERR_KEEP = 16 * 1024
_PID_LINE = b"reconcile-exec-pid "
_WRAPPER = 'echo "reconcile-exec-pid $$" >&2; exec "$@"'
STALL_CHECK_SECONDS = 5.0
_LOST_NOTE = b"\n(the engine lost track of this process: it is gone, its exit status unknown)"


@dataclass(frozen=True)
class ExecResult:
    """How a streamed process ended: its exit code and the tail of its stderr."""

    exit_code: int
    stderr: bytes


class StreamAborted(Exception):
    """The local side of a stream failed (a sink or source raised); carries that cause."""


def _raw_socket(response: object) -> socket.socket:
    sock = getattr(response, "_sock", response)
    sock.settimeout(None)
    return sock


class _Demux:
    """Splits Docker's multiplexed attach stream (8-byte frame headers) into stdout/stderr."""

    def __init__(self, sink: Callable[[bytes], object] | None) -> None:
        self.sink = sink
        self.stderr = bytearray()
        self.pid = ""
        self._pending = b""

    def feed(self, data: bytes) -> None:
        data = self._pending + data if self._pending else data
        view, pos, out = memoryview(data), 0, []
        while len(data) - pos >= 8:
            size = int.from_bytes(data[pos + 4:pos + 8], "big")
            if len(data) - pos - 8 < size:
                break
            body = view[pos + 8:pos + 8 + size]
            if data[pos] == 1:
                out.append(body)
            else:
                self._stderr(bytes(body))
            pos += 8 + size
        self._pending = bytes(view[pos:])
        if out and self.sink is not None:
            self.sink(out[0] if len(out) == 1 else b"".join(out))

    def _stderr(self, body: bytes) -> None:
        if not self.pid and body.startswith(_PID_LINE):
            line, _, body = body.partition(b"\n")
            self.pid = line[len(_PID_LINE):].decode("ascii", "replace").strip()
        self.stderr += body
        del self.stderr[:-STDERR_KEEP]


def exec_stream(client: docker.DockerClient, container: str, cmd: list[str], *,
                sink: Callable[[bytes], object] | None = None,
                source: Iterable[bytes] | None = None,
                environment: dict[str, str] | None = None, user: str = "") -> ExecResult:
    """Run ``cmd`` in a running container, streaming stdout to ``sink`` and ``source`` to stdin.

    If ``sink`` or ``source`` raises, the process is killed and ``StreamAborted`` is raised
    from the original error. ``environment`` is how secrets reach the process (never argv).
    """
    with engine_errors(f"starting a command in {container[:24]}"):
        created = client.api.exec_create(container, ["sh", "-c", _WRAPPER, "sh", *cmd],
                                         stdout=True, stderr=True, stdin=source is not None,
                                         environment=environment, user=user)
        sock = _raw_socket(client.api.exec_start(created["Id"], socket=True))
    demux = _Demux(sink)
    watch = _ExecWatch(client, container, created["Id"])
    try:
        _pump(sock, demux, source, watch.gone)
    except StreamAborted:
        _kill_exec(client, container, demux.pid)
        raise
    finally:
        sock.close()
    if watch.lost:
        return ExecResult(-1, bytes(demux.stderr) + _LOST_NOTE)
    return ExecResult(_exec_exit_code(client, created["Id"]), bytes(demux.stderr))


class _ExecWatch:
    """Whether an exec'd process is gone while its stream stays open.

    Some engine builds (seen with Debian's docker.io under load) lose a process's exit
    event: the stream never closes and the engine reports the exec as running forever, so a
    reader would wait for ever. When this host sees the engine's processes (a local engine,
    same PID namespace: the container's main process is visible here), a process that no
    longer exists ends the stream; its exit status is unknown, so the caller treats it as
    failed. The exec's pid is asked for each time: right after the start the engine may not
    have it yet (a watch that gave up then hung a CI run when the exit event was lost).
    """

    def __init__(self, client: docker.DockerClient, container: str, exec_id: str) -> None:
        self.client, self.container, self.exec_id = client, container, exec_id
        self.lost = False
        self._visible: bool | None = None

    def gone(self) -> bool:
        """Called when the stream has been silent a while."""
        with suppress(DockerException, KeyError, TypeError, ValueError):
            state = self.client.api.exec_inspect(self.exec_id)
            if not state.get("Running", True):
                return False  # the engine saw the end: its stream closes by itself
            pid = int(state.get("Pid") or 0)
            if pid > 0 and self._sees_engine_processes():
                self.lost = not os.path.exists(f"/proc/{pid}")
        return self.lost

    def _sees_engine_processes(self) -> bool:
        if self._visible is None:
            main = int(self.client.api.inspect_container(self.container)["State"].get("Pid") or 0)
            self._visible = local_engine() and main > 0 and os.path.exists(f"/proc/{main}")
        return self._visible


def _pump(sock: socket.socket, demux: _Demux, source: Iterable[bytes] | None,
          gone: Callable[[], bool] = lambda: False, quiet: float = STALL_CHECK_SECONDS) -> None:
    """Feed ``source`` from a thread while this thread drains the output.

    After ``quiet`` seconds without output, ``gone()`` may end the stream (see _ExecWatch).
    The socket stays blocking: a timeout on it would also cut the feeder's slow writes.
    """
    failure: list[BaseException] = []
    feeder = None
    if source is not None:
        feeder = threading.Thread(target=_feed, args=(sock, source, failure), daemon=True)
        feeder.start()
    buffer = bytearray(STREAM_CHUNK)
    try:
        while True:
            pending = getattr(sock, "pending", None)  # TLS: bytes decrypted, not yet read
            if not (pending and pending()) and not select.select([sock], [], [], quiet)[0]:
                if gone():
                    with suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)  # stops the feeder too
                    if feeder is not None:
                        feeder.join()
                    return
                continue
            if (count := sock.recv_into(buffer)) <= 0:
                break
            demux.feed(bytes(buffer[:count]))
    except OSError as exc:
        if not failure:
            raise StreamAborted("the engine closed the stream") from exc
    except Exception as exc:  # noqa: BLE001 - the sink's own error, re-raised with its cause
        raise StreamAborted("the output could not be written") from exc
    if feeder is not None:
        feeder.join()
    if failure:
        raise StreamAborted("the input could not be read") from failure[0]


def _feed(sock: socket.socket, source: Iterable[bytes], failure: list[BaseException]) -> None:
    """Send ``source`` to stdin; on error shut the socket so the reader stops too."""
    try:
        for chunk in source:
            sock.sendall(chunk)
        sock.shutdown(socket.SHUT_WR)
    except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
        failure.append(exc)
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _kill_exec(client: docker.DockerClient, container: str, pid: str) -> None:
    """TERM then KILL the wrapped process by its in-container PID; best effort."""
    if not pid.isdigit():
        return
    script = 'kill -TERM "$0" 2>/dev/null; sleep 2; kill -KILL "$0" 2>/dev/null; exit 0'
    with suppress(DockerException):
        created = client.api.exec_create(container, ["sh", "-c", script, pid])
        client.api.exec_start(created["Id"], detach=True)


def _exec_exit_code(client: docker.DockerClient, exec_id: str) -> int:
    """The exit code; the engine may report it a moment after the stream closes."""
    with engine_errors("reading a command's exit code"):
        for _ in range(200):
            state = client.api.exec_inspect(exec_id)
            if not state["Running"] and state["ExitCode"] is not None:
                return int(state["ExitCode"])
            time.sleep(0.05)
    return -1


def run_helper(client: docker.DockerClient, image: str, cmd: list[str], *,
               volumes_from: str, read_only: bool, sink: Callable[[bytes], object] | None = None,
               source: Iterable[bytes] | None = None, user: str = "0:0") -> ExecResult:
    """``docker run --rm -i --volumes-from CONTAINER[:ro] --entrypoint '' IMAGE cmd…``, streamed.

    The helper sees the service's volumes at the same paths, also while the service is
    stopped. It is removed (killed first if needed) whatever happens.
    """
    api = client.api
    with engine_errors(f"creating a helper container from {image}"):
        host_config = api.create_host_config(
            volumes_from=[f"{volumes_from}:{'ro' if read_only else 'rw'}"], network_mode="none")
        created = api.create_container(image, cmd, entrypoint=[], host_config=host_config,
                                       stdin_open=source is not None, user=user,
                                       labels=_helper_labels("volume"))
    helper = created["Id"]
    try:
        with engine_errors("attaching to the helper container"):
            sock = _raw_socket(api.attach_socket(helper, params={
                "stdin": int(source is not None), "stdout": 1, "stderr": 1, "stream": 1}))
            api.start(helper)
        demux = _Demux(sink)
        try:
            _pump(sock, demux, source)
        finally:
            sock.close()
        with engine_errors("waiting for the helper container"):
            code = api.wait(helper, timeout=600)["StatusCode"]
        return ExecResult(int(code), bytes(demux.stderr))
    finally:
        with suppress(DockerException):
            api.remove_container(helper, force=True, v=True)


def start_helper(client: docker.DockerClient, image: str, cmd: list[str], *,
                 binds: dict[str, str] | None = None, volumes_from: str = "",
                 read_only: bool = True, network_container: str = "",
                 environment: dict[str, str] | None = None, user: str = "") -> str:
    """Start a detached short-lived helper container (removed by ``remove_helper``).

    ``network_container`` shares that container's network namespace (127.0.0.1 is the
    server); ``volumes_from`` mounts its volumes at the same paths; ``binds`` maps host
    folders (``{host: container_path}``) read-write.
    """
    api = client.api
    prune_stale_helpers(client)
    labels = _helper_labels("stream")
    try:
        with engine_errors(f"starting a helper container from {image[:40]}"):
            host_config = api.create_host_config(
                binds={host: {"bind": path, "mode": "rw"} for host, path in (binds or {}).items()},
                volumes_from=[f"{volumes_from}:{'ro' if read_only else 'rw'}"] if volumes_from else None,
                network_mode=f"container:{network_container}" if network_container else "none")
            created = api.create_container(image, cmd, entrypoint=[], host_config=host_config,
                                           environment=environment, user=user or None, labels=labels)
    except KeyboardInterrupt:  # the engine may have made it before the answer was cut off
        _remove_unstarted(client, labels[LABEL_HELPER_OWNER])
        raise
    try:
        with engine_errors(f"starting a helper container from {image[:40]}"):
            api.start(created["Id"])
    except BaseException:  # an engine error, or Ctrl-C while it starts: never left behind
        remove_helper(client, created["Id"])
        raise
    return created["Id"]


def _remove_unstarted(client: docker.DockerClient, owner: str) -> None:
    """This process's helpers that never started (their ids unknown to it); never raises."""
    with suppress(DockerException):
        for doc in client.api.containers(all=True, filters={"label": f"{LABEL_HELPER_OWNER}={owner}",
                                                            "status": "created"}):
            remove_helper(client, doc["Id"])


HELPER_STALE_SECONDS = 600
LABEL_HELPER = "reconcile.helper"
LABEL_HELPER_OWNER = "reconcile.helper-owner"


def _helper_labels(kind: str) -> dict[str, str]:
    return {LABEL_HELPER: kind, LABEL_HELPER_OWNER: owner_text()}


def prune_stale_helpers(client: docker.DockerClient) -> None:
    """Remove helpers a killed run left: at once when their owner is gone (``reconciler.owner``),
    even one still running (a pg_dump holding its snapshot open); else once they exited (or
    were never started) ``HELPER_STALE_SECONDS`` ago, so a concurrent run's helper that just
    exited keeps its exit code and logs until its owner has read them. Best effort, never raises.
    """
    try:
        for summary in client.api.containers(all=True, filters={"label": LABEL_HELPER}):
            doc = client.api.inspect_container(summary["Id"])
            if _abandoned_helper(doc):
                client.api.remove_container(summary["Id"], force=True, v=True)
    except DockerException:
        return


def _abandoned_helper(doc: dict) -> bool:
    labels = (doc.get("Config") or {}).get("Labels") or {}
    if gone(parse(labels.get(LABEL_HELPER_OWNER))):
        return True
    state = doc.get("State") or {}
    since = {"exited": state.get("FinishedAt"), "created": doc.get("Created")}.get(state.get("Status", ""))
    return since is not None and _age_seconds(str(since)) > HELPER_STALE_SECONDS


def _age_seconds(timestamp: str) -> float:
    """Seconds since an engine timestamp (RFC 3339 with nanoseconds); 0 if unreadable."""
    try:
        moment = datetime.fromisoformat(timestamp[:19]).replace(tzinfo=UTC)
    except ValueError:
        return 0.0
    return (datetime.now(UTC) - moment).total_seconds()


def wait_helper(client: docker.DockerClient, helper: str, timeout: float | None = None) -> ExecResult:
    """Wait for a helper to exit; its exit code and the tail of its stderr.

    Runs in a watcher thread while the caller's thread keeps using ``client``, so the long
    poll gets a private connection (``client`` only supplies the address and API version).
    """
    api = docker.APIClient(base_url=engine_address(), version=client.api.api_version,
                           timeout=timeout)
    try:
        with engine_errors("waiting for a helper container"):
            code = api.wait(helper, timeout=timeout)["StatusCode"]
            stderr = api.logs(helper, stdout=False, stderr=True, tail=50)
    finally:
        api.close()
    return ExecResult(int(code), bytes(stderr[-STDERR_KEEP:]))


def remove_helper(client: docker.DockerClient, helper: str) -> None:
    """Kill and remove a helper; never raises (it runs in ``finally`` blocks)."""
    with suppress(DockerException):
        client.api.remove_container(helper, force=True, v=True)


def local_engine() -> bool:
    """Whether the engine shares this host's file system (host folders can be bind-mounted)."""
    address = engine_address()
    return address.startswith("unix://") or address.startswith("/")
