"""The free-space check before a backup: sized from the last backup when there is one.

QA: the live size of a database (tables and indexes, uncompressed) was compared with the free
space, so a 190 KiB backup was refused on a disk with 20 MiB free, which blocked apply too."""

from __future__ import annotations

from reconciler.backup.run import GROWTH, _expected_sizes, _space_needed


def test_a_service_with_a_backup_needs_twice_that_backup():
    estimates = {"postgres": 40_000_000, "dragonfly": 5_000_000}
    last = {"postgres": {"size": 190_000, "stats": {"raw_bytes": 900_000}}}
    assert _space_needed(estimates, last) == GROWTH * 190_000 + 5_000_000


def test_without_a_usable_size_the_engine_estimate_counts():
    estimates = {"postgres": 40_000_000}
    for entry in ({}, {"size": None}, {"size": 0}, {"size": "big"}):
        assert _space_needed(estimates, {"postgres": entry}) == 40_000_000


def test_the_progress_bar_expects_the_last_backups_stream():
    estimates = {"postgres": 40_000_000, "dragonfly": 5_000_000}
    last = {"postgres": {"size": 190_000, "stats": {"raw_bytes": 900_000}}, "dragonfly": {"size": 7}}
    assert _expected_sizes(estimates, last) == {"postgres": 900_000, "dragonfly": 5_000_000}
