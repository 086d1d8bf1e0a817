#!/usr/bin/env bash
# Everything a fresh machine needs: a virtualenv with reconcile installed (editable, with the
# test extras), then the lab: Docker engine, locally built images, the S3 endpoint.
# Idempotent: a second run with nothing changed takes seconds.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY="${PYTHON_BOOTSTRAP:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    "$PY" -m venv .venv
fi
stamp=.venv/.reconcile-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setup: installing reconcile and its test extras into .venv"
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 \
        | grep -v "is ignored: it is neither" || true
    .venv/bin/python -c "import reconciler, moto" && touch "$stamp"
fi
# An editable install leaves reconcile's own modules uncompiled, and where
# PYTHONDONTWRITEBYTECODE is set (CI images often set it) every run compiled all of them
# again: ~40 ms before a backup's first command. pip compiles a normal install the same way.
.venv/bin/python -m compileall -q reconciler
PYTHON="$PWD/.venv/bin/python" bash lab/up.sh
