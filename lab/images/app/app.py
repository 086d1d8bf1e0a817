"""HTTP service: GET / -> {"version"}, GET /health -> dependency status (200 or 503),
GET /sleep?seconds=N -> answers after N seconds (max 30), to test draining.

SIGTERM stops accepting connections, lets in-flight requests finish, then exits 0.
"""
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import checks


class Handler(BaseHTTPRequestHandler):
    server_version = "reconcile-lab-app"

    def do_GET(self):
        path, _, query = self.path.partition("?")
        if path == "/health":
            results = checks.all_checks()
            ok = checks.healthy(results)
            body = {"status": "ok" if ok else "fail", "version": checks.version(), **results}
            self.send_json(200 if ok else 503, body)
        elif path == "/":
            self.send_json(200, {"version": checks.version()})
        elif path == "/sleep":
            try:
                seconds = max(0.0, min(float(parse_qs(query).get("seconds", ["1"])[0]), 30.0))
            except ValueError:
                return self.send_json(400, {"error": "seconds must be a number"})
            time.sleep(seconds)
            self.send_json(200, {"version": checks.version(), "slept": seconds})
        else:
            self.send_json(404, {"error": "not found", "path": path})

    def send_json(self, status, body):
        data = (json.dumps(body) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        sys.stderr.write("app: %s %s\n" % (self.address_string(), fmt % args))


class Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() then waits for in-flight requests
    block_on_close = True


def main():
    port = int(os.environ.get("PORT", "8000"))
    server = Server(("0.0.0.0", port), Handler)

    def on_term(signum, _frame):
        print("app: got signal %d, shutting down" % signum, flush=True)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    print("app: version %s listening on :%d" % (checks.version(), port), flush=True)
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    print("app: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
