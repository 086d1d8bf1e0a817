"""Each benchmark runs end to end on small data: it must work, whatever the figures say.

Timing targets are checked by hand on the full-size runs (bench/RESULTS.md), never here:
this machine is too noisy for timed assertions.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RATIO = re.compile(r"\| \d+\.\d+× ")

pytestmark = pytest.mark.engine


def run_bench(script: str, *args: str, timeout: int = 600) -> str:
    result = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args],
                            capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_plan_benchmark_smoke():
    out = run_bench("plan.py", "--services", "3", "--runs", "1")
    assert "matching containers" in out and RATIO.search(out), out


def test_apply_benchmark_smoke():
    out = run_bench("apply.py", "--smoke", timeout=900)
    assert RATIO.search(out), out


def test_backup_benchmark_smoke():
    out = run_bench("backup.py", "--db-mb", "4", "--keys", "3000", "--runs", "2", timeout=900)
    for case in ("pg_dump + gzip", "pg_dump > /dev/null", "gunzip into psql", "redis-cli --rdb"):
        assert case in out, out
    assert RATIO.search(out), out


def test_zero_downtime_benchmark_smoke():
    out = run_bench("zero_downtime.py", "--smoke", timeout=900)
    assert "| failed requests | 0 |" in out, out
