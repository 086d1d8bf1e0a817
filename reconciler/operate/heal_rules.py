"""What heal does about each issue: pure decisions from diagnose's issues to fixes, no I/O.

Heal only does what cannot lose data and needs no change of the spec: start what is stopped,
unpause what is paused (the same processes go on: nothing is restarted), restart what is
unhealthy, recreate what loops or stays unhealthy (through apply's plan, so a stateful
service is backed up first, and never from an older backup), and recreate a deleted network.
Everything whose real fix is elsewhere — another process on a port, memory, disk space, a
client that takes every connection, the spec itself — is
*reported* with advice: restarting a service into the same OOM kill or the same full disk
only hides the cause.

One fix per service: its issues often describe one fault from two sides (stopped *and* its
network gone), so the strongest fix answers all of them, and a reported critical issue on
the same service blocks the rest (starting a container whose port is taken cannot work).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from reconciler.backup import restoring
from reconciler.observe.models import Observed, Role
from reconciler.operate.facts import Facts
from reconciler.operate.issues import ENGINE, HOST, Issue, Severity
from reconciler.plan import leftovers, safety
from reconciler.plan.actions import ActionKind, Plan
from reconciler.plan.networks import WHOLE_PLAN
from reconciler.spec.models import Spec
from reconciler.spec.normalise import network_name, role_from_name

PROBE_RULE = "probe-failing"
CONNECTIONS_RULE = "connection-limit"
MEMORY_RULE = "memory-full"
REFUSED_RULE = "credentials-refused"
RESTORE_RULE = restoring.RULE


class FixKind(StrEnum):
    UNPAUSE = "unpause"
    START = "start"
    RESTART = "restart"
    RECREATE = "recreate"
    RECREATE_NETWORK = "recreate-network"
    REPORT = "report"


class Result(StrEnum):
    FIXED = "fixed"
    FAILED = "failed"
    REPORTED = "reported"


FIX_OF_RULE: dict[str, FixKind] = {
    "container-exited": FixKind.START,
    "healthcheck": FixKind.RESTART,
    PROBE_RULE: FixKind.RESTART,
    "restart-loop": FixKind.RECREATE,
    "network-missing": FixKind.RECREATE_NETWORK,
    "network-detached": FixKind.RECREATE_NETWORK,  # creates nothing: the network is there, it rejoins
    # a paused container: unpaused, as apply does (``apply.heal.unpause``); restarted only if
    # it is still unhealthy then
    "container-paused": FixKind.UNPAUSE,
    "proxy-paused": FixKind.UNPAUSE,  # its proxy, the same way (QA: reported only, "docker unpause" it)
    # a blue-green service's proxy: reconnecting the service rejoins its proxy too and starts it
    "proxy-stopped": FixKind.RECREATE_NETWORK,
    "proxy-detached": FixKind.RECREATE_NETWORK,
}
"""Rules heal acts on; every other rule (and every non-critical issue) is reported."""

ATTEMPTS: dict[FixKind, int] = {FixKind.UNPAUSE: 1, FixKind.START: 3, FixKind.RESTART: 1, FixKind.RECREATE: 3,
                                FixKind.RECREATE_NETWORK: 3}
"""A restart is tried once: what a second restart could do, the recreate after it does better."""

ESCALATION: dict[FixKind, FixKind] = {FixKind.UNPAUSE: FixKind.RESTART, FixKind.RESTART: FixKind.RECREATE,
                                      FixKind.RECREATE_NETWORK: FixKind.RECREATE}
"""The next fix when one fails: still unhealthy once unpaused (a restart), after a restart, or a container that cannot
be reconnected to its recreated network, gets a new container (with a backup first)."""

STRENGTH = (FixKind.UNPAUSE, FixKind.START, FixKind.RESTART, FixKind.RECREATE, FixKind.RECREATE_NETWORK)
"""Weakest first. Reconnecting to a recreated network also starts the container, and falls
back to a recreate, so it answers every other issue of the same service."""

BLOCKING_RULES = frozenset({"port-conflict", "oom-killed", "config-error", "volume-full",
                            "mount-missing", "mount-not-writable", REFUSED_RULE, RESTORE_RULE, CONNECTIONS_RULE,
                            MEMORY_RULE})
"""Critical causes that no start or recreate can get past: they block a service's fixes."""

_ADVICE = {
    "oom-killed": "memory: heal does not restart a service into the same OOM kill; {fix}",
    "volume-full": "disk: heal never deletes data to make room; {fix}",
    "disk-space": "disk: heal never deletes data to make room; {fix}",
    "config-error": "configuration: the fix is in the spec or its files, not in a restart; {fix}",
    REFUSED_RULE: "heal never restarts or recreates a running server for what it turns down; {fix}",
    RESTORE_RULE: "heal never starts, restarts or recreates a service whose data a restore left partial; {fix}",
    "restart-loop": "it restarted, but runs now; if it goes on: {fix}",
}


@dataclass(frozen=True)
class Fix:
    """What heal does for one service, and the issues it answers (one result line each).

    ``note`` says why a ``report`` is not fixed (advice, or the issue that blocks it);
    ``after`` names its ``depends_on`` services that are broken too: it is judged after them,
    as an app whose database is down is usually fine again once the database is."""

    service: str
    kind: FixKind
    issues: tuple[Issue, ...]
    note: str = ""
    after: tuple[str, ...] = ()

    @property
    def rules(self) -> frozenset[str]:
        return frozenset(i.rule for i in self.issues)


def fix_for(issue: Issue) -> FixKind:
    """The fix of one issue: only critical issues of a service are acted on."""
    if issue.severity is not Severity.CRITICAL or issue.service in (HOST, ENGINE):
        return FixKind.REPORT
    return FIX_OF_RULE.get(issue.rule, FixKind.REPORT)


def plan_fixes(issues: Iterable[Issue], facts: Facts | None = None, order: Collection[str] = (),
               depends_on: Mapping[str, Collection[str]] | None = None) -> list[Fix]:
    """One fix per service with fixable issues, and one report per other issue.

    Host and engine issues come first (they explain the rest), then services in ``order``
    (dependencies first, so a database is healed before the app that waits for it).
    """
    groups: dict[str, list[Issue]] = {}
    for issue in issues:
        groups.setdefault(issue.service, []).append(issue)
    broken = {s for s, found in groups.items() if any(i.severity is Severity.CRITICAL for i in found)}
    rank = {name: i for i, name in enumerate(order)}
    names = sorted(groups, key=lambda s: (s not in (ENGINE, HOST), rank.get(s, len(rank)), s))
    out: list[Fix] = []
    for service in names:
        after = tuple(sorted(d for d in (depends_on or {}).get(service, ()) if d in broken and d != service))
        out.extend(replace(f, after=after) if f.kind is not FixKind.REPORT else f
                   for f in _service_fixes(service, groups[service], facts))
    return out


def _service_fixes(service: str, issues: list[Issue], facts: Facts | None) -> list[Fix]:
    reported = [i for i in issues if fix_for(i) is FixKind.REPORT]
    out = [Fix(service, FixKind.REPORT, (i,), advice(i, facts)) for i in reported]
    fixable = [i for i in issues if fix_for(i) is not FixKind.REPORT]
    if not fixable:
        return out
    blocker = next((i for i in reported if i.rule in BLOCKING_RULES and i.severity is Severity.CRITICAL),
                   None)
    if blocker is not None:
        return out + [Fix(service, FixKind.REPORT, tuple(fixable),
                          f"not attempted: {blocker.issue} must be solved first (see above)")]
    kind = max((fix_for(i) for i in fixable), key=STRENGTH.index)
    return out + [Fix(service, kind, tuple(fixable))]


def advice(issue: Issue, facts: Facts | None = None) -> str:
    """What a person should do about an issue heal does not fix."""
    if issue.rule == "port-conflict":
        return _port_advice(issue, facts)
    if issue.rule in _ADVICE and (issue.rule != "restart-loop" or issue.severity is not Severity.CRITICAL):
        return _ADVICE[issue.rule].format(fix=issue.suggested_fix)
    return issue.suggested_fix


def _port_advice(issue: Issue, facts: Facts | None) -> str:
    """``port 5432 is held by pid 1234 (python3 …): stop it, then run reconcile heal``."""
    service = next((s for s in (facts.services if facts else ()) if s.name == issue.service), None)
    holders = [h for h in (facts.host.port_holders if facts else ()) if service and h.port in service.host_ports]
    tail = ": stop it, then run `reconcile heal` (reconcile never kills another process)"
    if not holders:
        return f"{issue.details}{tail}"
    named = "; ".join(f"port {h.port} is held by " + (f"pid {h.pid} ({h.command})" if h.pid else
                      "another process (pid unknown: run as root to name it)") for h in holders)
    return named + tail


def probe_issues(issues: Iterable[Issue], probes: dict[str, tuple[str, str]]) -> list[Issue]:
    """Issues for services whose deep probe failed (``{service: (status, details)}``) and that
    diagnose found nothing critical about: Docker's own health check may not exist or may
    not have noticed yet (an HTTP server answering 503 is running, as far as Docker knows)."""
    explained = {i.service for i in issues if i.severity is Severity.CRITICAL}
    return [_refused(name, details) if status == "refused" else
            _full(name, details) if _CONNECTIONS_FULL.search(details or "") else
            _memory_full(name, details) if MEMORY_FULL_WORDS in (details or "") else
            Issue(name, Severity.CRITICAL, "health probe failing", f"{status}: {details}" if details else status,
                  "heal restarts it once, then recreates it (with a backup first when it holds data)",
                  PROBE_RULE)
            for name, (status, details) in sorted(probes.items()) if name not in explained]


# PostgreSQL's words when every connection slot is taken (SQLSTATE 53300), and Redis's.
_CONNECTIONS_FULL = re.compile(r"too many clients|remaining connection slots are reserved|"
                               r"max number of clients reached", re.IGNORECASE)


MEMORY_FULL_WORDS = "writes are refused"  # engines.redis.MEMORY_FULL


def _memory_full(name: str, details: str) -> Issue:
    """A cache at maxmemory that may evict nothing refuses every write. A restart empties it
    (or, persisted, loads it full again): reported, with the settings that fix it."""
    return Issue(name, Severity.CRITICAL, "memory full", details,
                 "raise maxmemory, or let it evict (--maxmemory-policy allkeys-lru for a cache) in the "
                 "service's command, then `reconcile apply`; or delete keys it no longer needs. Heal does not "
                 "restart it for this (that would drop its data, or load it full again)", MEMORY_RULE)


def degraded_issues(issues: Iterable[Issue], probes: dict[str, tuple[str, str]]) -> list[Issue]:
    """A warning for each service whose probe says degraded (it works, near a limit), unless a
    critical issue already speaks for it: health called it "minor" and diagnose said nothing."""
    explained = {i.service for i in issues if i.severity is Severity.CRITICAL}
    return [_degraded(name, status, details)
            for name, (status, details) in sorted(probes.items()) if name not in explained]


STARTING_WORDS = "Docker's health check still says starting"
_NEAR_ADVICE = {
    "connections in use": "PostgreSQL near max_connections: look for a client that leaks connections "
                          "(pg_stat_activity) or raise max_connections",
    "memory ": "a cache near maxmemory: raise it or let it evict (--maxmemory-policy allkeys-lru)",
}


def _degraded(name: str, status: str, details: str) -> Issue:
    """Advice for the limit it is near only (a cache was told about PostgreSQL's connections);
    a service whose only signal is Docker's check, still starting, says so (QA: `health` called
    it degraded, exit 1, and diagnose said nothing)."""
    if details.startswith(STARTING_WORDS):
        return Issue(name, Severity.WARNING, "health check still starting", details,
                     "Docker counts no failure until the image's start period ends: if it does not turn healthy, "
                     "read its logs and its check's output (docker inspect: State.Health); heal does not restart "
                     "it for this",
                     "probe-starting")
    advice = "; ".join(text for key, text in _NEAR_ADVICE.items() if key in details)
    return Issue(name, Severity.WARNING, "near a limit", details or status,
                 advice or "; ".join(_NEAR_ADVICE.values()), "probe-degraded")


def _full(name: str, details: str) -> Issue:
    """The server answers, but every connection slot is taken: a restart would drop every
    client (and the transactions under way) and the leaking client would fill it again.
    Reported, with where to look."""
    return Issue(name, Severity.CRITICAL, "connection limit reached", details,
                 "a client holds too many connections: find it (PostgreSQL: SELECT usename, application_name, "
                 "client_addr, state, count(*) FROM pg_stat_activity GROUP BY 1, 2, 3, 4), end its idle "
                 "connections or fix its pool size, or raise max_connections; heal does not restart a server "
                 "for this (it would drop every client)", CONNECTIONS_RULE)


def _refused(name: str, details: str) -> Issue:
    """The server runs and answers, but turns down the spec's credentials or database. No
    restart changes that, and a recreate would put the last backup in place of newer data:
    reported only."""
    if "not currently accepting connections" in details:
        return Issue(name, Severity.CRITICAL, "database closed", details,
                     "a database refuses connections (ALTER DATABASE … ALLOW_CONNECTIONS false), as a "
                     "restore killed halfway leaves it: run `reconcile restore` again, which reopens it, or "
                     "reopen it by hand (ALTER DATABASE name ALLOW_CONNECTIONS true)", REFUSED_RULE)
    if "does not exist" in details and "database" in details:
        return Issue(name, Severity.CRITICAL, "database missing", details,
                     "the server lacks a database the spec names (backup.databases, POSTGRES_DB): "
                     "fix the spec, or bring a dropped database back with `reconcile restore`",
                     REFUSED_RULE)
    return Issue(name, Severity.CRITICAL, "credentials refused", details,
                 "make the spec's password the one the server has (a PostgreSQL data folder keeps "
                 "the password it was made with: POSTGRES_PASSWORD only sets it the first time), "
                 "then run `reconcile health`", REFUSED_RULE)


# -- the outcome ----------------------------------------------------------------------------

@dataclass(frozen=True)
class IssueResult:
    """One line of heal's report: an issue, what was done about it, and how it ended."""

    service: str
    issue: str
    severity: Severity
    rule: str
    action: str
    attempts: int
    result: Result
    details: str

    def to_dict(self) -> dict:
        return {"service": self.service, "issue": self.issue, "severity": self.severity.value,
                "rule": self.rule, "action": self.action, "attempts": self.attempts,
                "result": self.result.value, "details": self.details}


def results_of(fix: Fix, result: Result, action: str, attempts: int, details: str) -> list[IssueResult]:
    return [IssueResult(i.service, i.issue, i.severity, i.rule, action, attempts, result, details)
            for i in fix.issues]


def reported(fix: Fix) -> list[IssueResult]:
    return results_of(fix, Result.REPORTED, FixKind.REPORT.value, 0, fix.note)


def exit_code(results: Iterable[IssueResult]) -> int:
    """0 all fixed or nothing to do; 1 only non-critical issues remain; 2 a critical one does.

    Info-level issues never count: they are context, not problems."""
    left = [r for r in results if r.result is not Result.FIXED and r.severity is not Severity.INFO]
    if any(r.severity is Severity.CRITICAL for r in left):
        return 2
    return 1 if left else 0


def status(code: int) -> str:
    return {0: "ok", 1: "warning", 2: "critical"}[code]


# -- plans: the part a recreate needs, the part heal already did ------------------------------------------------------

def subplan(plan: Plan, spec: Spec, services: Collection[str]) -> Plan:
    """The actions of a full plan that concern ``services``: their networks and volumes, the
    leftovers of their interrupted swaps, and their own group (backup → recreate → verify).

    Heal recreates one service; anything else the full plan would change (a spec edit not yet
    applied to another service) is left to ``reconcile apply``. Dependencies on dropped
    actions (another service's last step) are dropped too; the executor still checks each
    ``depends_on`` condition of the spec before it starts a container. So is a network not as the
    spec says that the services are not on (``networks.WHOLE_PLAN``: it stops a whole apply, not
    a fix elsewhere).
    """
    wanted = set(services)
    networks = {n for s in wanted for n in spec.services[s].networks}
    volumes = {m.source for s in wanted for m in spec.services[s].volumes if not m.is_host_path}
    kept = _keep(plan, [a for a in plan.actions if _concerns(a, wanted, networks, volumes, spec.project)])
    return replace(kept, blocking=tuple(b for b in plan.blocking if b.ref not in WHOLE_PLAN or b.resource in networks))


def without_done(plan: Plan, observed: Observed, spec: Spec) -> Plan:
    """The plan minus what heal has just done in place: the starts of containers that run
    now, the networks that exist now, and the reconnections of containers that are on them.
    Used instead of planning again, so a saved plan is never swapped for a new one (which
    could carry spec changes nobody approved)."""
    def done(action) -> bool:
        if action.kind is ActionKind.START:
            live = leftovers.live(observed, action.resource)
            return live is not None and live.role is Role.CURRENT and live.running
        if action.kind is ActionKind.CREATE_NETWORK:
            return observed.network(network_name(spec, action.resource)) is not None
        if action.kind is ActionKind.UPDATE and all(c.field == "networks" for c in action.changes):
            live = leftovers.live(observed, action.resource)
            wanted = [network_name(spec, n) for n in spec.services[action.resource].networks]
            return live is not None and all(n in live.networks and observed.network(n) for n in wanted)
        return False

    return _keep(plan, [a for a in plan.actions if not done(a)])


def _keep(plan: Plan, kept: list) -> Plan:
    """``plan`` with only ``kept``, minus dependencies on the actions left out; checked."""
    ids = {a.id for a in kept}
    trimmed = tuple(replace(a, depends_on=tuple(d for d in a.depends_on if d in ids)) for a in kept)
    result = replace(plan, actions=trimmed)
    safety.check(result)
    return result


def _concerns(action, services: set[str], networks: set[str], volumes: set[str], project: str) -> bool:
    if action.kind is ActionKind.CREATE_NETWORK:
        return action.resource in networks
    if action.kind is ActionKind.CREATE_VOLUME:
        return action.resource in volumes
    if action.resource in services:
        return True
    return action.kind is ActionKind.REMOVE and any(
        role_from_name(action.resource, project, s) in ("candidate", "previous") for s in services)
