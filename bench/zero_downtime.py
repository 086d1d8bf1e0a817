"""Benchmark: failed requests while the app goes 1 → 2, blue-green vs recreate.

A steady HTTP load (default 250 requests/s from 6 threads, each request on a fresh
connection to 127.0.0.1, so a reload can never catch a request on an idle keep-alive
connection) runs through the api's published port for the whole `reconcile apply` of the
app from version 1 to 2: once with `deploy.strategy: blue-green` (a proxy in front, switched
once the new container is healthy) and, as the baseline, once with `recreate` (the old
container stops, then the new one starts). Reported side by side: failed requests (errors
and 5xx), achieved rate, p99 and max latency, apply time. Target: 0 failed for blue-green.

    python bench/zero_downtime.py            # the lab stack (specs/lab.yaml); appends to bench/RESULTS.md
    python bench/zero_downtime.py --smoke    # api only, a few seconds of load, nothing written (CI)

The load stops by itself (after the deploy, or at ``--max-seconds`` at the latest).
"""

from __future__ import annotations

import argparse
import http.client
import json
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, compile_package  # noqa: E402

LAB = ROOT / "specs" / "lab.yaml"
STRATEGIES = ("blue-green", "recreate")
SMOKE_SPEC = """\
version: 1
project: "${env:LAB_PROJECT}"
state_dir: "${env:LAB_STATE_DIR}"
networks: { backend: {} }
services:
  api:
    image: "reconcile-lab/app:${env:LAB_APP_VERSION:-1}"
    health: { http: { port: 8000, path: /health }, interval: 500ms }
    deploy:
      strategy: "${env:LAB_API_STRATEGY:-blue-green}"
      proxy_image: reconcile-lab/nginx:latest
      drain: 500ms
      health_timeout: 60s
    networks: [backend]
    ports: ["127.0.0.1:${env:LAB_API_PORT}:8000"]
backup: { local: { path: "${env:LAB_BACKUP_DIR}" } }
"""


@dataclass
class LoadResult:
    """What the clients saw: counts, latencies (seconds), versions served, error kinds."""

    sent: int = 0
    failed: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    per_second: Counter = field(default_factory=Counter)
    versions: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    @property
    def lowest_rate(self) -> int:
        """Requests answered in the slowest whole second (the last, partial one left out)."""
        full = range(int(self.seconds))
        return min((self.per_second[s] for s in full), default=0)

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


class HttpLoad:
    """``threads`` loops, each paced to ``rate / threads`` GETs per second, until ``stop``.

    Only ever 127.0.0.1; bounded by ``max_seconds`` even if nobody calls ``stop``. A loop
    that falls behind does not burst to catch up by more than one second's worth.
    """

    def __init__(self, port: int, rate: float = 250, threads: int = 6, path: str = "/",
                 max_seconds: float = 300, timeout: float = 10) -> None:
        self.port, self.path, self.timeout = port, path, timeout
        self.interval = threads / rate
        self.threads = threads
        self.max_seconds = max_seconds
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._result = LoadResult()
        self._workers: list[threading.Thread] = []
        self._began = 0.0

    def start(self) -> HttpLoad:
        self._began = time.monotonic()
        for index in range(self.threads):
            worker = threading.Thread(target=self._loop, args=(index,), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def stop(self) -> LoadResult:
        self._stop.set()
        for worker in self._workers:
            worker.join(self.timeout + 1)
        self._result.seconds = time.monotonic() - self._began
        return self._result

    def _loop(self, index: int) -> None:
        due = self._began + index * self.interval / self.threads
        deadline = self._began + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            now = time.monotonic()
            if due > now:
                self._stop.wait(due - now)
                continue
            due = max(due + self.interval, now - 1.0)
            self._record(*self._one(), second=int(time.monotonic() - self._began))

    def _one(self) -> tuple[float, str | None, str | None]:
        """(latency, version served or None, error kind or None)."""
        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            conn.request("GET", self.path, headers={"Connection": "close"})
            response = conn.getresponse()
            body = response.read()
            if response.status >= 500:
                return time.perf_counter() - started, None, f"HTTP {response.status}"
            return time.perf_counter() - started, str(json.loads(body).get("version")), None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            return time.perf_counter() - started, None, type(exc).__name__
        finally:
            conn.close()

    def _record(self, latency: float, version: str | None, error: str | None, second: int) -> None:
        with self._lock:
            self._result.sent += 1
            self._result.per_second[second] += 1
            self._result.latencies.append(latency)
            if error is None:
                self._result.versions[version] += 1
            else:
                self._result.failed += 1
                self._result.errors[error] += 1


def lab_env(project: str, folder: Path) -> dict[str, str]:
    from tests.integration.apply_support import lab_env as support_env

    return support_env(project, folder)


def apply(spec: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "reconciler", "-f", str(spec), "apply", "--auto-approve"],
                            capture_output=True, text=True, env=env, cwd=ROOT)
    if result.returncode != 0:
        sys.exit(f"apply failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return time.perf_counter() - start


def deploy_under_load(spec: Path, env: dict[str, str], strategy: str, rate: float,
                      settle: float) -> tuple[LoadResult, float]:
    """Version 1 up (not measured), then 1 → 2 with the load running from before to after."""
    env = {**env, "LAB_API_STRATEGY": strategy}
    apply(spec, {**env, "LAB_APP_VERSION": "1"})
    load = HttpLoad(int(env["LAB_API_PORT"]), rate=rate).start()
    try:
        time.sleep(settle)
        took = apply(spec, {**env, "LAB_APP_VERSION": "2"})
        time.sleep(settle)
    finally:
        result = load.stop()
    return result, took


def run(smoke: bool, rate: float) -> dict[str, tuple[LoadResult, float]]:
    from reconciler import dockerio
    from tests.integration.conftest import purge

    project = f"bench-zd-{secrets.token_hex(3)}"
    with tempfile.TemporaryDirectory() as tmp:
        env = lab_env(project, Path(tmp))
        spec = LAB
        if smoke:
            spec = Path(tmp) / "smoke.yaml"
            spec.write_text(SMOKE_SPEC)
        try:
            return {s: deploy_under_load(spec, env, s, rate, 0.5 if smoke else 2.0)
                    for s in STRATEGIES}
        finally:
            purge(dockerio.connect(), project)


def table(results: dict[str, tuple[LoadResult, float]]) -> str:
    """Blue-green beside the recreate baseline, with the ratio (lower is better)."""
    green, green_s = results["blue-green"]
    base, base_s = results["recreate"]
    rows = [
        ("failed requests", green.failed, base.failed, "0"),
        ("requests sent", green.sent, base.sent, ""),
        ("request rate (req/s)", green.rate, base.rate, "≥ 200"),
        ("slowest second (req)", green.lowest_rate, base.lowest_rate, "≥ 200"),
        ("p99 latency (ms)", green.percentile(0.99) * 1000, base.percentile(0.99) * 1000, ""),
        ("max latency (ms)", max(green.latencies, default=0) * 1000, max(base.latencies, default=0) * 1000, ""),
        ("apply 1 → 2 (s)", green_s, base_s, ""),
    ]
    lines = ["| metric | blue-green | recreate (baseline) | ratio | target |", "|---|---|---|---|---|"]
    for name, ours, theirs, target in rows:
        ratio = f"{ours / theirs:.2f}×" if theirs else "—"
        lines.append(f"| {name} | {_num(ours)} | {_num(theirs)} | {ratio} | {_verdict(name, ours, target)} |")
    lines.append("")
    lines.append(f"Versions served — blue-green: {dict(green.versions)}; recreate: {dict(base.versions)}. "
                 f"Errors — blue-green: {dict(green.errors) or 'none'}; recreate: {dict(base.errors) or 'none'}.")
    return "\n".join(lines)


def _num(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _verdict(name: str, value: float, target: str) -> str:
    if not target:
        return "—"
    ok = value == 0 if target == "0" else value >= 200
    return f"{target} {'✓' if ok else '✗'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="api only, short load, nothing written")
    parser.add_argument("--rate", type=float, default=250, help="requests per second (total)")
    args = parser.parse_args()
    compile_package()
    results = run(args.smoke, args.rate)
    text = table(results)
    print(text)
    if not args.smoke:
        with (ROOT / "bench" / "RESULTS.md").open("a", encoding="utf-8") as out:
            out.write(f"\n## zero downtime — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, app 1 → 2 on the lab "
                      f"stack under {args.rate:g} req/s\n\n{text}\n")
    if results["blue-green"][0].failed:
        sys.exit(f"blue-green dropped {results['blue-green'][0].failed} request(s)")


if __name__ == "__main__":
    main()
