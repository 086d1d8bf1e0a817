"""The cache's count check: live ``INFO keyspace`` against a backup's or a restore's counts.

Table-driven: the live keyspace, the recorded counts, the report as ``reconcile verify``
prints its checks (``name: expected …, found …``, failed ones marked).
"""

from __future__ import annotations

import pytest

from reconciler.engines.redis import DbKeys, compare_keyspace

CASES = {
    "unchanged, TTLs and several dbs": (
        {0: DbKeys(10, 2), 3: DbKeys(1, 0)}, {0: 10, 3: 1}, {0: 2, 3: 0},
        ["keys without a TTL in db0: expected 8, found 8",
         "keys with a TTL in db0: expected at most 2, found 2",
         "keys without a TTL in db3: expected 1, found 1",
         "keys with a TTL in db3: expected 0, found 0"]),
    "a volatile key expired": (
        {0: DbKeys(9, 1)}, {0: 10}, {0: 2},
        ["keys without a TTL in db0: expected 8, found 8",
         "keys with a TTL in db0: expected at most 2, found 1"]),
    "a persistent key deleted cannot hide behind the volatile ones": (
        {0: DbKeys(9, 2)}, {0: 10}, {0: 2},
        ["FAILED keys without a TTL in db0: expected 8, found 7",
         "keys with a TTL in db0: expected at most 2, found 2"]),
    "a persistent key added": (
        {0: DbKeys(11, 2)}, {0: 10}, {0: 2},
        ["FAILED keys without a TTL in db0: expected 8, found 9",
         "keys with a TTL in db0: expected at most 2, found 2"]),
    "a volatile key added": (
        {0: DbKeys(11, 3)}, {0: 10}, {0: 2},
        ["keys without a TTL in db0: expected 8, found 8",
         "FAILED keys with a TTL in db0: expected at most 2, found 3"]),
    "a db emptied": (
        {}, {0: 3}, {0: 0},
        ["FAILED keys without a TTL in db0: expected 3, found 0",
         "keys with a TTL in db0: expected 0, found 0"]),
    "every volatile key of a db expired": (
        {}, {2: 4}, {2: 4},
        ["keys without a TTL in db2: expected 0, found 0",
         "keys with a TTL in db2: expected at most 4, found 0"]),
    "a db the backup does not have": (
        {0: DbKeys(1, 0), 5: DbKeys(2, 1)}, {0: 1}, {0: 0},
        ["keys without a TTL in db0: expected 1, found 1",
         "keys with a TTL in db0: expected 0, found 0",
         "FAILED keys in db5 (not in the backup): expected 0, found 2"]),
    "an empty backup, keys since": (
        {0: DbKeys(1, 0), 9: DbKeys(1, 1)}, {}, {},
        ["FAILED keys in db0 (not in the backup): expected 0, found 1",
         "FAILED keys in db9 (not in the backup): expected 0, found 1"]),
    "an empty backup, still empty": (
        {}, {}, {},
        ["keys in any db: expected 0, found 0"]),
    "a backup without TTL counts is held to its total": (
        {0: DbKeys(10, 2), 1: DbKeys(4, 1)}, {0: 10, 1: 5}, {},
        ["keys in db0 (backup without TTL counts): expected 10, found 10",
         "FAILED keys in db1 (backup without TTL counts): expected 5, found 4"]),
    "a restore whose expired keys were skipped": (
        {0: DbKeys(1, 0)}, {0: 1}, {0: 0},
        ["keys without a TTL in db0: expected 1, found 1",
         "keys with a TTL in db0: expected 0, found 0"]),
}


@pytest.mark.parametrize("live, keys, expiring, expected", CASES.values(), ids=CASES.keys())
def test_cache_counts_against_the_record(live, keys, expiring, expected):
    report = compare_keyspace(live, keys, expiring)
    shown = [f"{'' if c.ok else 'FAILED '}{c.name}: expected {c.expected}, found {c.actual}"
             for c in report.checks]
    assert shown == expected
    assert report.ok == (not any(line.startswith("FAILED") for line in expected))
