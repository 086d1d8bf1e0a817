"""Which backups to keep: grandfather-father-son with restic's ``forget`` semantics.

Pure: no I/O, no clock. The same list of snapshots and the same policy always give the
same decision, which is what makes ``prune --dry-run`` trustworthy and the rules
testable with hypothesis.

The rules, as restic's ``ApplyPolicy`` (``--keep-daily/--keep-weekly/--keep-monthly``):

* snapshots are walked newest first (ties broken by id, so input order never matters);
* each policy keeps the first snapshot it meets in every new bucket (calendar day, ISO
  year-week, year-month, in the configured timezone) while it has budget left, so the
  newest backup of each period is kept and periods without a backup do not count;
* a policy that still has budget when it reaches the oldest snapshot keeps that too
  (restic >= 0.17), which stretches the history while the policy is not yet full;
* the union over policies is kept.

Two safety rules on top: the newest verified snapshot is always kept, and a decision
that would delete every snapshot is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from reconciler.errors import StorageError
from reconciler.spec.models import Retention

NEWEST_VERIFIED = "newest verified"


@dataclass(frozen=True)
class Snapshot:
    """One backup of one service: its id and when it was taken (from metadata, aware)."""

    id: str
    timestamp: datetime
    verified: bool = False


@dataclass(frozen=True)
class Decision:
    """``keep`` and ``remove`` are newest first; ``reasons`` explains every kept id."""

    keep: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    reasons: dict[str, list[str]] = field(default_factory=dict)


def _day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")


def _iso_week(moment: datetime) -> str:
    year, week, _ = moment.isocalendar()
    return f"{year}-W{week:02d}"


def _month(moment: datetime) -> str:
    return moment.strftime("%Y-%m")


class Period(Enum):
    """A retention policy's calendar bucket; the value is the word used in reasons."""

    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"

    def bucket(self, local_time: datetime) -> str:
        return _BUCKETERS[self](local_time)


_BUCKETERS: dict[Period, Callable[[datetime], str]] = {
    Period.DAILY: _day, Period.WEEKLY: _iso_week, Period.MONTHLY: _month,
}


def budgets(retention: Retention) -> list[tuple[Period, int]]:
    """The policies that keep anything, in restic's order."""
    counts = [(Period.DAILY, retention.daily), (Period.WEEKLY, retention.weekly),
              (Period.MONTHLY, retention.monthly)]
    return [(period, count) for period, count in counts if count > 0]


def zone_of(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise StorageError(f"unknown timezone {name!r} in backup.retention.timezone",
                           hint="use an IANA name such as UTC or Europe/Berlin") from None


def newest_first(snapshots: Iterable[Snapshot]) -> list[Snapshot]:
    """Newest first; equal timestamps ordered by id so the result ignores input order."""
    ordered = list(snapshots)
    for snap in ordered:
        if snap.timestamp.tzinfo is None or snap.timestamp.utcoffset() is None:
            raise ValueError(f"snapshot {snap.id}: timestamp must be timezone-aware")
    ids = [snap.id for snap in ordered]
    if len(set(ids)) != len(ids):
        raise ValueError("snapshot ids must be unique")
    return sorted(ordered, key=lambda snap: (snap.timestamp, snap.id), reverse=True)


def apply_policy(ordered: Sequence[Snapshot], period: Period, budget: int,
                 zone: ZoneInfo) -> dict[str, str]:
    """One policy's keeps over snapshots sorted newest first: ``{id: reason}``."""
    kept: dict[str, str] = {}
    last_bucket: str | None = None
    for index, snap in enumerate(ordered):
        if budget <= 0:
            break
        bucket = period.bucket(snap.timestamp.astimezone(zone))
        if bucket != last_bucket:
            kept[snap.id] = f"{period.value} {bucket}"
        elif index == len(ordered) - 1:
            kept[snap.id] = f"oldest ({period.value} policy has room)"
        else:
            continue
        last_bucket = bucket
        budget -= 1
    return kept


def decide(snapshots: Iterable[Snapshot], retention: Retention) -> Decision:
    """Keep/remove for one service's snapshots under ``retention``.

    Raises StorageError (ref ``retention``) rather than return a decision that deletes
    every backup: an all-zero policy is refused outright, because it is a configuration
    mistake far more often than a wish (restic treats an empty policy as "keep all").
    """
    ordered = newest_first(snapshots)
    zone = zone_of(retention.timezone)
    if not ordered:
        return Decision()
    policies = budgets(retention)
    if not policies:
        raise _refuse("the retention policy keeps nothing (daily, weekly and monthly are 0)")
    reasons: dict[str, list[str]] = {snap.id: [] for snap in ordered}
    for period, budget in policies:
        for snap_id, reason in apply_policy(ordered, period, budget, zone).items():
            reasons[snap_id].append(reason)
    verified = next((snap for snap in ordered if snap.verified), None)
    if verified is not None:
        reasons[verified.id].append(NEWEST_VERIFIED)
    keep = [snap.id for snap in ordered if reasons[snap.id]]
    if not keep:
        raise _refuse("the decision would remove every backup")
    remove = [snap.id for snap in ordered if not reasons[snap.id]]
    return Decision(keep=keep, remove=remove,
                    reasons={snap_id: reasons[snap_id] for snap_id in keep})


def _refuse(why: str) -> StorageError:
    return StorageError(f"refusing to delete every backup: {why}",
                        hint="set backup.retention.daily/weekly/monthly above 0; to drop "
                             "all backups on purpose, delete them by hand",
                        ref="retention")
