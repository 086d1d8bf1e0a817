#!/usr/bin/env bash
# The main job on a fresh machine: set up the lab, then converge the reference stack on the
# real engine (plan, back up what holds data, apply) and show its health.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export RECONCILE_FILE=specs/lab.yaml
run() { echo; echo "\$ reconcile $*"; .venv/bin/reconcile "$@"; }
run plan
run apply --auto-approve
run health
