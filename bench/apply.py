"""Benchmark: `reconcile apply` of an app-only change vs the raw Docker operations it needs.

On the lab stack (specs/lab.yaml), flip the app image 1 ↔ 2: apply recreates api and worker.
The baseline does the same two swaps with the Docker SDK directly: create the new container
(same arguments, from ``builders``), stop the old one, start the new one, wait until healthy
(the same probe, polled at the same interval), remove the old one, rename the new one. The
ratio is reconcile's overhead: planning, the lock, the journal, health of the untouched
infrastructure, dependency gates (target ≤ 1.3×). Also: the whole stack from an empty engine.

    python bench/apply.py            # full: 5 runs each, appended to bench/RESULTS.md
    python bench/apply.py --smoke    # one run each, nothing written (CI)
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, compile_package, median, table  # noqa: E402

LAB = ROOT / "specs" / "lab.yaml"
APPS = ("api", "worker")
TARGET = 1.3


def lab_env(project: str, folder: Path) -> dict[str, str]:
    from tests.conftest_s3 import free_port

    # The baseline swaps containers directly, so the api is deployed with recreate here too:
    # blue-green adds a proxy switch and a drain that the raw operations do not do.
    env = {**os.environ, "NO_COLOR": "1", "LAB_PROJECT": project, "S3_ENABLED": "false",
           "LAB_API_STRATEGY": "recreate",
           "LAB_STATE_DIR": str(folder / "state"), "LAB_BACKUP_DIR": str(folder / "backups")}
    for name in ("LAB_PG_PORT", "LAB_REDIS_PORT", "LAB_VIDEO_PORT", "LAB_API_PORT"):
        env[name] = str(free_port())
    return env


def timed_apply(env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "reconciler", "-f", str(LAB), "apply", "--auto-approve"],
                            capture_output=True, text=True, env=env, cwd=ROOT)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"apply failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return elapsed


def raw_swaps(env: dict[str, str]) -> float:
    """api and worker replaced with plain SDK calls; leaves the engine as apply would."""
    from reconciler import dockerio
    from reconciler.apply import builders
    from reconciler.session import Session
    from reconciler.spec.load import load_spec

    session = Session(load_spec(LAB, env))
    client = dockerio.connect()
    session._client = client
    start = time.perf_counter()
    for service in APPS:
        spec = session.spec.services[service]
        canonical = f"{session.spec.project}-{service}"
        image = client.api.inspect_image(spec.image)["Id"]
        args = builders.container_args(session.loaded, service, image, container=f"{canonical}-bench")
        new = dockerio.create_container(client, args)
        client.api.stop(canonical, timeout=int(spec.deploy.stop_grace))
        client.api.start(new)
        wait_healthy(session, service, new)
        client.api.remove_container(canonical, force=True)
        client.api.rename(new, canonical)
    return time.perf_counter() - start


def wait_healthy(session, service: str, container: str) -> None:
    from reconciler.health import Level, check_service

    interval = session.spec.services[service].health.interval
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if check_service(session, service, container).level is Level.HEALTHY:
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(interval)
    sys.exit(f"baseline: {service} did not become healthy")


def purge(project: str) -> None:
    from tests.integration.conftest import purge as purge_project

    from reconciler import dockerio

    purge_project(dockerio.connect(), project)


def run(runs: int) -> tuple[float, float, float]:
    project = f"bench-{secrets.token_hex(3)}"
    with tempfile.TemporaryDirectory() as tmp:
        env = lab_env(project, Path(tmp))
        try:
            full = timed_apply({**env, "LAB_APP_VERSION": "1"})
            ours, raw, version = [], [], "1"
            for _ in range(runs):
                version = "2" if version == "1" else "1"
                ours.append(timed_apply({**env, "LAB_APP_VERSION": version}))
                version = "2" if version == "1" else "1"
                raw.append(raw_swaps({**env, "LAB_APP_VERSION": version}))
        finally:
            purge(project)
    return median(ours), median(raw), full


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="one run, nothing written")
    args = parser.parse_args()
    compile_package()
    ours, raw, full = run(1 if args.smoke else args.runs)
    text = table([("app-only change (api + worker recreated)", ours, raw, TARGET)])
    text += f"\n\nFull lab stack from an empty engine: {full:.2f} s (`reconcile apply`)."
    print(text)
    if not args.smoke:
        with (ROOT / "bench" / "RESULTS.md").open("a", encoding="utf-8") as out:
            out.write(f"\n## apply — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, median of {args.runs} runs\n\n"
                      f"{text}\n")


if __name__ == "__main__":
    main()
