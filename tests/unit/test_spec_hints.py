"""Hints that lead somewhere for a new user's mistakes (QA: the README tour)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from reconciler.errors import SpecError, SpecErrors
from reconciler.spec.load import load_spec

SPEC = """\
version: 1
project: shop
volumes: { pgdata: {} }
networks: { backend: {} }
services:
  db:
    image: postgres:16
    volumes: ["pgdta:/var/lib/postgresql/data"]
    networks: [backnd]
"""


def test_a_typo_of_a_declared_network_or_volume_is_named_before_declaring_it(tmp_path):
    """Following "declare it" would have put the service on a new, empty network or volume."""
    spec = tmp_path / "reconcile.yaml"
    spec.write_text(SPEC)
    with pytest.raises((SpecError, SpecErrors)) as caught:
        load_spec(spec, {})
    errors = getattr(caught.value, "errors", None) or [caught.value]
    hints = {e.ref: e.hint for e in errors}
    assert hints["spec.undeclared-network"].startswith("did you mean 'backend'?")
    assert hints["spec.undeclared-volume"].startswith("did you mean 'pgdata'?")


def test_a_relative_reconcile_file_read_from_another_folder_says_so(tmp_path):
    done = subprocess.run([sys.executable, "-m", "reconciler", "validate"], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path,
                          env={**os.environ, "RECONCILE_FILE": "work/lab.yaml", "NO_COLOR": "1",
                               "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 1
    assert f"spec file work/lab.yaml (from RECONCILE_FILE) not found in {tmp_path}" in done.stderr, done.stderr
    assert "give it an absolute path" in done.stderr
