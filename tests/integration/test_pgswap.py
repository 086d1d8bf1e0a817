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
        pgswap.drop_database(conn, pgswap.swap(conn, "shop"))
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


def test_a_retired_copy_next_to_the_live_database_is_kept_and_refused(admin):
    """Killed after the new copy was in place: the retired copy holds what the database had
    before that restore (maybe rows no backup has). It is not dropped behind anyone's back;
    only one whose DROP was cut halfway (PostgreSQL marks it invalid, nothing usable is left
    in it) is dropped, to finish that drop."""
    target, conn = admin
    retired = pgswap.retired_name("shop")
    make(target, conn, "shop", "restored")
    make(target, conn, retired, "newer than the backup")
    with pytest.raises(pgswap.LeftoverCopy) as caught:
        pgswap.recover(conn, "shop")
    assert caught.value.retired == retired
    assert mark(target) == "restored" and mark(target, retired) == "newer than the backup"
    with pytest.raises(pgswap.LeftoverCopy):
        pgswap.swap(conn, "shop")  # nor by a swap
    assert names(conn) == {"shop", retired}

    conn.execute("UPDATE pg_database SET datconnlimit = -2 WHERE datname = %s", (retired,))
    pgswap.recover(conn, "shop")
    assert mark(target) == "restored" and names(conn) == {"shop"}


LONG = "shop_with_a_very_long_name_that_shares_its_prefix_with_another"


def test_recover_finds_a_retired_copy_under_the_name_older_versions_gave(admin):
    """Older versions cut long names: their retired copy is put back too, and one next to a
    live database is refused, under that name as under today's."""
    target, conn = admin
    legacy = pgswap.legacy_name(LONG, pgswap.RETIRED_SUFFIX)
    try:
        assert legacy != pgswap.retired_name(LONG)
        make(target, conn, legacy, "old")
        pgswap.recover(conn, LONG)
        assert mark(target, LONG) == "old" and not pgswap.exists(conn, legacy)
        make(target, conn, legacy, "older")
        with pytest.raises(pgswap.LeftoverCopy):
            pgswap.recover(conn, LONG)
        assert mark(target, legacy) == "older"
    finally:
        for name in (LONG, legacy):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_swap_leaves_the_live_name_open_and_the_retired_copy_to_the_caller(admin):
    """Renamed and reopened in one transaction, and nothing is dropped inside the swap: the
    caller records the database as replaced first, then drops the copy it is handed."""
    target, conn = admin
    make(target, conn, pgswap.staging_name("shop"), "new")
    make(target, conn, "shop", "old")
    retired = pgswap.swap(conn, "shop")
    assert retired == pgswap.retired_name("shop")
    assert not pgswap.closed(conn, "shop") and mark(target) == "new" and mark(target, retired) == "old"
    pgswap.drop_database(conn, retired)
    assert names(conn) == {"shop"}


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
