"""The spec loader: every bad input gets file:line:col, the field path and a useful hint."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from reconciler.errors import SpecError, SpecErrors
from reconciler.spec.load import load_spec
from reconciler.spec.models import Kind, Strategy
from reconciler.spec.schema import schema_text

ROOT = Path(__file__).resolve().parents[2]

BASE = """\
version: 1
project: demo
volumes:
  data: {}
networks:
  backend: {}
services:
  db:
    profile: infrastructure
    kind: postgres
    image: postgres:16
    env: { POSTGRES_PASSWORD: "${env:PGPASS:-x}" }
    volumes: ["data:/var/lib/postgresql/data"]
    networks: [backend]
    ports: ["127.0.0.1:5432:5432"]
    stateful: true
  api:
    image: app:1
    depends_on: { db: healthy }
    networks: [backend]
    ports: ["8080:8000"]
"""


def write(tmp_path: Path, text: str, name: str = "reconcile.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def errors_of(tmp_path: Path, text: str, environ: dict | None = None) -> list:
    with pytest.raises(SpecErrors) as info:
        load_spec(write(tmp_path, text), environ or {})
    return info.value.errors


def test_base_spec_loads_with_defaults(tmp_path):
    spec = load_spec(write(tmp_path, BASE), {}).spec
    assert spec.services["db"].kind is Kind.POSTGRES
    assert spec.services["api"].profile == "app"
    assert spec.services["api"].deploy.strategy is Strategy.RECREATE
    assert spec.services["db"].ports[0].host_ip == "127.0.0.1"
    assert spec.services["db"].volumes[0].target == "/var/lib/postgresql/data"


@pytest.mark.parametrize("old,new,ref,where,words", [
    ("    stateful: true\n", "    statefull: true\n", "spec.unknown-key", ":16:5",
     "did you mean 'stateful'?"),
    ('image: app:1', 'image: app:1\n    helth: {}', "spec.unknown-key", ":19:5", "did you mean 'health'?"),
    ("PGPASS:-x", "PGPASS", "spec.interpolation", ":12:31", "PGPASS"),
    ("depends_on: { db: healthy }", "depends_on: { cache: healthy }", "spec.unknown-service",
     ":19:19", "declared services: api, db"),
    ('ports: ["8080:8000"]', 'ports: ["5432:8000"]', "spec.port-clash", ":21:13", "another host port"),
    ('networks: [backend]\n    ports: ["8080', 'networks: [front]\n    ports: ["8080',
     "spec.undeclared-network", ":20:16", "declare it"),
    ('["data:/var/lib', '["other:/var/lib', "spec.undeclared-volume", ":13:15", "declare it"),
    ("kind: postgres", "kind: http", "spec.not-backupable", ":16:5", "kind postgres, redis"),
    ('ports: ["8080:8000"]', 'ports: ["80:80:80:80"]', "spec.invalid", ":21:13", "ports"),
    ("kind: postgres", "kind: mysql", "spec.invalid", ":10:11", "kind"),
    ("image: app:1", "image: app:1\n    deploy: { drain: soon }", "spec.invalid", ":19:22", "drain"),
])
def test_bad_input_names_place_and_hint(tmp_path, old, new, ref, where, words):
    assert old in BASE
    errs = errors_of(tmp_path, BASE.replace(old, new, 1))
    match = [e for e in errs if e.ref == ref]
    assert match, [str(e) for e in errs]
    text = str(match[0])
    assert f"reconcile.yaml{where}" in text
    assert words in text


def test_cycle_is_named(tmp_path):
    text = BASE.replace("    stateful: true\n", "    stateful: true\n    depends_on: [api]\n")
    errs = errors_of(tmp_path, text)
    assert any("dependency cycle: api → db → api" in str(e) for e in errs), [str(e) for e in errs]


def test_all_problems_reported_at_once(tmp_path):
    text = BASE.replace("stateful: true", "statefull: true").replace("PGPASS:-x", "PGPASS")
    refs = {e.ref for e in errors_of(tmp_path, text)}
    assert {"spec.interpolation"} <= refs


def test_invalid_yaml_points_at_line(tmp_path):
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, "version: 1\nproject: [unclosed\n"), {})
    assert "reconcile.yaml:3" in str(info.value) and info.value.ref == "spec.yaml"


def test_missing_file_has_hint(tmp_path):
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "nope.yaml", {})
    assert "RECONCILE_FILE" in info.value.hint


def test_interpolation_env_default_file_and_escape(tmp_path):
    (tmp_path / "secret.txt").write_text("from-file\n")
    text = BASE.replace('"${env:PGPASS:-x}"', '"${file:secret.txt}"').replace(
        "image: app:1", 'image: "app:${env:TAG:-7}"\n    command: ["echo", "$${HOME}"]')
    loaded = load_spec(write(tmp_path, text), {"TAG": "42"})
    api = loaded.spec.services["api"]
    assert api.image == "app:42"
    assert api.command == ["echo", "${HOME}"]
    assert loaded.spec.services["db"].env["POSTGRES_PASSWORD"].get_secret_value() == "from-file"
    assert loaded.shown(("services", "api", "image"), api.image) == "app:42"  # an image is public


def test_env_file_merges_under_env(tmp_path):
    (tmp_path / ".env.prod").write_text("# comment\nA=1\nexport B='two'\nPOSTGRES_PASSWORD=file\n")
    text = BASE.replace("    stateful: true\n", "    stateful: true\n    env_file: .env.prod\n")
    env = load_spec(write(tmp_path, text), {}).spec.services["db"].env
    assert {k: v.get_secret_value() for k, v in env.items()} == {
        "A": "1", "B": "two", "POSTGRES_PASSWORD": "x"}


def test_secrets_never_in_errors_or_reprs(tmp_path):
    secret = "hunter2-very-secret"
    text = BASE.replace('"${env:PGPASS:-x}"', '"${env:PGPASS}"').replace(
        'ports: ["8080:8000"]', 'ports: ["${env:PGPASS}"]')
    with pytest.raises(SpecErrors) as info:
        load_spec(write(tmp_path, text), {"PGPASS": secret})
    assert secret not in str(info.value) and secret not in json.dumps(info.value.as_dict())
    loaded = load_spec(write(tmp_path, BASE.replace(":-x}", "}")), {"PGPASS": secret})
    assert secret not in repr(loaded.spec) and secret not in repr(loaded)


def test_reference_specs_load():
    load_spec(ROOT / "specs" / "lab.yaml", {})
    loaded = load_spec(ROOT / "specs" / "healthcare.yaml", {"POSTGRES_PASSWORD": "p"}) \
        if (ROOT / "specs" / ".env.production").exists() else None
    if loaded is None:
        with pytest.raises(SpecErrors) as info:
            load_spec(ROOT / "specs" / "healthcare.yaml", {"POSTGRES_PASSWORD": "p"})
        assert [e.ref for e in info.value.errors] == ["spec.env-file"]


def test_committed_schema_is_current():
    committed = (ROOT / "schemas" / "reconcile.schema.json").read_text()
    assert committed == schema_text(), "run: reconcile schema > schemas/reconcile.schema.json"


@pytest.mark.parametrize("text,expected", [
    ("5432", "5432/tcp"), ("8080:3000", "8080:3000/tcp"), ("127.0.0.1:5432:5432", "127.0.0.1:5432:5432/tcp"),
    ("53:53/udp", "53:53/udp"), ("[::1]:80:8080", "::1:80:8080/tcp"),
])
def test_port_forms(text, expected):
    from reconciler.spec.models import Port, _parse_port

    assert str(Port.model_validate(_parse_port(text))) == expected


@pytest.mark.parametrize("text,seconds", [("30s", 30), ("5m", 300), ("1h30m", 5400), ("500ms", 0.5), (12, 12)])
def test_durations(text, seconds):
    from reconciler.spec.durations import parse_duration

    assert parse_duration(text) == seconds
