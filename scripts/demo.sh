#!/usr/bin/env bash
# The main job on a fresh machine: set up the lab, then show the reference stack's plan
# against the real engine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
echo
echo "\$ reconcile -f specs/lab.yaml plan"
.venv/bin/reconcile -f specs/lab.yaml plan
