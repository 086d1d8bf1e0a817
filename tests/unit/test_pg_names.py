"""Names a PostgreSQL restore gives its copies, and the keys per-table stats are recorded
under (pure: no server)."""

from __future__ import annotations

import pytest

from reconciler.engines import pgswap
from reconciler.engines.base import BackupStats, DatabaseLocale, LocaleProvider
from reconciler.engines.pgcatalog import LocaleUnsupported, legacy_table_name, locale_options, table_name

ALPHA = "tenant_database_with_a_very_long_common_prefix_alpha"
BRAVO = "tenant_database_with_a_very_long_common_prefix_bravo"


def test_databases_sharing_a_long_prefix_get_copies_of_their_own():
    names = {pgswap.staging_name(ALPHA), pgswap.staging_name(BRAVO),
             pgswap.retired_name(ALPHA), pgswap.retired_name(BRAVO)}
    assert len(names) == 4
    assert all(len(name.encode()) <= 63 for name in names)
    assert pgswap.staging_name(ALPHA).startswith("tenant_database_with_a_very_long_")
    assert pgswap.staging_name(ALPHA).endswith(pgswap.STAGING_SUFFIX)
    # what older versions called them, which recover still looks for: one name for both
    assert pgswap.legacy_name(ALPHA, pgswap.RETIRED_SUFFIX) == pgswap.legacy_name(BRAVO, pgswap.RETIRED_SUFFIX)
    assert pgswap.clashes([ALPHA, BRAVO]) == []


@pytest.mark.parametrize("db", ["shop", "my-db", "Ünï Cödé", "x" * 44])
def test_a_name_that_fits_keeps_the_form_it_always_had(db):
    assert pgswap.staging_name(db) == db + "__reconcile_restore"
    assert pgswap.retired_name(db) == db + "__reconcile_retired"
    assert pgswap.legacy_name(db, pgswap.RETIRED_SUFFIX) == pgswap.retired_name(db)


def test_a_long_name_is_cut_on_a_character_boundary():
    db = "Ü" * 31  # 62 bytes
    for name in (pgswap.staging_name(db), pgswap.retired_name(db)):
        assert len(name.encode()) <= 63 and name.startswith("Ü" * 10)
    assert pgswap.staging_name(db) != pgswap.staging_name("Ü" * 30 + "Ä")


def test_a_database_named_like_another_ones_copy_is_a_clash():
    found = pgswap.clashes(["shop", "shop__reconcile_restore"])
    assert found == ["shop and shop__reconcile_restore (both would use shop__reconcile_restore)"]


@pytest.mark.parametrize(("schema", "table", "key"), [
    ("public", "orders", "public.orders"),
    ("audit", "events_2024", "audit.events_2024"),
    ("s", "a.b", 's."a.b"'),
    ("s.a", "b", '"s.a".b'),
    ("Odd Schema", "My Table", '"Odd Schema"."My Table"'),
    ("public", 'say "hi"', 'public."say ""hi"""'),
    ("public", "Users", 'public."Users"'),
])
def test_table_keys_quote_only_the_parts_that_need_it(schema, table, key):
    assert table_name(schema, table) == key
    assert legacy_table_name(schema, table) == f"{schema}.{table}"


def test_the_locale_is_recorded_and_read_back_and_older_metadata_has_none():
    data = {"kind": "postgres", "databases": [
        {"name": "a", "size_bytes": 1, "tables": {}, "encoding": "UTF8",
         "locale": {"collate": "C", "ctype": "C", "provider": "icu", "locale": "de-DE", "icu_rules": None}},
        {"name": "b", "size_bytes": 1, "tables": {}, "encoding": "LATIN1"}]}
    stats = BackupStats.from_dict(data)
    assert stats.databases[0].locale == DatabaseLocale("C", "C", LocaleProvider.ICU, "de-DE")
    assert stats.databases[1].locale is None
    assert BackupStats.from_dict(stats.as_dict()) == stats


@pytest.mark.parametrize(("locale", "version", "options"), [
    (None, 170000, ""),
    (DatabaseLocale("C", "C"), 140000, " LC_COLLATE 'C' LC_CTYPE 'C'"),
    (DatabaseLocale("C", "C"), 150000, " LC_COLLATE 'C' LC_CTYPE 'C' LOCALE_PROVIDER libc"),
    (DatabaseLocale("C.UTF-8", "C.UTF-8", LocaleProvider.ICU, "de-DE"), 150000,
     " LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8' LOCALE_PROVIDER icu ICU_LOCALE 'de-DE'"),
    (DatabaseLocale("C.UTF-8", "C.UTF-8", LocaleProvider.ICU, "und", "&a < g"), 160000,
     " LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8' LOCALE_PROVIDER icu ICU_LOCALE 'und' ICU_RULES '&a < g'"),
    (DatabaseLocale("C.UTF-8", "C.UTF-8", LocaleProvider.BUILTIN, "C.UTF-8"), 170000,
     " LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8' LOCALE_PROVIDER builtin BUILTIN_LOCALE 'C.UTF-8'"),
])
def test_create_database_options_per_server_version(locale, version, options):
    assert locale_options(locale, version).as_string(None) == options


@pytest.mark.parametrize(("locale", "version", "why"), [
    (DatabaseLocale("C", "C", LocaleProvider.ICU, "de-DE"), 140000, "the icu locale provider needs PostgreSQL 15"),
    (DatabaseLocale("C", "C", LocaleProvider.BUILTIN, "C"), 160000, "the builtin locale provider needs PostgreSQL 17"),
    (DatabaseLocale("C", "C", LocaleProvider.ICU, "und", "&a < g"), 150000, "ICU rules need PostgreSQL 16"),
])
def test_a_locale_an_older_server_cannot_create_is_refused(locale, version, why):
    with pytest.raises(LocaleUnsupported) as caught:
        locale_options(locale, version)
    assert str(caught.value).startswith(why)
