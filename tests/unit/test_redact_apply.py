"""Apply's events, journal and errors hold no secret: the engine's error text quotes env values
and a failing container's last log lines print them (any service's, not only its own)."""

from __future__ import annotations

import json
import textwrap

import pytest

from reconciler.apply import executor, gate
from reconciler.apply.context import ApplyRun
from reconciler.apply.journal import Journal
from reconciler.errors import ApplyError, EngineError
from reconciler.plan.actions import Action, ActionKind, Plan
from reconciler.session import Session
from reconciler.spec.load import load_spec

SPEC = """\
version: 1
project: shop
state_dir: ./state
services:
  db:
    kind: postgres
    image: postgres:16
    env: { POSTGRES_PASSWORD: "S3cr3tPgPw-XYZ" }
  api:
    image: shop/api:1
    env: { DATABASE_URL: "postgresql://app:L1teralDbUrlPw-GHI@db/x" }
"""
SECRETS = ("S3cr3tPgPw-XYZ", "L1teralDbUrlPw-GHI")
CREATE_API = Action(ActionKind.CREATE, "api", "not running")


@pytest.fixture()
def events() -> list[dict]:
    return []


@pytest.fixture()
def run(tmp_path, events):
    path = tmp_path / "reconcile.yaml"
    path.write_text(textwrap.dedent(SPEC))
    session = Session(load_spec(path, {}), environ={})
    plan = Plan(project="shop", actions=(CREATE_API,), fingerprint="f")
    run = ApplyRun(session, plan, Journal(session.state_dir(), "a-1"), events.append)
    yield run
    run.journal.close()


def leaked(run: ApplyRun, events: list[dict], *texts: str) -> list[str]:
    """The secrets found in the journal, the emitted events or ``texts``."""
    where = [run.journal.path.read_text(), json.dumps(events), *texts]
    return [s for s in SECRETS if any(s in text for text in where)]


def test_every_string_of_an_event_is_redacted_in_the_journal_and_on_screen(run, events):
    run.record("logs", action="create:api", lines=["user=app password=S3cr3tPgPw-XYZ",
                                                    "dsn postgresql://app:L1teralDbUrlPw-GHI@db:5432/x"],
               detail={"error": ["the engine refused (invalid environment variable: =S3cr3tPgPw-XYZ)"]},
               seconds=1.5)
    assert leaked(run, events) == []
    event = events[0]
    assert event["lines"] == ["user=app password=***", "dsn postgresql://app:***@db:5432/x"]
    assert event["detail"] == {"error": ["the engine refused (invalid environment variable: =***)"]}
    assert event["event"] == "logs" and event["seconds"] == 1.5
    journal = json.loads(run.journal.path.read_text())
    assert journal["lines"] == event["lines"] and journal["event"] == "logs"


def test_a_failed_step_records_and_raises_the_engine_error_redacted(run, events, monkeypatch):
    def refuse(run_, action):
        raise EngineError("creating shop-api: the engine refused (invalid environment variable: "
                          "=S3cr3tPgPw-XYZ)", ref="engine.api", hint="value S3cr3tPgPw-XYZ rejected")

    monkeypatch.setattr(executor.steps, "dispatch", refuse)
    with pytest.raises(ApplyError) as caught:
        executor.execute(run)
    error = caught.value
    assert "=***)" in error.message
    assert leaked(run, events, error.message, error.hint, str(error), repr(error.args),
                  json.dumps(error.as_dict())) == []


def test_the_last_log_lines_of_an_unready_container_are_redacted(run, events, monkeypatch):
    def unready(run_, action):
        raise gate.NotReady("api did not become healthy", hint="see its logs",
                            logs="starting\nFATAL: password authentication failed for S3cr3tPgPw-XYZ\n"
                                 "url postgresql://app:L1teralDbUrlPw-GHI@db:5432/x?sslmode=disable")

    monkeypatch.setattr(executor.steps, "dispatch", unready)
    with pytest.raises(ApplyError):
        executor.execute(run)
    logs = next(e for e in events if e["event"] == "logs")
    assert logs["lines"][-1] == "url postgresql://app:***@db:5432/x?sslmode=disable"
    assert leaked(run, events) == []
