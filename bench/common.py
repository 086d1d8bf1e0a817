"""Helpers shared by the benchmarks: timing of whole commands and a side-by-side table."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def compile_package() -> None:
    """Byte-compile reconcile as pip does a normal install, so each run of the CLI times the
    tool and not the compiling of its modules (an editable install run under
    PYTHONDONTWRITEBYTECODE compiles all of them again in every process: ~40 ms)."""
    import compileall

    compileall.compile_dir(ROOT / "reconciler", quiet=1)


def time_command(argv: list[str], runs: int, env: dict | None = None) -> list[float]:
    """Wall times of ``runs`` runs of a command; a failing run aborts the benchmark."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run(argv, capture_output=True, text=True, env=env)
        times.append(time.perf_counter() - start)
        if result.returncode not in (0, 2):
            sys.exit(f"benchmark command failed ({result.returncode}): {' '.join(argv)}\n"
                     f"{result.stdout}\n{result.stderr}")
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def table(rows: list[tuple[str, float, float, float | None]]) -> str:
    """Markdown table: case, ours (s), baseline (s), ratio and target."""
    lines = ["| case | reconcile (s) | baseline (s) | ratio | target |", "|---|---|---|---|---|"]
    for case, ours, base, target in rows:
        ratio = ours / base if base else float("inf")
        verdict = "" if target is None else (" ✓" if ratio <= target else " ✗")
        lines.append(f"| {case} | {ours:.3f} | {base:.3f} | {ratio:.2f}×{verdict} | "
                     f"{'≤ %.1f×' % target if target else '—'} |")
    return "\n".join(lines)


def record(script: str, text: str) -> None:
    """Append a dated section to bench/RESULTS.md (full-size runs only)."""
    from datetime import UTC, datetime

    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    with (ROOT / "bench" / "RESULTS.md").open("a") as results:
        results.write(f"\n## {stamp} — {script}\n\n{text}\n")
