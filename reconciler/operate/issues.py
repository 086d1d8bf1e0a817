"""An issue diagnose found: who, how bad, what, the evidence, and what to do about it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

HOST = "host"
ENGINE = "engine"


class Severity(StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return {"critical": 2, "warning": 1, "info": 0}[self.value]


@dataclass(frozen=True)
class Issue:
    """One finding in the seed's shape; ``rule`` names the rule that made it (stable, for tests
    and for dashboards that group by cause)."""

    service: str
    severity: Severity
    issue: str
    details: str
    suggested_fix: str
    rule: str

    def to_dict(self) -> dict:
        return {"service": self.service, "severity": self.severity.value, "issue": self.issue,
                "details": self.details, "suggested_fix": self.suggested_fix, "rule": self.rule}


def exit_code(issues: list[Issue]) -> int:
    """0 nothing (or only info), 1 warnings only, 2 any critical."""
    worst = max((i.severity.rank for i in issues), default=0)
    return worst


def sort_issues(issues: list[Issue]) -> list[Issue]:
    """Worst first, then by service, so the top line is what to fix first."""
    return sorted(issues, key=lambda i: (-i.severity.rank, i.service, i.rule))
