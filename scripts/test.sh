#!/usr/bin/env bash
# The whole test suite on a fresh machine: set up the lab, then unit, integration, scenario
# tests and a smoke run of every benchmark. Extra arguments go to pytest (e.g. tests/unit),
# run as they are, one test at a time.
#
# Without arguments the tests run two at a time, a test file per worker (pytest-xdist): most
# of their time is spent waiting on containers. A test that fails there is run again alone,
# once: some wait on timings (a health interval, a lock held for a second) that two runs at
# once on a 2-core machine can stretch. Only a test that fails alone too fails the run; those
# that passed only the second time are named at the end.
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
echo "test.sh: running the failed tests again, one at a time"
.venv/bin/python -m pytest tests --last-failed --last-failed-no-failures none -v
echo "test.sh: the tests above failed only when run beside others (timing under load)"
