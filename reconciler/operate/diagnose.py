"""``reconcile diagnose``: collect facts, run the rules, add the deep probes, resource usage and logs.

The deep probe of each running service (``health.check_service``: a login to PostgreSQL, an
AUTH and PING to the cache, the HTTP check) finds what the container's state cannot: a server
that runs but turns the spec's credentials down is ``refused`` in ``health``, so diagnose must
not call it healthy. Its issues are the ones heal acts on (``heal_rules.probe_issues``), so
``diagnose`` and ``heal`` agree; diagnose only reads (the probes log in, change nothing).

The restart counts of each run are kept in ``<state_dir>/diagnose/last.json`` so the next
run can tell a count that is *rising* (a loop in progress) from an old, stable one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from reconciler.backup import restoring
from reconciler.errors import ReconcileError
from reconciler.health import Level, ServiceHealth, check_service
from reconciler.operate import heal_rules, rules, usage
from reconciler.operate.collect import collect
from reconciler.operate.facts import Facts
from reconciler.operate.issues import ENGINE, HOST, Issue, Severity, exit_code, sort_issues
from reconciler.session import Session
from reconciler.storage.files import atomic_write

MEMORY = Path("diagnose") / "last.json"
REPORT_LOG_LINES = 20


@dataclass
class Diagnosis:
    facts: Facts
    issues: list[Issue]
    usage: dict = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return exit_code(self.issues)

    @property
    def critical(self) -> list[Issue]:
        return [i for i in self.issues if i.severity is Severity.CRITICAL]

    def report(self) -> dict:
        """The seed's shape: ``timestamp``, ``issues``, ``resource_usage``, ``logs``."""
        return {"timestamp": self.facts.now, "project": self.facts.project,
                "issues": [i.to_dict() for i in self.issues], "resource_usage": self.usage,
                "logs": failing_logs(self.facts, self.issues)}


def run(session: Session, services: list[str] | None = None, *, with_usage: bool = True,
        remember: bool = True, deep: bool = False, probes: dict | None = None) -> Diagnosis:
    """``deep`` adds an issue for each running service whose deep probe fails and that the
    rules found nothing critical about; ``probes`` ({service: ServiceHealth}) reuses probe
    results the caller already has (apply probes before it plans)."""
    check_services(session, services)
    state_dir = session.loaded.state_dir()
    facts, live = collect(session, services, load_memory(state_dir))
    found = sort_issues(rules.diagnose(facts) + interrupted_restores(state_dir, [s.name for s in facts.services]))
    if deep and facts.host.engine_reachable:
        probed = probes if probes is not None else deep_health(session, facts)
        failing = {n: r for n, r in probed.items() if r.level >= Level.CRITICAL}
        degraded = {n: _degraded_words(r, facts) for n, r in probed.items() if r.status == "degraded"}
        found = sort_issues(found + heal_rules.probe_issues(found, {n: _probe_words(r) for n, r in failing.items()})
                            + heal_rules.degraded_issues(found, {n: w for n, w in degraded.items() if w[1]}))
    found = dependencies_first(restore_first(found), {n: list(s.depends_on) for n, s in session.spec.services.items()})
    measured = _usage(session, facts, live) if with_usage else {}
    if remember and facts.host.engine_reachable:
        save_memory(session.state_dir(), facts)
    return Diagnosis(facts, found, measured)


def interrupted_restores(state_dir: Path, services: list[str]) -> list[Issue]:
    """A restore that replaced a service's data in place and stopped halfway (``restoring``):
    critical, and a cause heal never starts, restarts or recreates past."""
    issues = []
    for name in services:
        if (record := restoring.interrupted(state_dir, name)) is not None:
            issues.append(Issue(name, Severity.CRITICAL, "restore interrupted",
                                f"the restore of backup {record.get('backup_id')} started {record.get('started')} "
                                "did not finish: the data is partial", restoring.advice(name, record), restoring.RULE))
    return issues


RESTARTING_FIXES = frozenset({"container-exited", "container-paused", "healthcheck", "restart-loop",
                              "network-missing", "network-detached", "proxy-stopped", "proxy-detached",
                              heal_rules.PROBE_RULE})
"""Rules whose fix starts, restarts, unpauses, reconnects or recreates the service."""


def dependencies_first(issues: list[Issue], depends_on: dict[str, list[str]]) -> list[Issue]:
    """A service whose probe fails while a service it depends on has a critical issue is most
    likely failing because of it (an API answering 503 with its database down): its fix says
    so, rather than proposing to restart and recreate it (heal waits for the dependency too)."""
    critical = [i for i in issues if i.severity is Severity.CRITICAL]
    broken = {i.service: i.issue for i in critical}
    # "heal does" only of a dependency whose every critical issue heal acts on (QA: it was said
    # of a database at its connection limit, which heal only reports)
    left = {i.service for i in critical if heal_rules.fix_for(i) is heal_rules.FixKind.REPORT}
    out = []
    for issue in issues:
        causes = [d for d in depends_on.get(issue.service, ()) if d in broken and d != issue.service]
        if causes and issue.rule in (heal_rules.PROBE_RULE, "healthcheck"):
            named = ", ".join(f"{d} ({broken[d]})" for d in causes)
            then = (f"first; heal does, then looks at {issue.service} again" if not left.intersection(causes) else
                    f"first, as said for it (heal cannot); `reconcile heal` then looks at {issue.service} again")
            issue = replace(issue, suggested_fix=f"probably caused by {named}, which it depends on: fix that {then}")
        out.append(issue)
    return out


def restore_first(issues: list[Issue]) -> list[Issue]:
    """A service whose restore stopped halfway is never started or recreated on the data it
    left (heal and apply refuse to): the restore to run again is the only fix said for it,
    also on its other issues (a stopped container: the restore left it stopped)."""
    advice = {i.service: i.suggested_fix for i in issues if i.rule == restoring.RULE}
    return [replace(i, suggested_fix=advice[i.service])
            if i.service in advice and i.rule in RESTARTING_FIXES else i for i in issues]


def deep_health(session: Session, facts: Facts) -> dict:
    """The kind's probe of every running service (each has its own timeout); only those that
    are not healthy are kept (critical ones are issues, degraded ones warnings). A stopped
    service is the rules' business, not a probe's.
    One after another: the session's engine client and caches are not shared across threads."""
    results = [_probe(session, s.name) for s in facts.services if s.container is not None and s.container.running]
    return {r.service: r for r in results if r.level >= Level.MINOR}


def _probe(session: Session, name: str) -> ServiceHealth:
    try:
        return check_service(session, name)
    except Exception as exc:  # noqa: BLE001 - a probe that cannot run is a finding
        return ServiceHealth(name, "unreachable", Level.CRITICAL, {"error": type(exc).__name__})


def _probe_words(result: ServiceHealth) -> tuple[str, str]:
    shown = {k: v for k, v in result.details.items()
             if k in ("url", "status_code", "error", "docker_health", "state", "restarts", "exit_code")
             and v not in (None, "", 0)}
    return result.status, ", ".join(f"{k} {v}" for k, v in shown.items())


STARTING_FAILURES = 3
"""Failed runs of Docker's check (of the 5 it keeps) that make "still starting" worth a warning."""


def _degraded_words(result: ServiceHealth, facts: Facts) -> tuple[str, str]:
    """How near which limit it is; else, when Docker's own check still says starting (a service
    with no other signal) and failed again and again, what that check's last runs said."""
    status, words = _limit_words(result)
    if words or result.details.get("docker_health") != "starting":
        return status, words
    box = service.container if (service := _service(facts, result.service)) else None
    log = box.health_log if box else ()
    failed = [p for p in log if p.exit_code != 0]
    if len(failed) < STARTING_FAILURES:  # a container just started, on its way: nothing to say yet
        return status, words
    output = " ".join(failed[-1].output.split())[-rules.PROBE_OUTPUT:] or "(no output)"
    return status, (f"{heal_rules.STARTING_WORDS}: its last {len(failed)} of {len(log)} checks failed "
                    f"(exit code {failed[-1].exit_code}: {output})")


def _limit_words(result: ServiceHealth) -> tuple[str, str]:
    """A degraded probe in numbers: how near which limit it is."""
    d = result.details
    parts = []
    if d.get("max_connections"):
        parts.append(f"{d.get('connections')} of {d['max_connections']} connections in use")
    if d.get("maxmemory"):
        parts.append(f"memory {d.get('used_memory')} of {d['maxmemory']} bytes"
                     + (f" (policy {d['maxmemory_policy']})" if d.get("maxmemory_policy") else ""))
    return result.status, "; ".join(parts)  # none: degraded for another reason (a health check starting)


def check_services(session: Session, services: list[str] | None) -> None:
    unknown = sorted(set(services or ()) - set(session.spec.services))
    if unknown:
        raise ReconcileError(f"unknown service {', '.join(unknown)}", ref="diagnose.unknown-service",
                             hint=f"services: {', '.join(sorted(session.spec.services))}")


def _usage(session: Session, facts: Facts, live: dict[str, str]) -> dict:
    if not facts.host.engine_reachable:
        return usage.host_only(facts.host.disks)
    running = {n: cid for n, cid in live.items()
               if (s := _service(facts, n)) and s.container and s.container.running}
    mounts = {s.name: s.mounts for s in facts.services}
    return usage.resource_usage(session.client, running, facts.host.disks, mounts)


def _service(facts: Facts, name: str):
    return next((s for s in facts.services if s.name == name), None)


def failing_logs(facts: Facts, issues: list[Issue]) -> dict[str, list[str]]:
    """Last log lines (already redacted) of each service with a warning or critical issue. A
    service without a container has none to show: "last log lines: (no output)" would say its
    container ran and printed nothing."""
    failing = {i.service for i in issues if i.severity is not Severity.INFO} - {HOST, ENGINE}
    return {s.name: list(s.logs[-REPORT_LOG_LINES:]) for s in facts.services
            if s.name in failing and s.container is not None}


def load_memory(state_dir: Path) -> dict:
    try:
        data = json.loads((state_dir / MEMORY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_memory(state_dir: Path, facts: Facts) -> None:
    """Restart counts per live container; written atomically so a killed run cannot tear it."""
    data = {"at": facts.now, "services": {
        s.name: {"id": s.container.id, "restart_count": s.container.restart_count, "at": facts.now}
        for s in facts.services if s.container is not None}}
    path = state_dir / MEMORY
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    previous = load_memory(state_dir).get("services") or {}
    data["services"] = {**previous, **data["services"]}  # a run on some services keeps the rest
    with atomic_write(path) as handle:  # 0600, like every file under the state folder
        handle.write((json.dumps(data, indent=2) + "\n").encode())
