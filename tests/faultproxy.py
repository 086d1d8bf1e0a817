"""A fault-injecting HTTP proxy for S3 tests: sits between reconcile and the S3 server (moto)
and, by rule, answers an error, resets the connection, stalls, truncates or corrupts a body,
or throttles throughput. Everything else is passed through byte for byte.

Why our own: the faults that matter (a reset after half a body, a stall with the headers
sent, a 503 on the 3rd part of a multipart upload) sit below what an in-process mock can
show; they must reach botocore over a real socket. Like S3 (and unlike moto), it refuses a
body that does not match its ``Content-MD5`` (400 BadDigest). Kept small: HTTP/1.1 with keep-alive,
``Content-Length`` bodies (what botocore sends with checksums ``when_required``) and
``Expect: 100-continue``.

    with FaultProxy(upstream) as proxy:
        proxy.add(Rule(method="GET", path=r"\\.sql\\.zst", action=Action.RESET_BODY, nth=1))
        ... S3 endpoint proxy.url ...
        proxy.requests  # what went through: (method, path, status or action)

Run alone (``python -m tests.faultproxy --upstream URL --port N --rules rules.json``) for
exploring by hand; rules are then a JSON list of Rule fields.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlsplit


class Action(StrEnum):
    ERROR = "error"  # answer ``status`` with an S3 error document ``code`` (request not forwarded)
    RESET = "reset"  # reset the connection before forwarding (read the request head, then RST)
    RESET_UPLOAD = "reset_upload"  # read part of the request body, then RST (never forwarded)
    STALL_UPLOAD = "stall_upload"  # read part of the request body, then stop reading for ``seconds``
    RESET_BODY = "reset_body"  # forward; send headers and part of the body, then RST
    TRUNCATE = "truncate"  # forward; send headers (full length) and part of the body, then close
    CORRUPT = "corrupt"  # forward; flip one byte of the body
    CORRUPT_UPLOAD = "corrupt_upload"  # flip one byte of the request body (a Content-MD5 then refuses it)
    STALL = "stall"  # read the request, then say nothing for ``seconds``, then close
    STALL_BODY = "stall_body"  # forward; send headers and part of the body, then stall
    SLOW = "slow"  # forward; take the request body and send the answer's at ``rate`` bytes per second


@dataclass
class Rule:
    action: Action
    method: str | None = None  # GET, PUT, … (None: any)
    path: str | None = None  # regex searched in the path and query (None: any)
    nth: int = 1  # first matching request it fires on (1-based)
    times: int | None = 1  # how many matching requests it fires on from ``nth`` (None: all)
    status: int = 503
    code: str = "ServiceUnavailable"  # "": an HTML page, as a web server in the way would answer
    seconds: float = 60.0
    rate: int = 100_000
    fraction: float = 0.5  # how much of a body is sent before a reset/truncate/stall
    seen: int = field(default=0, compare=False)

    def fires(self, method: str, target: str) -> bool:
        if self.method and self.method != method:
            return False
        if self.path and not re.search(self.path, target):
            return False
        self.seen += 1
        if self.seen < self.nth:
            return False
        return self.times is None or self.seen < self.nth + self.times


@dataclass
class Request:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return ""


class _Closed(Exception):
    pass


class FaultProxy:
    """A threaded proxy on a free loopback port in front of ``upstream`` (``http://host:port``)."""

    def __init__(self, upstream: str, port: int = 0) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.rules: list[Rule] = []
        self.requests: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", port))
        self._listener.settimeout(0.2)
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._serve, name="fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def add(self, *rules: Rule) -> FaultProxy:
        with self._lock:
            self.rules.extend(rules)
        return self

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
            self.requests.clear()

    def count(self, method: str | None = None, path: str | None = None) -> int:
        return sum(1 for m, t, _ in list(self.requests)
                   if (method is None or m == method) and (path is None or re.search(path, t)))

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self._listener.close()
        for conn in list(self._connections):
            _close(conn)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- serving -----------------------------------------------------------------------

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._connections.add(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        try:
            while not self._stopping.is_set():
                head = _read_head(reader)
                if head is None:
                    return
                method, target, headers = head
                rule = self._rule_for(method, target)
                if rule is not None and rule.action is Action.RESET:
                    self._log(method, target, "reset")
                    _reset(conn)
                    return
                expects = any(k.lower() == "expect" for k, _ in headers)
                length = int(next((v for k, v in headers if k.lower() == "content-length"), "0") or 0)
                if rule is not None and rule.action is Action.ERROR:
                    if not expects:  # the body is on its way: read it, or closing would reset
                        reader.read(length)
                    self._log(method, target, str(rule.status))
                    _send_error(conn, rule, method)
                    return  # an expected body was never sent: the connection cannot be reused
                if expects:
                    conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                if rule is not None and rule.action in (Action.RESET_UPLOAD, Action.STALL_UPLOAD):
                    reader.read(int(length * rule.fraction))
                    self._log(method, target, rule.action.value)
                    if rule.action is Action.STALL_UPLOAD:
                        self._stopping.wait(rule.seconds)
                    _reset(conn)
                    return
                body = _read_body(reader, length, rule.rate if rule is not None and rule.action is Action.SLOW else 0)
                if len(body) < length:
                    return
                if rule is not None and rule.action is Action.STALL:
                    self._log(method, target, "stall")
                    self._stopping.wait(rule.seconds)
                    _close(conn)
                    return
                if rule is not None and rule.action is Action.CORRUPT_UPLOAD and body:
                    body = body[:len(body) // 2] + bytes([body[len(body) // 2] ^ 0xFF]) + body[len(body) // 2 + 1:]
                if _bad_digest(headers, body):  # what S3 does (moto does not check Content-MD5)
                    self._log(method, target, "400")
                    _send_error(conn, Rule(Action.ERROR, status=400, code="BadDigest"), method)
                    return
                request = Request(method, target, [(k, v) for k, v in headers if k.lower() != "expect"], body)
                if not self._forward(conn, request, rule):
                    return
        except (_Closed, OSError):
            return
        finally:
            self._connections.discard(conn)
            _close(conn)

    def _rule_for(self, method: str, target: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.fires(method, target):
                    return rule
        return None

    def _log(self, method: str, target: str, what: str) -> None:
        with self._lock:
            self.requests.append((method, target, what))

    def _forward(self, conn: socket.socket, request: Request, rule: Rule | None) -> bool:
        """Send ``request`` upstream, then its answer (changed by ``rule``) back; False when
        the client connection was ended."""
        status_line, headers, body = _exchange(self.upstream, request)
        status = status_line.split(b" ")[1].decode()
        action = rule.action if rule is not None else None
        self._log(request.method, request.target, action.value if action else status)
        head = status_line + b"".join(k + b": " + v + b"\r\n" for k, v in headers) + b"\r\n"
        cut = int(len(body) * rule.fraction) if rule is not None else len(body)
        if action is Action.CORRUPT and body:
            at = len(body) // 2
            body = body[:at] + bytes([body[at] ^ 0xFF]) + body[at + 1:]
        if action in (Action.RESET_BODY, Action.TRUNCATE, Action.STALL_BODY):
            conn.sendall(head + body[:cut])
            if action is Action.RESET_BODY:
                _reset(conn)
            elif action is Action.STALL_BODY:
                self._stopping.wait(rule.seconds)
                _close(conn)
            else:
                conn.shutdown(socket.SHUT_WR)
                _close(conn)
            return False
        if action is Action.SLOW:
            conn.sendall(head)
            step = max(rule.rate // 20, 1)
            for start in range(0, len(body), step):
                conn.sendall(body[start:start + step])
                time.sleep(step / rule.rate)
        else:
            conn.sendall(head + body)
        return not any(k.lower() == b"connection" and v.lower() == b"close" for k, v in headers)


def _read_head(reader) -> tuple[str, str, list[tuple[str, str]]] | None:
    line = reader.readline()
    if not line:
        return None
    method, target, _ = line.decode("latin-1").split(" ", 2)
    headers = []
    while (raw := reader.readline()) not in (b"\r\n", b"\n", b""):
        key, _, value = raw.decode("latin-1").partition(":")
        headers.append((key.strip(), value.strip()))
    return method, target, headers


def _bad_digest(headers: list[tuple[str, str]], body: bytes) -> bool:
    md5 = next((v for k, v in headers if k.lower() == "content-md5"), None)
    return md5 is not None and base64.b64encode(hashlib.md5(body).digest()).decode() != md5


def _read_body(reader, length: int, rate: int) -> bytes:
    """The request body; at ``rate`` bytes per second when given (a slow upload link)."""
    if not rate:
        return reader.read(length) if length else b""
    step, parts = max(rate // 20, 1), []
    while length > 0 and (chunk := reader.read(min(step, length))):
        parts.append(chunk)
        length -= len(chunk)
        time.sleep(len(chunk) / rate)
    return b"".join(parts)


def _exchange(upstream: tuple[str, int], request: Request) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
    """One request to the upstream server on a fresh connection; its whole answer."""
    with socket.create_connection(upstream, timeout=60) as up:
        lines = [f"{request.method} {request.target} HTTP/1.1"]
        lines += [f"{k}: {v}" for k, v in request.headers if k.lower() != "connection"]
        lines.append("Connection: close")
        up.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + request.body)
        reader = up.makefile("rb")
        status_line = reader.readline()
        while status_line.startswith(b"HTTP/1.1 100"):
            reader.readline()
            status_line = reader.readline()
        headers = []
        while (raw := reader.readline()) not in (b"\r\n", b"\n", b""):
            key, _, value = raw.rstrip(b"\r\n").partition(b":")
            headers.append((key.strip(), value.strip()))
        length = next((int(v) for k, v in headers if k.lower() == b"content-length"), None)
        if request.method == "HEAD" or status_line.split(b" ")[1] in (b"204", b"304"):
            body = b""
        elif length is not None:
            body = reader.read(length)
        else:
            body = reader.read()
            headers.append((b"Content-Length", str(len(body)).encode()))
        headers = [(k, v) for k, v in headers if k.lower() not in (b"connection", b"transfer-encoding")]
        return status_line, headers, body


def _send_error(conn: socket.socket, rule: Rule, method: str) -> None:
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{rule.code}</Code>'
            f"<Message>injected {rule.code}</Message><RequestId>fault</RequestId></Error>").encode()
    if not rule.code:  # not an S3 server's answer: a web server or reverse proxy in the way
        body = f"<html><body><h1>{rule.status}</h1></body></html>".encode()
    reason = {403: "Forbidden", 404: "Not Found", 500: "Internal Server Error", 503: "Slow Down"}.get(
        rule.status, "Error")
    head = (f"HTTP/1.1 {rule.status} {reason}\r\nContent-Type: application/xml\r\n"
            f"Content-Length: {0 if method == 'HEAD' else len(body)}\r\nConnection: close\r\n\r\n").encode()
    conn.sendall(head + (b"" if method == "HEAD" else body))


def _reset(conn: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), as a crashed server or a middlebox does."""
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    _close(conn)


def _close(conn: socket.socket) -> None:
    try:
        conn.close()
    except OSError:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rules", help="JSON file: a list of Rule fields")
    args = parser.parse_args()
    proxy = FaultProxy(args.upstream, args.port)
    if args.rules:
        with open(args.rules) as handle:
            proxy.add(*(Rule(**{**raw, "action": Action(raw["action"])}) for raw in json.load(handle)))
    proxy.start()
    print(proxy.url, flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        proxy.stop()


if __name__ == "__main__":
    main()
