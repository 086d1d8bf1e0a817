"""The lean RESP client: encoding, and parsing replies split anywhere across reads."""

from __future__ import annotations

import socket
import threading

from reconciler.engines import resp

REPLIES = (b"+OK\r\n-ERR wrong\r\n:42\r\n:-2\r\n$-1\r\n$0\r\n\r\n$5\r\n\xff\r\n\x00x\r\n"
           b"*2\r\n$1\r\n0\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n*-1\r\n")
EXPECTED = [b"OK", "ERR wrong", 42, -2, None, b"", b"\xff\r\n\x00x", [b"0", [b"a", b"b"]], None]


def test_encode_is_binary_safe():
    assert resp.encode(["SET", b"k\r\n", 5]) == b"*3\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$1\r\n5\r\n"


def serve(payload: bytes, piece: int) -> int:
    listener = socket.create_server(("127.0.0.1", 0))

    def run() -> None:
        conn, _ = listener.accept()
        for start in range(0, len(payload), piece):
            conn.sendall(payload[start:start + piece])
        conn.close()
        listener.close()

    threading.Thread(target=run, daemon=True).start()
    return listener.getsockname()[1]


def normalise(replies):
    return [r.message if isinstance(r, resp.ReplyError) else r for r in replies]


def test_replies_split_at_every_size_parse_the_same():
    for piece in (1, 2, 3, 7, 1000):
        with resp.RespConnection("127.0.0.1", serve(REPLIES, piece)) as conn:
            assert normalise(conn.read_replies(len(EXPECTED))) == EXPECTED


def test_read_reply_one_by_one():
    with resp.RespConnection("127.0.0.1", serve(REPLIES, 4)) as conn:
        assert normalise([conn.read_reply() for _ in EXPECTED]) == EXPECTED


def test_big_value_across_many_reads():
    value = bytes(range(256)) * 20_000
    with resp.RespConnection("127.0.0.1", serve(b"$%d\r\n%s\r\n" % (len(value), value), 65_536)) as conn:
        assert conn.read_replies(1) == [value]


def test_read_ok_checks_oks_as_bytes_and_keeps_later_replies():
    payload = b"+OK\r\n" * 3 + b":7\r\n" + b"+OK\r\n" * 2
    for piece in (1, 4, 5, 7, 64):
        with resp.RespConnection("127.0.0.1", serve(payload, piece)) as conn:
            assert conn.read_ok(3) == []
            assert conn.read_reply() == 7  # what came after the OKs was not lost
            assert conn.read_ok(2) == []


def test_read_ok_returns_the_error_replies_in_order_and_stays_in_step():
    payload = b"+OK\r\n-ERR bad payload\r\n+OK\r\n-BUSYKEY exists\r\n" + b"+OK\r\n:1\r\n"
    for piece in (1, 3, 64):
        with resp.RespConnection("127.0.0.1", serve(payload, piece)) as conn:
            errors = conn.read_ok(4)
            assert [e.message for e in errors] == ["ERR bad payload", "BUSYKEY exists"]
            assert conn.read_ok(1) == []
            assert conn.read_reply() == 1


def test_a_server_that_does_not_speak_redis_is_a_resp_error_not_a_traceback():
    """What answers at the cache's address may be another program (an HTTP server): hiredis'
    ProtocolError escaped every handler as a traceback (QA)."""
    import pytest

    with resp.RespConnection("127.0.0.1", serve(b"HTTP/1.1 400 Bad Request\r\n\r\n", 1000)) as conn:
        with pytest.raises(resp.RespError, match="not the Redis protocol"):
            conn.read_reply()  # no send: the stand-in closes once it has answered
