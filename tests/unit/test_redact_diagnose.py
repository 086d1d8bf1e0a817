"""Diagnose's facts (what ``diagnose``, ``--save-facts`` and ``heal`` show) hold no secret:
container logs are redacted with every service's secrets, and so are the health-check
probes' output and the engine's error."""

from __future__ import annotations

import base64
import json
import textwrap

import pytest

from reconciler.operate import collect
from reconciler.operate.redact import MASK
from reconciler.session import Session
from reconciler.spec.load import load_spec
from reconciler.spec.normalise import LABEL_PROJECT, LABEL_SERVICE

SPEC = """\
version: 1
project: shop
state_dir: ./state
backup: { local: { path: ./backups } }
services:
  db:
    kind: postgres
    image: postgres:16
    env: { POSTGRES_PASSWORD: "S3cr3tPgPw-XYZ" }
  api:
    image: shop/api:1
    env: { DATABASE_URL: "postgresql://app:L1teralDbUrlPw-GHI@db/x" }
"""
SECRETS = ("S3cr3tPgPw-XYZ", "L1teralDbUrlPw-GHI", base64.b64encode(b"S3cr3tPgPw-XYZ").decode())
API_LOGS = ("api starting\n"
            "connecting to postgresql://app:L1teralDbUrlPw-GHI@db:5432/x?sslmode=disable\n"
            "debug: admin password S3cr3tPgPw-XYZ, basic " + SECRETS[2] + "\n")
PROBE = "curl: could not reach postgresql://app:L1teralDbUrlPw-GHI@db:5432/x (auth S3cr3tPgPw-XYZ)"


def api_doc() -> dict:
    return {
        "Id": "c-api", "Name": "/shop-api", "Image": "sha256:1",
        "Config": {"Image": "shop/api:1", "Labels": {LABEL_PROJECT: "shop", LABEL_SERVICE: "api"}},
        "State": {"Status": "running", "Running": True, "ExitCode": 0,
                  "Error": "exec failed: invalid environment variable: =S3cr3tPgPw-XYZ",
                  "Health": {"Status": "unhealthy", "FailingStreak": 3,
                             "Log": [{"ExitCode": 1, "Output": PROBE + "\n", "End": "2026-01-05T02:00:00Z"}]}},
        "HostConfig": {"RestartPolicy": {"Name": "always"}},
        "NetworkSettings": {"Networks": {}},
    }


@pytest.fixture()
def session(tmp_path, monkeypatch):
    path = tmp_path / "reconcile.yaml"
    path.write_text(textwrap.dedent(SPEC))
    engine = collect.dockerio
    monkeypatch.setattr(engine, "project_containers", lambda client, project: [api_doc()])
    monkeypatch.setattr(engine, "project_volumes", lambda client, project: [])
    monkeypatch.setattr(engine, "project_networks", lambda client, project: [])
    monkeypatch.setattr(engine, "inspect_images", lambda client, refs: {r: {} for r in refs})
    monkeypatch.setattr(engine, "engine_info", lambda client: {})
    monkeypatch.setattr(engine, "foreign_holder", lambda client, name, project: "")
    monkeypatch.setattr(engine, "logs", lambda client, container, lines: API_LOGS)
    return Session(load_spec(path, {}), environ={}, _client=object())


def test_logs_probe_output_and_engine_error_are_redacted_in_the_facts(session):
    facts, live = collect.collect(session, ["api", "db"])
    assert live == {"api": "c-api"}
    saved = json.dumps(facts.to_dict())
    assert [s for s in SECRETS if s in saved] == []
    api = next(s for s in facts.services if s.name == "api")
    assert api.logs[1] == f"connecting to postgresql://app:{MASK}@db:5432/x?sslmode=disable"
    assert api.logs[2] == f"debug: admin password {MASK}, basic {MASK}"  # db's secret, in api's logs
    assert api.container.health_log[0].output == (
        f"curl: could not reach postgresql://app:{MASK}@db:5432/x (auth {MASK})")
    assert api.container.error == f"exec failed: invalid environment variable: ={MASK}"


def test_secrets_a_container_was_started_with_are_masked_after_the_spec_rotated_them(session, monkeypatch):
    """The spec no longer holds the old secrets; the running container does, and logs them."""
    doc = api_doc()
    doc["Config"] |= {"Env": ["PATH=/usr/local/bin:/usr/bin", "API_TOKEN=0ldT0ken-Rotated",
                              "DATABASE_URL=postgresql://app:0ldUrlPw-Rotated@db/x"],
                      "Cmd": ["api", "--signing-key", "0ldSigningKey-Rotated"]}
    monkeypatch.setattr(collect.dockerio, "project_containers", lambda client, project: [doc])
    monkeypatch.setattr(collect.dockerio, "logs", lambda client, container, lines: (
        "token 0ldT0ken-Rotated url postgresql://app:0ldUrlPw-Rotated@db/x key 0ldSigningKey-Rotated "
        "in /usr/local/bin\n"))
    facts, _ = collect.collect(session, ["api"])
    [line] = next(s for s in facts.services if s.name == "api").logs
    assert line == f"token {MASK} url postgresql://app:{MASK}@db/x key {MASK} in /usr/local/bin"
