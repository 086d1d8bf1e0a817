"""Webhook notifications against a real local HTTP receiver (http.server on 127.0.0.1)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from reconciler.operate import notify
from reconciler.operate.notify import Event, Notification, Webhook


class Receiver:
    """Records every POST; answers each with the next status in ``statuses`` (then 200)."""

    def __init__(self, statuses=()):
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.statuses = list(statuses)
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                owner.bodies.append(json.loads(body))
                owner.headers.append(dict(self.headers))
                status = owner.statuses.pop(0) if owner.statuses else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook/T000/SECRETPATH"


@pytest.fixture()
def receiver():
    made = []

    def start(statuses=()):
        r = Receiver(statuses)
        r.thread.start()
        made.append(r)
        return r

    yield start
    for r in made:
        r.server.shutdown()
        r.server.server_close()


@pytest.fixture(autouse=True)
def fast_retry(monkeypatch):
    monkeypatch.setattr(notify, "RETRY_DELAY_S", 0.01)


NOTE = Notification(Event.DRIFT, "shop", "warning", "drift in 1 service(s): api",
                    ("api: image shop/api:1 → shop/api:2 <b>&</b>",), "2026-01-05T10:00:00Z")


def test_generic_json_payload_is_delivered(receiver):
    r = receiver()
    assert notify.send(NOTE, environ={"RECONCILE_WEBHOOK_URL": r.url})
    assert r.bodies == [{"event": "drift", "project": "shop", "severity": "warning",
                         "summary": "drift in 1 service(s): api",
                         "details": ["api: image shop/api:1 → shop/api:2 <b>&</b>"],
                         "timestamp": "2026-01-05T10:00:00Z"}]
    assert r.headers[0]["Content-Type"] == "application/json"


def test_slack_payload_has_text_and_blocks_with_escaped_markup(receiver):
    r = receiver()
    assert notify.send(NOTE, environ={"RECONCILE_WEBHOOK_URL": r.url, "RECONCILE_WEBHOOK_FORMAT": "slack"})
    body = r.bodies[0]
    assert body["text"] == "[warning] shop: drift in 1 service(s): api"
    kinds = [b["type"] for b in body["blocks"]]
    assert kinds == ["header", "section", "section", "context"]
    assert "&lt;b&gt;&amp;&lt;/b&gt;" in body["blocks"][2]["text"]["text"]


def test_format_defaults_to_slack_for_slack_hosts_only():
    assert Webhook.from_env({"RECONCILE_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/X"}).format == "slack"
    assert Webhook.from_env({"RECONCILE_WEBHOOK_URL": "https://ops.example/hook"}).format == "json"
    assert Webhook.from_env({"RECONCILE_WEBHOOK_URL": "https://ops.example/hook",
                             "RECONCILE_WEBHOOK_FORMAT": "slack"}).format == "slack"
    assert Webhook.from_env({}) is None


def test_one_retry_after_a_server_error(receiver):
    r = receiver(statuses=[500])
    warnings = []
    assert notify.send(NOTE, environ={"RECONCILE_WEBHOOK_URL": r.url}, warn=warnings.append)
    assert len(r.bodies) == 2 and warnings == []


def test_a_failed_notification_warns_without_the_secret_path_and_never_raises(receiver):
    r = receiver(statuses=[503, 503, 503])
    warnings = []
    assert not notify.send(NOTE, environ={"RECONCILE_WEBHOOK_URL": r.url}, warn=warnings.append)
    assert len(r.bodies) == 2  # first try and one retry, no more
    assert len(warnings) == 1 and "HTTP 503" in warnings[0] and "127.0.0.1" in warnings[0]
    assert "SECRETPATH" not in warnings[0]


def test_an_unreachable_receiver_is_only_a_warning():
    warnings = []
    assert not notify.send(NOTE, environ={"RECONCILE_WEBHOOK_URL": "http://127.0.0.1:9/x"},
                           warn=warnings.append)
    assert len(warnings) == 1 and "not affected" in warnings[0]


def test_a_slow_receiver_times_out(receiver, monkeypatch):
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts the connection, never answers
    monkeypatch.setattr(notify, "TIMEOUT_S", 0.2)
    warnings = []
    try:
        assert not notify.send(NOTE, environ={"RECONCILE_WEBHOOK_URL":
                                              f"http://127.0.0.1:{silent.getsockname()[1]}/"},
                               warn=warnings.append)
    finally:
        silent.close()
    assert len(warnings) == 1


def test_success_is_sent_only_when_asked(receiver):
    r = receiver()
    ok = Notification(Event.SUCCESS, "shop", "ok", "apply finished")
    assert notify.send(ok, environ={"RECONCILE_WEBHOOK_URL": r.url})
    assert r.bodies == []
    assert notify.send(ok, environ={"RECONCILE_WEBHOOK_URL": r.url, "RECONCILE_NOTIFY_SUCCESS": "1"})
    assert [b["event"] for b in r.bodies] == ["apply_succeeded"]


def test_no_url_means_nothing_to_do():
    assert notify.send(NOTE, environ={})


def test_a_standing_condition_is_sent_once_and_again_after_it_clears(receiver, tmp_path):
    r = receiver()
    env = {"environ": {"RECONCILE_WEBHOOK_URL": r.url}}
    assert notify.send_if_new(tmp_path, "drift", NOTE, **env) is True
    assert notify.send_if_new(tmp_path, "drift", NOTE, **env) is None
    changed = Notification(Event.DRIFT, "shop", "warning", "drift in 2 service(s): api, web")
    assert notify.send_if_new(tmp_path, "drift", changed, **env) is True
    assert notify.send_if_new(tmp_path, "drift", None, **env) is None
    assert notify.send_if_new(tmp_path, "drift", changed, **env) is True
    assert len(r.bodies) == 3


def test_without_a_webhook_nothing_is_remembered(tmp_path):
    assert notify.send_if_new(tmp_path, "drift", NOTE, environ={}) is None
    assert not (tmp_path / "notify").exists()


# -- hooks for apply and health (wired by the lead in the apply and health commands) -------

def _spec(tmp_path):
    path = tmp_path / "reconcile.yaml"
    path.write_text("version: 1\nproject: shop\nstate_dir: ./state\nservices:\n"
                    "  api:\n    image: shop/api:1\n    env: { API_TOKEN: tok-3141592 }\n")
    return path


def _session(tmp_path):
    """A session on ``_spec`` (no engine is reached: a deploy run only logs and notifies)."""
    from reconciler.session import Session
    from reconciler.spec.load import load_spec

    return Session(load_spec(_spec(tmp_path)))


def _ui():
    from dataclasses import dataclass, field

    @dataclass
    class FakeUI:
        emit: object
        seen: list = field(default_factory=list)

    ui = FakeUI(emit=None)
    ui.emit = ui.seen.append
    return ui


def test_a_failed_apply_with_a_rollback_notifies_both_and_logs_the_deploy(receiver, tmp_path, monkeypatch):
    from reconciler.errors import ApplyError
    from reconciler.operate.hooks import deploy_run

    r = receiver()
    monkeypatch.setenv("RECONCILE_WEBHOOK_URL", r.url)
    ui = _ui()
    with pytest.raises(ApplyError):
        with deploy_run(_session(tmp_path), ui) as bound:
            bound.emit({"event": "logs", "lines": ["token tok-3141592 rejected"]})
            bound.emit({"event": "rollback-end", "service": "api", "status": "ok"})
            raise ApplyError("api did not become healthy", hint="see the log lines above")
    assert [b["event"] for b in r.bodies] == ["rollback", "apply_failed"]
    assert r.bodies[1]["severity"] == "critical" and "api did not become healthy" in r.bodies[1]["summary"]
    assert len(ui.seen) == 2  # the command's own UI still sees every event
    log = next((tmp_path / "state" / "logs").glob("deploy-*.jsonl"))
    text = log.read_text()
    assert "tok-3141592" not in text and '"result": "failed"' in text


def test_a_successful_apply_notifies_only_when_asked(receiver, tmp_path, monkeypatch):
    from reconciler.operate.hooks import deploy_run

    r = receiver()
    monkeypatch.setenv("RECONCILE_WEBHOOK_URL", r.url)
    finish = {"event": "finish", "apply_id": "a1", "result": "ok", "duration_s": 3.2,
              "actions": ["recreate:api"]}
    with deploy_run(_session(tmp_path), _ui()) as bound:
        bound.emit(finish)
    assert r.bodies == []
    monkeypatch.setenv("RECONCILE_NOTIFY_SUCCESS", "1")
    with deploy_run(_session(tmp_path), _ui()) as bound:
        bound.emit(finish)
    assert [b["event"] for b in r.bodies] == ["apply_succeeded"]


def test_critical_health_is_notified_once_per_change(receiver, tmp_path, monkeypatch):
    from reconciler.health import Level, ServiceHealth
    from reconciler.operate.hooks import notify_health
    from reconciler.session import Session
    from reconciler.spec.load import load_spec

    r = receiver()
    monkeypatch.setenv("RECONCILE_WEBHOOK_URL", r.url)
    session = Session(load_spec(_spec(tmp_path)))
    sick = [ServiceHealth("api", "stopped", Level.CRITICAL)]
    notify_health(session, sick)
    notify_health(session, sick)
    notify_health(session, [ServiceHealth("api", "healthy", Level.HEALTHY)])
    notify_health(session, sick)
    assert [b["event"] for b in r.bodies] == ["critical_health", "critical_health"]
