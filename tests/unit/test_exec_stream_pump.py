"""The exec stream's reader: a stream the engine never closes ends when its process is gone."""

from __future__ import annotations

import socket
import threading
import time

from reconciler.dockerio.stream import _Demux, _pump


def frame(stream: int, data: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data


def test_a_silent_stream_ends_when_its_process_is_gone():
    ours, engine = socket.socketpair()
    engine.sendall(frame(1, b"all the output"))  # then silence: the engine never closes it
    out: list[bytes] = []
    checks: list[float] = []

    def gone() -> bool:
        checks.append(time.monotonic())
        return len(checks) >= 2

    started = time.monotonic()
    _pump(ours, _Demux(out.append), None, gone, quiet=0.05)
    assert out == [b"all the output"] and len(checks) == 2
    assert time.monotonic() - started < 5
    engine.close()
    ours.close()


def test_a_silent_stream_of_a_live_process_keeps_being_read():
    ours, engine = socket.socketpair()
    out: list[bytes] = []

    def later() -> None:
        time.sleep(0.3)  # several quiet periods: the process is still working
        engine.sendall(frame(1, b"late"))
        engine.close()

    threading.Thread(target=later, daemon=True).start()
    _pump(ours, _Demux(out.append), None, lambda: False, quiet=0.05)
    assert out == [b"late"]
    ours.close()


def test_a_feeder_blocked_on_a_full_pipe_is_released_when_the_process_is_gone():
    ours, engine = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    source = (b"x" * 65536 for _ in range(1000))  # far more than the peer ever reads
    checks: list[int] = []
    _pump(ours, _Demux(None), source, lambda: checks.append(1) or len(checks) > 2, quiet=0.05)
    assert len(checks) == 3
    engine.close()
    ours.close()
