"""Benchmark: `reconcile plan` wall time against the floor, on N services (default 50).

The floor is a Python process that imports the Docker SDK and lists and inspects the same
containers: the least any tool must do to know the state. Medians of several runs each,
printed side by side as a ratio (target ≤ 1.5×). Also the plan against an empty engine.

    python bench/plan.py                 # full: 50 services, 7 runs
    python bench/plan.py --services 5 --runs 2   # smoke (CI)
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import compile_package, median, record, table, time_command  # noqa: E402

IMAGE = "reconcile-lab/debian:bookworm"

FLOOR = """
import sys, docker
client = docker.DockerClient(base_url="unix:///var/run/docker.sock")
listed = client.api.containers(all=True, filters={"label": "reconcile.project=" + sys.argv[1]})
for c in listed:
    client.api.inspect_container(c["Id"])
"""


def write_spec(folder: Path, project: str, services: int) -> Path:
    lines = [f"version: 1\nproject: {project}\nnetworks:\n  net: {{}}\nservices:"]
    for i in range(services):
        lines.append(f"  svc{i:03d}:\n    image: {IMAGE}\n    command: [sleep, infinity]\n"
                     f"    env: {{ INDEX: \"{i}\" }}\n    networks: [net]")
    path = folder / "reconcile.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def materialise(spec_file: Path) -> None:
    from reconciler import dockerio
    from reconciler.apply import builders
    from reconciler.spec.load import load_spec

    client = dockerio.connect()
    loaded = load_spec(spec_file)
    dockerio.create_network(client, builders.network_args(loaded, "net"))
    image_id = client.api.inspect_image(IMAGE)["Id"]
    for name in loaded.spec.services:
        dockerio.start(client, dockerio.create_container(
            client, builders.container_args(loaded, name, image_id)))


def purge(project: str) -> None:
    from reconciler import dockerio

    client = dockerio.connect()
    label = {"label": f"reconcile.project={project}"}
    for c in client.api.containers(all=True, filters=label):
        client.api.remove_container(c["Id"], force=True)
    for n in client.api.networks(filters=label):
        client.api.remove_network(n["Id"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--record", action="store_true", help="append results to bench/RESULTS.md")
    args = parser.parse_args()
    compile_package()
    project = f"bench-{secrets.token_hex(3)}"
    env = {**os.environ, "NO_COLOR": "1"}
    plan_cmd = [sys.executable, "-m", "reconciler", "-f", "", "plan"]
    with tempfile.TemporaryDirectory() as tmp:
        spec = write_spec(Path(tmp), project, args.services)
        plan_cmd[4] = str(spec)
        floor_cmd = [sys.executable, "-c", FLOOR, project]
        try:
            empty = median(time_command(plan_cmd, args.runs, env))
            empty_floor = median(time_command(floor_cmd, args.runs, env))
            materialise(spec)
            ours = median(time_command(plan_cmd, args.runs, env))
            floor = median(time_command(floor_cmd, args.runs, env))
        finally:
            purge(project)
    text = (f"reconcile plan, {args.services} services, median of {args.runs} runs\n\n"
            + table([(f"{args.services} matching containers (no changes)", ours, floor, 1.5),
                     (f"empty engine ({args.services} creates planned)", empty, empty_floor, None)]))
    print(text)
    if args.record:
        record("bench/plan.py", text)


if __name__ == "__main__":
    main()
