"""Tell people: a webhook (Slack-compatible or generic JSON) on failures, rollbacks, critical
health, drift and, when asked, success.

Settings come from the environment so a cron line or a systemd unit can set them without a
spec change: ``RECONCILE_WEBHOOK_URL``, ``RECONCILE_WEBHOOK_FORMAT=slack|json`` (default slack
when the host is hooks.slack.com), ``RECONCILE_NOTIFY_SUCCESS=1``.

A notification must never fail the operation it reports on: ``send`` returns False and prints
a warning instead of raising (5 s timeout, one retry). The warning names only the URL's
host: a Slack webhook's path is its secret.

Drift and diagnose run from timers every few minutes; ``send_if_new`` sends a notification
only when what it says changed (or a day passed), so a standing problem is one message, not
ninety-six.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

from reconciler.storage.files import atomic_write

TIMEOUT_S = 5.0
RETRY_DELAY_S = 0.5
REPEAT_AFTER_S = 24 * 3600
_SLACK_TEXT_LIMIT = 2900
_SEVERITY_ICON = {"critical": ":red_circle:", "warning": ":warning:", "info": ":information_source:",
                  "ok": ":white_check_mark:"}


class Event(StrEnum):
    APPLY_FAILED = "apply_failed"
    ROLLBACK = "rollback"
    CRITICAL_HEALTH = "critical_health"
    DRIFT = "drift"
    SUCCESS = "apply_succeeded"


@dataclass(frozen=True)
class Notification:
    event: Event
    project: str
    severity: str
    summary: str
    details: tuple[str, ...] = ()
    timestamp: str = field(default_factory=lambda: datetime.now(UTC).isoformat().replace("+00:00", "Z"))

    def digest(self) -> str:
        """What the notification says, without when: equal digests mean nothing new."""
        text = json.dumps([self.event.value, self.severity, self.summary, list(self.details)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Webhook:
    url: str
    format: str
    notify_success: bool = False

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "the webhook"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Webhook | None:
        env = os.environ if environ is None else environ
        url = env.get("RECONCILE_WEBHOOK_URL", "").strip()
        if not url:
            return None
        default = "slack" if "hooks.slack.com" in (urlsplit(url).hostname or "") else "json"
        chosen = env.get("RECONCILE_WEBHOOK_FORMAT", "").strip().lower() or default
        return cls(url, chosen if chosen in ("slack", "json") else default,
                   env.get("RECONCILE_NOTIFY_SUCCESS", "").strip().lower() in ("1", "true", "yes"))


def json_payload(note: Notification) -> dict:
    return {"event": note.event.value, "project": note.project, "severity": note.severity,
            "summary": note.summary, "details": list(note.details), "timestamp": note.timestamp}


def slack_payload(note: Notification) -> dict:
    """``text`` (the fallback Slack shows in notifications) and ``blocks`` (the message)."""
    icon = _SEVERITY_ICON.get(note.severity, "")
    title = f"{note.project}: {note.summary}"
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(title, 150), "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{icon} *{_escape(note.summary)}*"}},
    ]
    if note.details:
        bullets = "\n".join(f"• {_escape(line)}" for line in note.details)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut(bullets, _SLACK_TEXT_LIMIT)}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _escape(
        f"{note.event.value} · {note.severity} · {note.timestamp}")}]})
    return {"text": f"[{note.severity}] {title}", "blocks": blocks}


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _stderr_warning(message: str) -> None:
    sys.stderr.write(f"warning: {message}\n")


def send(note: Notification, *, webhook: Webhook | None = None,
         environ: Mapping[str, str] | None = None,
         warn: Callable[[str], None] = _stderr_warning) -> bool:
    """Post ``note``; True when delivered (or nothing to do), False after a warning."""
    hook = webhook or Webhook.from_env(environ)
    if hook is None or (note.event is Event.SUCCESS and not hook.notify_success):
        return True
    payload = slack_payload(note) if hook.format == "slack" else json_payload(note)
    body = json.dumps(payload).encode()
    error = ""
    for attempt in range(2):
        if attempt:
            time.sleep(RETRY_DELAY_S)
        error = _post(hook.url, body)
        if not error:
            return True
    warn(f"notification to {hook.host} failed ({error}); the operation itself is not affected")
    return False


def _post(url: str, body: bytes) -> str:
    """'' on a 2xx answer, else a short reason (never the URL)."""
    from reconciler import __version__

    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": f"reconcile/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:
            return "" if 200 <= answer.status < 300 else f"HTTP {answer.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return type(reason).__name__ if not isinstance(reason, str) else reason


def send_if_new(state_dir: Path, key: str, note: Notification | None, **options) -> bool | None:
    """Send ``note`` unless the last one under ``key`` said the same less than a day ago.

    ``note=None`` means the condition is over: forget it, so its return is news again.
    Returns None when nothing was sent.
    """
    path = state_dir / "notify" / f"{key}.json"
    if (options.get("webhook") or Webhook.from_env(options.get("environ"))) is None:
        return None
    if note is None:
        path.unlink(missing_ok=True)
        return None
    try:
        last = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        last = {}
    if last.get("digest") == note.digest() and time.time() - float(last.get("sent", 0)) < REPEAT_AFTER_S:
        return None
    delivered = send(note, **options)
    if delivered:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with atomic_write(path) as handle:
            handle.write(json.dumps({"digest": note.digest(), "sent": time.time()}).encode())
    return delivered
