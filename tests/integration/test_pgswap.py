"""Swapping a restored database into place on a real server: never a moment where a failure
leaves neither copy, and what a killed swap left is undone by the next restore."""

from __future__ import annotations

import psycopg
import pytest

from reconciler.engines import pgswap
from tests.integration.test_engines_postgres import connect, running  # noqa: F401 - a fixture

pytestmark = pytest.mark.engine


@pytest.fixture()
def admin(running):  # noqa: F811
    target, _ = running
    with connect(target, "postgres") as conn:
        for name in ("shop", pgswap.staging_name("shop"), pgswap.retired_name("shop")):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        yield target, conn


def make(target, admin, name: str, mark: str) -> None:
    admin.execute(f'CREATE DATABASE "{name}"')
    with connect(target, name) as conn:
        conn.execute("CREATE TABLE mark (v text)")
        conn.execute("INSERT INTO mark VALUES (%s)", (mark,))


def mark(target, name: str = "shop") -> str:
    with connect(target, name) as conn:
        return conn.execute("SELECT v FROM mark").fetchone()[0]


def names(admin) -> set[str]:
    return {row[0] for row in admin.execute("SELECT datname FROM pg_database WHERE datname LIKE 'shop%'")}


def test_swap_puts_staging_in_place_even_with_sessions_on_both(admin):
    target, conn = admin
    make(target, conn, "shop", "old")
    make(target, conn, pgswap.staging_name("shop"), "new")
    held = [connect(target, "shop"), connect(target, pgswap.staging_name("shop"))]  # e.g. a monitor
    try:
        pgswap.swap(conn, "shop")
    finally:
        for session in held:
            session.close()
    assert mark(target) == "new" and names(conn) == {"shop"}
    assert conn.execute("SELECT datallowconn FROM pg_database WHERE datname = 'shop'").fetchone()[0]


def test_a_failed_second_rename_puts_the_live_database_back(admin):
    target, conn = admin
    make(target, conn, "shop", "old")  # no staging copy: renaming it into place fails
    with pytest.raises(psycopg.Error):
        pgswap.swap(conn, "shop")
    assert mark(target) == "old" and names(conn) == {"shop"}


def test_recover_undoes_a_swap_killed_between_its_renames(admin):
    target, conn = admin
    make(target, conn, pgswap.retired_name("shop"), "old")  # live renamed away, then killed
    pgswap.recover(conn, "shop")
    assert mark(target) == "old" and names(conn) == {"shop"}

    make(target, conn, pgswap.retired_name("shop"), "older")  # killed after the new one was in place
    pgswap.recover(conn, "shop")
    assert mark(target) == "old" and names(conn) == {"shop"}


def test_a_rename_leaves_the_live_name_open_whatever_happens_after_it(admin, monkeypatch):
    """Renamed and reopened in one transaction: a kill right after the rename (simulated by
    the next statement failing) cannot leave the live database refusing connections."""
    target, conn = admin
    make(target, conn, pgswap.staging_name("shop"), "new")
    real_drop = pgswap.drop_database
    calls = []

    def killed_after_the_rename(admin_conn, name):
        calls.append(name)
        if len(calls) > 1:  # the first drops a leftover retired copy; the next follows the rename
            raise KeyboardInterrupt
        real_drop(admin_conn, name)

    make(target, conn, "shop", "old")
    monkeypatch.setattr(pgswap, "drop_database", killed_after_the_rename)
    with pytest.raises(KeyboardInterrupt):
        pgswap.swap(conn, "shop")
    assert not pgswap.closed(conn, "shop") and mark(target) == "new"


def test_recover_reopens_a_database_a_killed_swap_had_closed(admin):
    target, conn = admin
    make(target, conn, "shop", "live")
    conn.execute('ALTER DATABASE "shop" ALLOW_CONNECTIONS false')  # killed before its rename
    assert pgswap.closed(conn, "shop")
    pgswap.recover(conn, "shop")
    assert not pgswap.closed(conn, "shop") and mark(target) == "live"


def test_a_closed_database_is_refused_by_the_probe_not_unreachable(running):  # noqa: F811
    """What a killed swap can leave is a running server to leave alone (heal never restarts or
    recreates it), not a broken one."""
    from reconciler.engines.base import ProbeStatus

    target, engine = running
    with connect(target, "postgres") as conn:
        conn.execute('DROP DATABASE IF EXISTS "shop" WITH (FORCE)')
        conn.execute('CREATE DATABASE "shop"')
        conn.execute('ALTER DATABASE "shop" ALLOW_CONNECTIONS false')
        try:
            result = engine.probe(target)
        finally:
            conn.execute('ALTER DATABASE "shop" ALLOW_CONNECTIONS true')
    assert result.status is ProbeStatus.REFUSED
    assert "not currently accepting connections" in result.details["error"]
