"""Heal's thin executor: one small function per fix kind, each tried up to ``ATTEMPTS`` times
with exponential backoff, every attempt said (run log and screen), every success re-checked.

The decisions are in ``heal_rules``; here is only how. A fix counts as done when the
service's health probe passes *and* a fresh diagnose of it no longer finds the issues the
fix was for: a container that starts and dies a second later must not count as fixed.

Recreating goes through apply's plan and executor (``recreate``, given by the caller), so
backup-before-destroy, the journal and rollback hold exactly as in ``reconcile apply``. When
the caller is apply itself, ``recreate`` is None: the service is handed back for apply's
own plan instead (``FixOutcome.pending``).

Waits: ``RECONCILE_HEAL_BACKOFF`` seconds before the second attempt, twice that before the
third (default 2 s; tests set 0.1).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from reconciler import dockerio
from reconciler.apply import gate
from reconciler.apply.networks import ensure_networks, rejoin
from reconciler.errors import CriticalError, ReconcileError
from reconciler.operate.heal_rules import (
    ATTEMPTS,
    ESCALATION,
    PROBE_RULE,
    Fix,
    FixKind,
    Result,
    fix_for,
)
from reconciler.session import Session
from reconciler.spec.normalise import (
    container_name,
    proxy_name,
)

BACKOFF_ENV = "RECONCILE_HEAL_BACKOFF"
DEFAULT_BACKOFF_S = 2.0
LONGEST_WAIT_FACTOR = 15
RECOVERY_WAIT = 30.0  # seconds a dependent may take to be healthy again once its dependencies are
ROLLED_BACK = "apply.rolled-back"

Say = Callable[[str, str], None]
Recreate = Callable[[Fix, str, Callable[[], None]], str]
"""``recreate(fix, reason, stop_loop)``: ``stop_loop`` is called once the recreate will run."""


class HealError(ReconcileError):
    ref = "heal"


class LeftToOperator(HealError):
    """A fix heal will not make unattended, because it would lose data (putting an older
    backup in place of a service's live data): reported, with the command that makes it after
    a person has looked. Never retried, never escalated."""

    ref = "heal.left-to-operator"


@dataclass(frozen=True)
class FixOutcome:
    result: Result
    action: str
    attempts: int
    details: str
    pending: bool = False


def backoff_from(environ: Mapping[str, str] | None = None) -> float:
    raw = (os.environ if environ is None else environ).get(BACKOFF_ENV, "")
    try:
        return max(0.0, float(raw)) if raw.strip() else DEFAULT_BACKOFF_S
    except ValueError:
        return DEFAULT_BACKOFF_S


@dataclass
class Healer:
    """Runs fixes for one session. ``say(service, message)`` reports each step."""

    session: Session
    say: Say
    recreate: Recreate | None = None
    backoff: float = DEFAULT_BACKOFF_S

    def run(self, fix: Fix) -> FixOutcome:
        """The fix, then its escalation if it fails (restart → recreate); never raises for a
        failed fix, only for an interrupt."""
        waited = self._after_dependencies(fix)
        if waited is not None:
            return waited
        kind, tried, attempts, detail = fix.kind, [], 0, ""
        while True:
            tried.append(kind.value)
            if kind is FixKind.RECREATE and self.recreate is None:
                stop_loop(self, fix)
                return FixOutcome(Result.FAILED, " → ".join(tried), attempts,
                                  recreate_reason(fix, tried[:-1]), pending=True)
            try:
                ok, count, detail, final = self._attempts(fix, kind, tried[:-1])
            except LeftToOperator as left:
                self.say(fix.service, f"{fix.service}: not {kind.value}d: {left.message}")
                return FixOutcome(Result.REPORTED, " → ".join(tried), attempts,
                                  f"{left.message}; {left.hint}")
            attempts += count
            if ok:
                return FixOutcome(Result.FIXED, " → ".join(tried), attempts, detail)
            following = None if final else ESCALATION.get(kind)
            if following is None:
                return FixOutcome(Result.FAILED, " → ".join(tried), attempts, detail)
            self.say(fix.service, escalation_words(self.session, fix.service, kind))
            kind = following

    def _after_dependencies(self, fix: Fix) -> FixOutcome | None:
        """A service whose dependencies are not healthy is not touched: a restart or recreate
        cannot help it (a recreate is refused while they are down), and it usually recovers
        with them. Every dependency is looked at, also those a heal of this service alone did
        not diagnose. One whose dependencies were broken and are healed is looked at again
        first, over one health-check interval: Docker's own verdict lags until its next check,
        and a restart on it alone dropped requests the service was answering again (QA)."""
        if fix.after and symptoms_only(fix) and healthy(self.session, fix.service):
            self.say(fix.service, f"{fix.service} is healthy again with {', '.join(fix.after)}")
            return FixOutcome(Result.FIXED, "none", 0, f"healthy again once {', '.join(fix.after)} was healed")
        waiting = [d for d in self.session.spec.services[fix.service].depends_on if not healthy(self.session, d)]
        if waiting:
            # not "heal that first": what keeps a dependency down may be nothing heal fixes (QA)
            one = len(waiting) == 1
            words = (f"not attempted: it depends on {', '.join(waiting)}, which {'is' if one else 'are'} not healthy: "
                     f"fix {'that' if one else 'those'} first (`reconcile heal {' '.join(waiting)}` fixes what it can "
                     f"and says how to fix the rest), then heal {fix.service} again")
            self.say(fix.service, f"{fix.service}: {words}")
            return FixOutcome(Result.REPORTED, "wait", 0, words)
        if fix.after and symptoms_only(fix) and self._recovers(fix.service):
            self.say(fix.service, f"{fix.service} is healthy again with {', '.join(fix.after)}")
            return FixOutcome(Result.FIXED, "none", 0, f"healthy again once {', '.join(fix.after)} was healed")
        return None

    def _recovers(self, service: str) -> bool:
        """Healthy within one health-check interval of the service (at most ``RECOVERY_WAIT``)."""
        interval = float(self.session.spec.services[service].health.interval)
        deadline = time.monotonic() + min(RECOVERY_WAIT, interval + 1.0)
        while True:
            if healthy(self.session, service):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.5)

    def _attempts(self, fix: Fix, kind: FixKind, before: list[str]) -> tuple[bool, int, str, bool]:
        limit = ATTEMPTS[kind]
        retrying = Retrying(
            stop=stop_after_attempt(limit), reraise=True, retry=retry_if_exception(_worth_retrying),
            wait=wait_exponential(multiplier=self.backoff, max=self.backoff * LONGEST_WAIT_FACTOR),
            before_sleep=lambda state: self.say(
                fix.service, f"waiting {state.next_action.sleep:.1f}s before attempt "
                             f"{state.attempt_number + 1}/{limit}"))
        number = 0
        try:
            for attempt in retrying:
                with attempt:
                    number = attempt.retry_state.attempt_number
                    detail = self._once(fix, kind, number, limit, before)
        except LeftToOperator:
            raise
        except Exception as exc:  # noqa: BLE001 - a failed fix is a result, not a crash
            return False, number, _text(exc), not _worth_retrying(exc)
        return True, number, detail, False

    def _once(self, fix: Fix, kind: FixKind, number: int, limit: int, before: list[str]) -> str:
        self.say(fix.service, attempt_words(fix, kind, number, limit))
        try:
            detail = ACTIONS[kind](self, fix, before)
            recheck(self.session, fix)
        except Exception as exc:
            self.say(fix.service, f"attempt {number}/{limit} failed: {_text(exc)}")
            raise
        self.say(fix.service, f"{fix.service} is healthy again: {detail}")
        return detail

    def container(self, service: str) -> str:
        return container_name(self.session.spec, service)

    def wait_ready(self, service: str) -> None:
        gate.wait_ready(self.session, service, self.container(service), gate.timeout_for(self.session, service))


SYMPTOM_RULES = frozenset({PROBE_RULE, "healthcheck", "restart-loop"})
"""Issues a broken dependency explains (an app failing its checks while its database is down):
healthy once the dependency is, they are gone. A paused or stopped container, or one cut off
its network, stays so whatever its dependencies do."""


def symptoms_only(fix: Fix) -> bool:
    """Only then may "healthy again with its dependencies" stand for the fix: a health probe can
    still pass on a container cut off its network (a worker's heartbeat is a few seconds old),
    and heal called it fixed without reconnecting it (QA)."""
    return fix.rules <= SYMPTOM_RULES


def healthy(session: Session, service: str) -> bool:
    from reconciler.health import Level, check_service

    try:
        return check_service(session, service).level is Level.HEALTHY
    except Exception:  # noqa: BLE001 - a probe that cannot run means not healthy
        return False


def _worth_retrying(exc: BaseException) -> bool:
    """Not after a failed rollback (a person must act), nor after a recreate that was rolled
    back: a brand-new container failing too means the cause is in the spec, the image or
    the data, and another try would only take another backup."""
    if not isinstance(exc, Exception) or isinstance(exc, CriticalError | LeftToOperator):
        return False  # LeftToOperator: QA saw it tried 3 times, each a stop and a start of the crashing server
    return getattr(exc, "ref", "") != ROLLED_BACK


def _text(exc: BaseException) -> str:
    if isinstance(exc, ReconcileError):
        return exc.message + (f" ({exc.hint})" if isinstance(exc, CriticalError) and exc.hint else "")
    return f"{type(exc).__name__}: {exc}"


# -- words ----------------------------------------------------------------------------------

def attempt_words(fix: Fix, kind: FixKind, number: int, limit: int) -> str:
    first = next((i for i in fix.issues if fix_for(i) is kind), fix.issues[0])
    if kind is FixKind.RESTART:
        return f"{fix.service} is unhealthy ({first.issue}: {_short(first.details)}): restarting it once"
    rejoin = ("recreating its network, reconnecting and starting it" if "network-missing" in fix.rules else
              "starting its proxy and reconnecting it" if fix.rules & {"proxy-stopped", "proxy-detached"} else
              "reconnecting it to its networks and starting it")
    verb = {FixKind.UNPAUSE: "unpausing it (nothing is restarted)", FixKind.START: "starting it",
            FixKind.RECREATE: "recreating it through apply's plan", FixKind.RECREATE_NETWORK: rejoin}[kind]
    return f"{fix.service}: {first.issue}: {verb} (attempt {number}/{limit})"


def escalation_words(session: Session, service: str, kind: FixKind) -> str:
    backup = " (with a backup first)" if session.spec.services[service].stateful else ""
    if kind is FixKind.UNPAUSE:
        return f"{service} is still unhealthy once unpaused: it will be restarted"
    if kind is FixKind.RESTART:
        return f"{service} is still unhealthy: it will be recreated{backup}"
    return f"{service} could not be reconnected to its network: it will be recreated{backup}"


def recreate_reason(fix: Fix, tried: list[str]) -> str:
    """The cause the plan shows for the recreate: what is wrong, and what did not help."""
    what = "; ".join(f"{i.issue} ({_short(i.details)})" for i in fix.issues)
    return what + (f"; {' and '.join(tried)} did not help" if tried else "")


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


# -- one function per fix kind ----------------------------------------------------------------

def unpause(healer: Healer, fix: Fix, before: list[str]) -> str:
    """``docker pause`` froze the processes: they go on where they stopped (no restart, no
    connection dropped), as apply's ``heal.unpause`` does."""
    own = "container-paused" in fix.rules or "proxy-paused" not in fix.rules
    names = [healer.container(fix.service)] if own else []
    if "proxy-paused" in fix.rules:  # a blue-green service's proxy, which serves its host ports
        names.append(proxy_name(healer.session.spec.project, fix.service))
    for name in names:
        dockerio.unpause(healer.session.client, name)
    healer.wait_ready(fix.service)
    return f"unpaused {', '.join(names)}"


def start(healer: Healer, fix: Fix, before: list[str]) -> str:
    name = healer.container(fix.service)
    dockerio.start(healer.session.client, name)
    healer.wait_ready(fix.service)
    return f"started {name}"


def restart(healer: Healer, fix: Fix, before: list[str]) -> str:
    name = healer.container(fix.service)
    grace = healer.session.spec.services[fix.service].deploy.stop_grace
    dockerio.restart(healer.session.client, name, grace)
    healer.wait_ready(fix.service)
    return f"restarted {name}"


def recreate_network(healer: Healer, fix: Fix, before: list[str]) -> str:
    """Recreate the service's missing networks as apply would, then give its container an
    endpoint on each: the old endpoint names the deleted network's id, so the container
    cannot start until it is dropped. Keeps the container (and its data) as it is."""
    session, name = healer.session, healer.container(fix.service)
    ids, made = ensure_networks(session, fix.service)
    joined = rejoin(session, name, ids, aliases=None)
    if session.spec.services[fix.service].proxied:  # the proxy lost the same network
        joined += rejoin(session, proxy_name(session.spec.project, fix.service), ids, aliases=[])
    await_docker_verdict(session, name, gate.timeout_for(session, fix.service))
    healer.wait_ready(fix.service)
    parts = [f"created network {', '.join(made)}"] if made else []
    parts += [f"reconnected {', '.join(joined)}"] if joined else []
    return "; ".join(parts + [f"{name} runs"])


def await_docker_verdict(session: Session, container: str, limit: float) -> None:
    """A container kept running through a fix (reconnected) still carries Docker's verdict from
    before it: ``unhealthy`` until one of its checks passes, which only the fix made possible.
    ``gate.wait_ready`` takes that verdict as final and fails at once, so heal recreated a worker
    it had just reconnected (QA). Wait until a check passes, for as many checks as Docker's
    retries (then the verdict is fresh, and wait_ready judges it)."""
    doc = dockerio.inspect_container(session.client, container)
    if _docker_health(doc) != "unhealthy":
        return
    check = (doc.get("Config") or {}).get("Healthcheck") or {}
    interval = (check.get("Interval") or 30 * _NS) / _NS
    span = interval * ((check.get("Retries") or 3) + 1) + (check.get("Timeout") or 30 * _NS) / _NS
    deadline = time.monotonic() + min(span, limit)
    while time.monotonic() < deadline:
        time.sleep(min(1.0, interval))
        if _docker_health(dockerio.inspect_container(session.client, container)) != "unhealthy":
            return


_NS = 1_000_000_000  # Docker's health check durations are in nanoseconds


def _docker_health(doc: dict) -> str | None:
    return ((doc.get("State") or {}).get("Health") or {}).get("Status")


def recreate(healer: Healer, fix: Fix, before: list[str]) -> str:
    assert healer.recreate is not None
    return healer.recreate(fix, recreate_reason(fix, before), lambda: stop_loop(healer, fix))


def stop_loop(healer: Healer, fix: Fix) -> None:
    """Stop a container that restarts in a loop before it is recreated: the engine would
    otherwise bring it back at any moment, behind the backup's back and on the same data as
    its replacement. Stopped, the plan's backup starts it once and waits until it is ready."""
    if "restart-loop" not in fix.rules:
        return
    session = healer.session
    doc = session.container_doc(fix.service)
    if doc is None or not (doc.get("State") or {}).get("Running"):
        return
    healer.say(fix.service, f"stopping {healer.container(fix.service)} first: it restarts in a loop")
    dockerio.stop(session.client, doc["Id"], session.spec.services[fix.service].deploy.stop_grace)


ACTIONS: dict[FixKind, Callable[[Healer, Fix, list[str]], str]] = {
    FixKind.UNPAUSE: unpause, FixKind.START: start, FixKind.RESTART: restart, FixKind.RECREATE: recreate,
    FixKind.RECREATE_NETWORK: recreate_network,
}


def recheck(session: Session, fix: Fix) -> None:
    """A fresh diagnose of the service must not find the issues the fix was for."""
    from reconciler.operate import diagnose

    rules = fix.rules - {PROBE_RULE}
    if not rules:
        return
    left = [i for i in diagnose.run(session, [fix.service], with_usage=False, remember=False).issues
            if i.rule in rules and i.severity.value == "critical"]
    if left:
        raise HealError(f"still {left[0].issue}: {_short(left[0].details)}", ref="heal.recheck")
