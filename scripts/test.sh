#!/usr/bin/env bash
# The whole test suite on a fresh machine: set up the lab, then unit, integration, scenario
# tests and a smoke run of every benchmark. Extra arguments go to pytest (e.g. tests/unit),
# run as they are, one test at a time.
#
# Without arguments the tests run two at a time, a test file per worker (pytest-xdist): most
# of their time is spent waiting on containers. A test that fails there is run again alone,
# once, with the rest of its file: some wait on timings (a health interval, a lock held for a
# second) that two runs at once on a 2-core machine can stretch. Only a test that fails alone
# too fails the run; the files that passed only the second time are named at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export RECONCILE_TEST_S3_ENDPOINT="http://127.0.0.1:${RECONCILE_LAB_S3_PORT:-9555}"
if [ "$#" -gt 0 ]; then
    exec .venv/bin/python -m pytest "$@"
fi
if .venv/bin/python -m pytest tests -n 2 --dist loadfile --durations=15; then
    exit 0
fi
# The files of the failed tests, whole: a scenario file's tests build on each other's stack.
mapfile -t again < <(.venv/bin/python -c '
import json, pathlib, sys
failed = json.loads(pathlib.Path(".pytest_cache/v/cache/lastfailed").read_text())
sys.stdout.write("".join(f"{path}\n" for path in sorted({node.split("::")[0] for node in failed})))')
if [ "${#again[@]}" -eq 0 ]; then
    echo "test.sh: the run failed without a failed test to run again" >&2
    exit 1
fi
echo "test.sh: running the files of the failed tests again, one test at a time: ${again[*]}"
.venv/bin/python -m pytest "${again[@]}" -v
echo "test.sh: the tests of ${again[*]} failed only when run beside others (timing under load)"
