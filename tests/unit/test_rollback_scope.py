"""`reconcile rollback` with no service names says which services it leaves as they are.
QA: the worker (strategy recreate, no kept version) stayed on the new version, unsaid."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from reconciler.deploy.rollback import not_rolled_back
from reconciler.spec.load import LoadedSpec
from reconciler.spec.models import Spec

SPEC = Spec.model_validate({"project": "p", "services": {
    "db": {"kind": "postgres", "image": "pg:15", "stateful": True},
    "api": {"image": "app:2", "deploy": {"strategy": "blue-green"}},
    "worker": {"image": "app:2"}}})


def test_the_services_a_rollback_of_all_leaves_are_named():
    session = SimpleNamespace(spec=SPEC, loaded=LoadedSpec(SPEC, Path("/nowhere/spec.yaml")))
    chosen = [SimpleNamespace(service="api")]
    assert not_rolled_back(session, chosen) == [
        "worker: not rolled back (strategy recreate keeps no older version): it goes on running the version it "
        "runs now"]
