"""Retention: hand-picked cases, then hypothesis properties and a restic-shaped oracle.

The oracle below is a line-by-line transliteration of restic's ``ApplyPolicy`` loop
(internal/restic/snapshot_policy.go: per snapshot, per bucket policy, keep when the bucket
value differs from the last kept one *or* the snapshot is the oldest, while count > 0),
written in restic's shape rather than ours, so a shared misunderstanding is less likely.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.errors import StorageError
from reconciler.spec.models import Retention
from reconciler.storage.retention import NEWEST_VERIFIED, Decision, Snapshot, decide

UTC = timezone.utc


def at(text: str, verified: bool = False, id: str | None = None) -> Snapshot:
    """A snapshot from ``2026-11-28 02:00`` (UTC unless an offset is given)."""
    moment = datetime.fromisoformat(text)
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return Snapshot(id or text, moment, verified)


def policy(daily: int = 0, weekly: int = 0, monthly: int = 0, tz: str = "UTC") -> Retention:
    return Retention(daily=daily, weekly=weekly, monthly=monthly, timezone=tz)


def days(first: str, count: int, step: int = 1, hour: int = 2) -> list[Snapshot]:
    start = datetime.fromisoformat(first).replace(hour=hour, tzinfo=UTC)
    return [Snapshot((start + timedelta(days=i * step)).strftime("%Y-%m-%d-%H%M"),
                     start + timedelta(days=i * step)) for i in range(count)]


# -- hand-picked cases -------------------------------------------------------------------

def test_daily_7_over_10_consecutive_days_keeps_the_newest_7():
    snaps = days("2026-11-01", 10)
    decision = decide(snaps, policy(daily=7))
    assert decision.keep == [s.id for s in reversed(snaps)][:7]
    assert decision.remove == ["2026-11-03-0200", "2026-11-02-0200", "2026-11-01-0200"]
    assert decision.reasons["2026-11-10-0200"] == ["daily 2026-11-10"]


def test_daily_keeps_the_newest_of_each_day():
    snaps = [at("2026-11-02 23:00"), at("2026-11-02 02:00"), at("2026-11-01 20:00"),
             at("2026-11-01 03:00"), at("2026-10-31 05:00"), at("2026-10-31 01:00")]
    decision = decide(snaps, policy(daily=2))
    assert decision.keep == ["2026-11-02 23:00", "2026-11-01 20:00"]


def test_days_without_a_backup_do_not_count():
    snaps = days("2026-11-01", 10, step=2)  # every other day: 1st, 3rd, … 19th
    decision = decide(snaps, policy(daily=7))
    assert len(decision.keep) == 7
    assert decision.keep[-1] == "2026-11-07-0200"  # 13 calendar days back, 7 backups


def test_iso_week_spans_new_year_2026_w53():
    snaps = [at("2027-01-01 02:00"), at("2026-12-31 02:00"), at("2026-12-20 02:00")]
    decision = decide(snaps, policy(weekly=2))
    assert decision.keep == ["2027-01-01 02:00", "2026-12-20 02:00"]
    assert decision.remove == ["2026-12-31 02:00"]
    assert decision.reasons["2027-01-01 02:00"] == ["weekly 2026-W53"]
    assert decision.reasons["2026-12-20 02:00"] == ["weekly 2026-W51"]


def test_monday_starts_a_new_iso_week():
    snaps = [at("2026-11-30 01:00"), at("2026-11-29 23:00")]  # Monday, Sunday
    assert decide(snaps, policy(weekly=2)).reasons == {
        "2026-11-30 01:00": ["weekly 2026-W49"], "2026-11-29 23:00": ["weekly 2026-W48"]}


@pytest.mark.parametrize(("tz", "kept"), [
    ("UTC", ["2026-11-28 10:00", "2026-11-27 23:30"]),
    ("Europe/Berlin", ["2026-11-28 10:00", "2026-11-27 12:00"]),
])
def test_days_are_bucketed_in_the_configured_timezone(tz, kept):
    # 23:30 UTC on the 27th is 00:30 on the 28th in Berlin: a different day.
    snaps = [at("2026-11-28 10:00"), at("2026-11-27 23:30"), at("2026-11-27 12:00")]
    assert decide(snaps, policy(daily=2, tz=tz)).keep == kept


def test_berlin_reason_names_the_local_day():
    decision = decide([at("2026-11-27 23:30")], policy(daily=1, tz="Europe/Berlin"))
    assert decision.reasons["2026-11-27 23:30"] == ["daily 2026-11-28"]


def test_oldest_is_kept_while_the_policy_has_room():
    snaps = [at("2026-11-03 20:00"), at("2026-11-03 02:00"), at("2026-11-02 20:00"),
             at("2026-11-02 02:00"), at("2026-11-01 20:00"), at("2026-11-01 02:00")]
    decision = decide(snaps, policy(daily=7))
    assert decision.keep == ["2026-11-03 20:00", "2026-11-02 20:00", "2026-11-01 20:00",
                             "2026-11-01 02:00"]
    assert decision.reasons["2026-11-01 02:00"] == ["oldest (daily policy has room)"]


def test_oldest_is_not_kept_when_the_policy_is_exactly_full():
    snaps = [at("2026-11-02 20:00"), at("2026-11-01 20:00"), at("2026-11-01 02:00")]
    assert decide(snaps, policy(daily=2)).remove == ["2026-11-01 02:00"]


def test_union_of_policies_with_reasons():
    snaps = [at("2026-12-01 02:00"), at("2026-11-30 02:00"), at("2026-11-15 02:00"),
             at("2026-11-14 02:00")]
    decision = decide(snaps, policy(daily=1, weekly=1, monthly=2))
    assert decision.reasons == {
        "2026-12-01 02:00": ["daily 2026-12-01", "weekly 2026-W49", "monthly 2026-12"],
        "2026-11-30 02:00": ["monthly 2026-11"],
    }
    assert decision.remove == ["2026-11-15 02:00", "2026-11-14 02:00"]


def test_a_year_of_nightly_backups_under_the_default_policy():
    snaps = days("2026-01-01", 365)
    decision = decide(snaps, Retention())  # 7 daily, 4 weekly, 12 monthly
    dailies = [f"2026-12-{d}-0200" for d in range(31, 24, -1)]
    weeklies = ["2026-12-20-0200", "2026-12-13-0200"]  # W53 and W52 (27th) are dailies
    monthlies = [f"2026-{m:02d}-{d}-0200" for m, d in
                 [(11, 30), (10, 31), (9, 30), (8, 31), (7, 31), (6, 30), (5, 31), (4, 30),
                  (3, 31), (2, 28), (1, 31)]]
    assert decision.keep == dailies + weeklies + monthlies
    assert decision.reasons["2026-12-31-0200"] == [
        "daily 2026-12-31", "weekly 2026-W53", "monthly 2026-12"]
    assert len(decision.remove) == 365 - 20


def test_all_zero_policy_is_refused():
    with pytest.raises(StorageError, match="refusing to delete every backup") as caught:
        decide(days("2026-11-01", 3), policy())
    assert caught.value.hint and caught.value.ref == "retention"


def test_all_zero_policy_is_refused_even_with_a_verified_backup():
    snaps = [at("2026-11-02 02:00", verified=True), at("2026-11-01 02:00")]
    with pytest.raises(StorageError, match="refusing"):
        decide(snaps, policy())


def test_no_snapshots_is_an_empty_decision_whatever_the_policy():
    assert decide([], policy()) == Decision()
    assert decide([], Retention()) == Decision()


def test_newest_verified_is_kept_even_when_the_policy_would_drop_it():
    snaps = [at("2026-11-03 02:00"), at("2026-11-02 02:00", verified=True),
             at("2026-11-01 02:00", verified=True)]
    decision = decide(snaps, policy(daily=1))
    assert decision.keep == ["2026-11-03 02:00", "2026-11-02 02:00"]
    assert decision.reasons["2026-11-02 02:00"] == [NEWEST_VERIFIED]
    assert decision.remove == ["2026-11-01 02:00"]


def test_newest_verified_in_the_same_day_as_a_newer_unverified():
    snaps = [at("2026-11-03 20:00"), at("2026-11-03 02:00", verified=True)]
    assert decide(snaps, policy(daily=1)).keep == ["2026-11-03 20:00", "2026-11-03 02:00"]


def test_equal_timestamps_are_ordered_by_id():
    moment = "2026-11-03 02:00"
    snaps = [at(moment, id="a"), at(moment, id="c"), at(moment, id="b")]
    assert decide(snaps, policy(daily=1)).keep == ["c"]


def test_offsets_in_input_do_not_matter_only_the_instant():
    here = at("2026-11-03T01:00:00+02:00", id="x")  # 2026-11-02 23:00 UTC
    assert decide([here], policy(daily=1)).reasons == {"x": ["daily 2026-11-02"]}


@pytest.mark.parametrize("bad", [
    [Snapshot("a", datetime(2026, 11, 1))],
    [at("2026-11-01 02:00", id="a"), at("2026-11-02 02:00", id="a")],
])
def test_naive_timestamps_and_duplicate_ids_are_rejected(bad):
    with pytest.raises(ValueError):
        decide(bad, policy(daily=1))


def test_unknown_timezone_says_what_to_use():
    with pytest.raises(StorageError, match="unknown timezone") as caught:
        decide(days("2026-11-01", 1), policy(daily=1, tz="Mars/Olympus"))
    assert "Europe/Berlin" in caught.value.hint


# -- the oracle --------------------------------------------------------------------------

def restic_apply_policy(snaps: list[Snapshot], retention: Retention) -> set[str]:
    """restic's loop, transliterated; plus our newest-verified rule."""
    zone = ZoneInfo(retention.timezone)
    ordered = sorted(snaps, key=lambda s: (s.timestamp, s.id), reverse=True)
    buckets = [
        [retention.daily, lambda t: (t.year, t.month, t.day), None],
        [retention.weekly, lambda t: t.isocalendar()[:2], None],
        [retention.monthly, lambda t: (t.year, t.month), None],
    ]
    keep: set[str] = set()
    for nr, cur in enumerate(ordered):
        keep_snap = False
        for bucket in buckets:
            if bucket[0] > 0:
                val = bucket[1](cur.timestamp.astimezone(zone))
                if val != bucket[2] or nr == len(ordered) - 1:
                    keep_snap = True
                    bucket[2] = val
                    bucket[0] -= 1
        if keep_snap:
            keep.add(cur.id)
    verified = [s for s in ordered if s.verified]
    if verified:
        keep.add(verified[0].id)
    return keep


# -- properties --------------------------------------------------------------------------

EPOCH = datetime(2025, 12, 1, tzinfo=UTC)
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Pacific/Kiritimati"]


@st.composite
def snapshot_lists(draw, min_size: int = 0, max_size: int = 40) -> list[Snapshot]:
    """Clustered times over ~14 months (across a year end and ISO week 53), some several
    per day, with unique ids."""
    dense = draw(st.booleans())
    day = st.integers(0, 40) if dense else st.integers(0, 430)
    minute = st.integers(0, 24 * 60 - 1)
    entries = draw(st.lists(st.tuples(day, minute, st.booleans()),
                            min_size=min_size, max_size=max_size))
    return [Snapshot(f"s{i:03d}", EPOCH + timedelta(days=d, minutes=m), v)
            for i, (d, m, v) in enumerate(entries)]


nonzero_policies = st.builds(
    Retention, daily=st.integers(0, 8), weekly=st.integers(0, 5), monthly=st.integers(0, 13),
    timezone=st.sampled_from(ZONES),
).filter(lambda r: r.daily + r.weekly + r.monthly > 0)

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(snapshot_lists(), nonzero_policies)
def test_matches_restic_transliteration(snaps, retention):
    assert set(decide(snaps, retention).keep) == restic_apply_policy(snaps, retention)


@FAST
@given(snapshot_lists(), nonzero_policies)
def test_keep_and_remove_partition_the_input_newest_first(snaps, retention):
    decision = decide(snaps, retention)
    assert set(decision.keep) | set(decision.remove) == {s.id for s in snaps}
    assert not set(decision.keep) & set(decision.remove)
    assert len(decision.keep) + len(decision.remove) == len(snaps)
    order = {s.id: (s.timestamp, s.id) for s in snaps}
    for ids in (decision.keep, decision.remove):
        assert ids == sorted(ids, key=order.__getitem__, reverse=True)
    assert set(decision.reasons) == set(decision.keep)
    assert all(decision.reasons.values())


@FAST
@given(snapshot_lists(), nonzero_policies)
def test_kept_count_is_bounded_by_the_budgets(snaps, retention):
    budget = retention.daily + retention.weekly + retention.monthly
    assert len(decide(snaps, retention).keep) <= budget + 1  # +1: newest verified


@FAST
@given(snapshot_lists(min_size=1), nonzero_policies)
def test_newest_and_newest_verified_are_always_kept(snaps, retention):
    keep = decide(snaps, retention).keep
    ordered = sorted(snaps, key=lambda s: (s.timestamp, s.id), reverse=True)
    assert keep[0] == ordered[0].id
    verified = [s.id for s in ordered if s.verified]
    if verified:
        assert verified[0] in keep


@FAST
@given(snapshot_lists(), nonzero_policies, st.randoms(use_true_random=False))
def test_input_order_does_not_matter(snaps, retention, rnd):
    shuffled = list(snaps)
    rnd.shuffle(shuffled)
    assert decide(shuffled, retention) == decide(snaps, retention)


@FAST
@given(snapshot_lists(), nonzero_policies)
def test_deciding_again_on_the_kept_set_keeps_all_of_it(snaps, retention):
    keep = set(decide(snaps, retention).keep)
    again = decide([s for s in snaps if s.id in keep], retention)
    assert again.remove == []


@FAST
@given(snapshot_lists(min_size=1), nonzero_policies, st.integers(1, 400), st.booleans())
def test_an_older_backup_changes_nothing_but_the_previous_oldest(snaps, retention, back, ok):
    oldest = min(snaps, key=lambda s: (s.timestamp, s.id))
    older = Snapshot("older", oldest.timestamp - timedelta(hours=back), ok)
    before = set(decide(snaps, retention).keep)
    after = set(decide([*snaps, older], retention).keep)
    for snap in snaps:
        if snap.id != oldest.id:
            assert (snap.id in before) == (snap.id in after), snap.id


@FAST
@given(snapshot_lists(), nonzero_policies, st.sampled_from(["daily", "weekly", "monthly"]))
def test_a_bigger_budget_never_keeps_less(snaps, retention, which):
    bigger = retention.model_copy(update={which: getattr(retention, which) + 1})
    assert set(decide(snaps, retention).keep) <= set(decide(snaps, bigger).keep)


@FAST
@given(snapshot_lists(), nonzero_policies)
def test_each_policy_keeps_the_newest_of_distinct_periods(snaps, retention):
    decision = decide(snaps, retention)
    zone = ZoneInfo(retention.timezone)
    label = {"daily": lambda t: t.strftime("%Y-%m-%d"), "monthly": lambda t: t.strftime("%Y-%m"),
             "weekly": lambda t: "{}-W{:02d}".format(*t.isocalendar()[:2])}
    for word, count in (("daily", retention.daily), ("weekly", retention.weekly),
                        ("monthly", retention.monthly)):
        period_keeps = [(i, r.split(" ", 1)[1]) for i, reasons in decision.reasons.items()
                        for r in reasons if r.startswith(f"{word} ")]
        periods = [p for _, p in period_keeps]
        assert len(periods) == len(set(periods))
        distinct = {label[word](s.timestamp.astimezone(zone)) for s in snaps}
        assert len(periods) == min(count, len(distinct))  # empty periods do not count
        for snap_id, period in period_keeps:
            same = [s for s in snaps if label[word](s.timestamp.astimezone(zone)) == period]
            assert max(same, key=lambda s: (s.timestamp, s.id)).id == snap_id
        room = [i for i, reasons in decision.reasons.items()
                if f"oldest ({word} policy has room)" in reasons]
        assert len(room) <= 1 and (not room or count > len(distinct))


@FAST
@given(snapshot_lists(min_size=1))
def test_all_zero_policy_always_refuses(snaps):
    with pytest.raises(StorageError):
        decide(snaps, policy())


def test_oracle_agrees_on_a_large_random_history():
    rnd = random.Random(7)
    snaps = [Snapshot(f"r{i}", EPOCH + timedelta(minutes=rnd.randrange(0, 800 * 24 * 60)),
                      rnd.random() < 0.2) for i in range(2000)]
    for retention in (Retention(), policy(daily=30, weekly=10, monthly=24, tz="Europe/Berlin")):
        assert set(decide(snaps, retention).keep) == restic_apply_policy(snaps, retention)
