"""The SQL that recreates roles and database properties (rendered without a server)."""

from __future__ import annotations

import pytest

from reconciler.engines.pgglobals import HEADER, Database, Role, render, split_list


@pytest.mark.parametrize(("stored", "items"), [
    ('"$user", public', ["$user", "public"]),
    ('public, "odd,schema", "with ""quote"""', ["public", "odd,schema", 'with "quote"']),
    ("", []),
])
def test_list_settings_are_split_like_postgres_does(stored, items):
    assert split_list(stored) == items


def test_roles_are_created_only_if_missing_and_the_database_is_the_current_one():
    role = Role("app user", ("INHERIT", "LOGIN"), 20, None, "SCRAM-SHA-256$4096:abc$def:ghi",
                ("statement_timeout=5s", 'search_path="$user", public'))
    database = Database("app user", 50, ((None, "TEMPORARY", False), ("app user", "CONNECT", True)),
                        "the 100% shop's data", ("work_mem=7MB",))
    text = render([role], [("readers", "app user", False)], database, None).decode()
    assert text.startswith(HEADER.decode())
    roles, _, rest = text.partition(";\nDO ")
    assert "IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'app user') THEN" in roles
    assert 'CREATE ROLE "app user" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN' in roles
    assert "PASSWORD ''SCRAM-SHA-256$4096:abc$def:ghi''" in roles
    assert """ALTER ROLE "app user" SET "search_path" = ''$user'', ''public''""" in roles
    # a membership only for a role this script created: an existing one keeps its own
    assert """IF 'app user' = ANY (created) THEN EXECUTE 'GRANT "readers" TO "app user"'""" in roles
    props = ("DO " + rest).splitlines()
    assert all("pg_catalog.current_database()" in line for line in props)
    joined = "\n".join(props)
    assert 'ALTER DATABASE %I OWNER TO "app user"' in joined
    assert "REVOKE ALL ON DATABASE %I FROM PUBLIC" in joined
    assert "GRANT TEMPORARY ON DATABASE %I TO PUBLIC" in joined
    assert 'GRANT CONNECT ON DATABASE %I TO "app user" WITH GRANT OPTION' in joined
    assert """ALTER DATABASE %I SET "work_mem" = ''7MB''""" in joined
    assert "COMMENT ON DATABASE %I IS ''the 100%% shop''''s data''" in joined  # % doubled for format()


def test_default_privileges_are_not_touched():
    text = render([], [], Database("postgres", -1, None, None, ()), None).decode()
    assert "REVOKE" not in text and "CONNECTION LIMIT" not in text and "COMMENT" not in text
    assert "CREATE ROLE" not in text
    assert 'ALTER DATABASE %I OWNER TO "postgres"' in text


def test_settings_a_role_has_in_this_database_only_are_given_back_in_the_current_one():
    """``ALTER ROLE … IN DATABASE … SET`` rows go with the database they belong to: dropped by
    the swap, they must come back from the dump (as ``pg_dump --create`` brings them)."""
    database = Database("postgres", -1, None, None, (), (
        ("app user", ('search_path=app, "Odd Schema"', "statement_timeout=5s")), ("reader", ("work_mem=3MB",))))
    lines = render([], [], database, None).decode().splitlines()[1:]
    assert all("pg_catalog.current_database()" in line for line in lines)
    joined = "\n".join(lines)
    assert """ALTER ROLE "app user" IN DATABASE %I SET "search_path" = ''app'', ''Odd Schema''""" in joined
    assert """ALTER ROLE "app user" IN DATABASE %I SET "statement_timeout" = ''5s''""" in joined
    assert """ALTER ROLE "reader" IN DATABASE %I SET "work_mem" = ''3MB''""" in joined
