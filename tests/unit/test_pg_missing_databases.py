"""A database the spec names that the server lacks: the words the probe and the backup use, and
that heal's rules (and so diagnose) read as the blocking "database missing" issue."""

from __future__ import annotations

import pytest

from reconciler.engines import make_target, pgcatalog
from reconciler.operate.heal_rules import REFUSED_RULE, FixKind, plan_fixes, probe_issues
from reconciler.spec.models import Service


def target(databases: list[str], env: dict | None = None):
    service = Service.model_validate({"image": "img", "kind": "postgres", "env": env or {},
                                      "backup": {"databases": databases}})
    return make_target("db", service, "c0ffee", "10.0.0.2")


@pytest.mark.parametrize(("databases", "env", "named"), [
    ([], {}, ["postgres"]),
    ([], {"POSTGRES_DB": "shop"}, ["shop"]),
    (["shop", "extra"], {"POSTGRES_DB": "shop"}, ["shop", "extra"]),
    (["extra"], {"POSTGRES_USER": "app"}, ["app", "extra"]),
])
def test_every_database_the_spec_names_is_checked_once(databases, env, named):
    assert pgcatalog.spec_databases(target(databases, env)) == named


def test_the_missing_databases_read_as_the_blocking_database_missing_issue():
    words = pgcatalog.does_not_exist(["extra", "old"])
    assert words == 'database "extra" does not exist; database "old" does not exist'
    assert pgcatalog.refused(Exception(words)) and pgcatalog.missing_database(Exception(words)) == "extra"
    [made] = probe_issues([], {"db": ("refused", f"error {words}")})
    assert (made.rule, made.issue) == (REFUSED_RULE, "database missing") and "old" in made.details
    assert {f.kind for f in plan_fixes([made])} == {FixKind.REPORT}


@pytest.mark.parametrize(("databases", "missing", "message", "hint"), [
    (["shop", "extra"], ["extra"], "database extra of db does not exist on the server",
     "create it, or remove it from backup.databases of db"),
    (["shop", "a", "b"], ["a", "b"], "databases a, b of db do not exist on the server",
     "create them, or remove them from backup.databases of db"),
    ([], ["shop"], "database shop of db does not exist on the server",
     "create it, or set POSTGRES_DB of db to a database the server has"),
])
def test_a_backup_of_a_missing_database_names_it_and_says_what_to_do(databases, missing, message, hint):
    error = pgcatalog.missing_error(target(databases, {"POSTGRES_DB": "shop"}), missing)
    assert (error.message, error.hint, error.ref) == (message, hint, "backup.database-missing")
    assert "server up" not in error.hint
