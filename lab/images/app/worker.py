"""Background worker: every WORKER_INTERVAL seconds (default 2) ping the database and
Redis (when configured) and print one line. Exits 0 on SIGTERM/SIGINT.

It also touches /tmp/worker-heartbeat so the image's health check works for workers.
"""
import os
import signal
import sys
import threading
import time

import checks

HEARTBEAT = "/tmp/worker-heartbeat"


def main():
    interval = float(os.environ.get("WORKER_INTERVAL", "2"))
    stop = threading.Event()

    def on_term(signum, _frame):
        print("worker: got signal %d, stopping" % signum, flush=True)
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    print("worker: version %s started" % checks.version(), flush=True)
    while not stop.is_set():
        results = checks.all_checks()
        print(
            "worker: version=%s postgres=%s redis=%s"
            % (checks.version(), results["postgres"], results["redis"]),
            flush=True,
        )
        if checks.healthy(results):
            with open(HEARTBEAT, "w") as f:
                f.write(str(time.time()))
        stop.wait(interval)
    print("worker: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
