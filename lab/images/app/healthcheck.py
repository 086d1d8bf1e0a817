"""Docker HEALTHCHECK for both roles of the image.

Web app: GET http://127.0.0.1:$PORT/health must return 200.
Worker (PID 1 runs worker.py): its heartbeat file must be fresher than 3 intervals.
"""
import os
import sys
import time
import urllib.request

HEARTBEAT = "/tmp/worker-heartbeat"


def pid1_is_worker():
    try:
        with open("/proc/1/cmdline", "rb") as f:
            return b"worker.py" in f.read()
    except OSError:
        return False


def worker_ok():
    interval = float(os.environ.get("WORKER_INTERVAL", "2"))
    try:
        return time.time() - os.stat(HEARTBEAT).st_mtime < max(3 * interval, 6)
    except OSError:
        return False


def web_ok():
    port = os.environ.get("PORT", "8000")
    try:
        with urllib.request.urlopen("http://127.0.0.1:%s/health" % port, timeout=4) as r:
            return r.status == 200
    except Exception:
        return False


if __name__ == "__main__":
    sys.exit(0 if (worker_ok() if pid1_is_worker() else web_ok()) else 1)
