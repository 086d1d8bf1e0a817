#!/usr/bin/env bash
# The whole test suite on a fresh machine: set up the lab, then unit, integration, scenario
# tests and a smoke run of every benchmark. Extra arguments go to pytest (e.g. tests/unit).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export RECONCILE_TEST_S3_ENDPOINT="http://127.0.0.1:${RECONCILE_LAB_S3_PORT:-9555}"
exec .venv/bin/python -m pytest "${@:-tests}"
