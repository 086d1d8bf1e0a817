"""An error about a value that came from ``${env:…}`` or ``${file:…}`` names that reference and
says to check it (the YAML line looks right), with file:line and a hint, and never shows the
value: every interpolated value is a secret for display. A variable set but empty fails a
field that cannot be empty, naming the variable; ``${env:NAME:?message}`` says so up front."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from reconciler.errors import SpecError, SpecErrors
from reconciler.spec.interpolate import InterpolationError, Outcome, interpolate
from reconciler.spec.load import load_spec

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-VALUE-123"

SPEC = """\
version: 1
project: demo
networks:
  backend: {}
services:
  db:
    image: postgres:16
"""


def spec_with(tmp_path: Path, extra: str, head: str = "") -> Path:
    """``SPEC`` with ``extra`` as keys of service db (from line 8) and ``head`` as top-level keys
    (after the services)."""
    text = SPEC + textwrap.indent(textwrap.dedent(extra), "    ") + textwrap.dedent(head)
    path = tmp_path / "reconcile.yaml"
    path.write_text(text)
    return path


def only(path: Path, environ: dict[str, str]) -> SpecError:
    with pytest.raises(SpecErrors) as info:
        load_spec(path, environ)
    assert len(info.value.errors) == 1, [str(e) for e in info.value.errors]
    return info.value.errors[0]


def every_text(error: SpecError) -> str:
    return f"{error}\n{error!r}\n{error.message}\n{error.hint}\n{json.dumps(error.as_dict())}"


# -- 1. a value from the environment that does not fit names the variable, never the value --------

@pytest.mark.parametrize("extra,head,variable,where", [
    ('ports: ["${env:API_PORT}:8000"]', "", "API_PORT", "reconcile.yaml:8:13 (services.db.ports[0])"),
    ('ports: ["127.0.0.1:${env:API_PORT}:8000"]', "", "API_PORT", "reconcile.yaml:8:13 (services.db.ports[0])"),
    ('mem_limit: "${env:MEM_LIMIT}"', "", "MEM_LIMIT", "reconcile.yaml:8:16 (services.db.mem_limit)"),
    ('health: { http: { port: "${env:HEALTH_PORT}" } }', "", "HEALTH_PORT",
     "reconcile.yaml:8:29 (services.db.health.http.port)"),
    ('deploy: { drain: "${env:DRAIN}" }', "", "DRAIN", "reconcile.yaml:8:22 (services.db.deploy.drain)"),
    ("", 'backup:\n  s3: { enabled: "${env:S3_ENABLED}", bucket: b }\n', "S3_ENABLED",
     "reconcile.yaml:9:18 (backup.s3.enabled)"),
    ("", 'backup:\n  retention: { daily: "${env:KEEP_DAILY}" }\n', "KEEP_DAILY",
     "reconcile.yaml:9:23 (backup.retention.daily)"),
    ('kind: "${env:KIND}"', "", "KIND", "reconcile.yaml:8:11 (services.db.kind)"),
])
def test_a_bad_value_from_the_environment_names_the_variable_not_the_value(tmp_path, extra, head, variable,
                                                                           where):
    error = only(spec_with(tmp_path, extra, head), {variable: SECRET})
    assert error.ref == "spec.invalid" and str(error.location).endswith(where)
    assert f"${{env:{variable}}}" in error.message and "not shown" in error.message
    assert f"check the environment variable {variable}" in error.hint
    assert SECRET not in every_text(error)


def test_a_bad_value_from_a_file_names_the_file(tmp_path):
    (tmp_path / "limit.txt").write_text(SECRET + "\n")
    error = only(spec_with(tmp_path, 'mem_limit: "${file:limit.txt}"'), {})
    assert "${file:limit.txt}" in error.message and str(tmp_path / "limit.txt") in error.hint
    assert str(error.location).endswith("reconcile.yaml:8:16 (services.db.mem_limit)")
    assert SECRET not in every_text(error)


def test_a_default_that_does_not_fit_says_the_default_was_used(tmp_path):
    error = only(spec_with(tmp_path, 'ports: ["${env:API_PORT:-' + SECRET + '}"]'), {})
    assert "the default of ${env:API_PORT:-…} (API_PORT is unset or empty)" in error.message
    assert "set API_PORT, or fix the default" in error.hint and SECRET not in every_text(error)


def test_a_default_for_unset_only_says_so(tmp_path):
    error = only(spec_with(tmp_path, 'ports: ["${env:API_PORT-' + SECRET + '}"]'), {})
    assert "the default of ${env:API_PORT-…} (API_PORT is unset)" in error.message
    assert SECRET not in every_text(error)


def test_an_alternative_that_does_not_fit_names_it_and_hides_it(tmp_path):
    error = only(spec_with(tmp_path, 'ports: ["${env:API_PORT:+' + SECRET + '}"]'), {"API_PORT": "1"})
    assert "the text of ${env:API_PORT:+…} (API_PORT is set and not empty)" in error.message
    assert "not shown" in error.message and "or unset API_PORT" in error.hint
    assert SECRET not in every_text(error)


def test_an_alternative_left_out_under_a_field_that_rejects_empty_says_why(tmp_path):
    error = only(spec_with(tmp_path, 'ports: ["${env:API_PORT:+8000}"]'), {"API_PORT": ""})
    assert error.ref == "spec.empty-value"
    assert error.message.endswith("is empty: ${env:API_PORT:+…} is empty because API_PORT is unset or empty")
    assert error.hint.startswith("set API_PORT before running")


def test_a_message_that_would_quote_the_value_is_masked(tmp_path):
    """The cross-checks quote a network name and offer a close time zone: not an interpolated one."""
    error = only(spec_with(tmp_path, 'networks: ["${env:NET}"]'), {"NET": SECRET})
    assert error.ref == "spec.undeclared-network" and "${env:NET}" in error.message
    assert "check the environment variable NET" in error.hint and SECRET not in every_text(error)
    zone = only(spec_with(tmp_path, "", 'backup:\n  retention: { timezone: "${env:TZ}" }\n'),
                {"TZ": "europe/berlin"})
    assert "${env:TZ}" in zone.message and "europe/berlin" not in every_text(zone).lower()


def test_a_literal_value_keeps_its_error_as_it_was(tmp_path):
    error = only(spec_with(tmp_path, 'ports: ["abc:8000"]'), {})
    assert "${" not in error.message and error.hint.startswith("write [ip:][host:]container")


# -- 2. a variable set but empty fails a field that cannot be empty, naming it ---------------------

@pytest.mark.parametrize("extra,head,where", [
    ('ports: ["${env:API_IMAGE}"]', "", "reconcile.yaml:8:13 (services.db.ports[0])"),
    ('deploy: { proxy_image: "${env:API_IMAGE}" }', "", "reconcile.yaml:8:28 (services.db.deploy.proxy_image)"),
    ('health: { interval: "${env:API_IMAGE}" }', "", "reconcile.yaml:8:25 (services.db.health.interval)"),
    ("", 'backup:\n  s3: { enabled: "${env:API_IMAGE}" }\n', "reconcile.yaml:9:18 (backup.s3.enabled)"),
])
def test_an_empty_variable_under_a_field_that_rejects_empty_says_so(tmp_path, extra, head, where):
    error = only(spec_with(tmp_path, extra, head), {"API_IMAGE": ""})
    assert error.ref == "spec.empty-value" and str(error.location).endswith(where)
    assert error.message.endswith("is empty: ${env:API_IMAGE} is set but empty")
    assert "give API_IMAGE a value" in error.hint and "${env:API_IMAGE:?message}" in error.hint


def test_the_image_example(tmp_path):
    path = tmp_path / "reconcile.yaml"
    path.write_text('version: 1\nproject: demo\nservices:\n  api:\n    image: "${env:API_IMAGE}"\n')
    error = only(path, {"API_IMAGE": ""})
    assert str(error) == (f"{path}:5:12 (services.api.image): image is empty: ${{env:API_IMAGE}} is set but empty\n"
                          "  hint: give API_IMAGE a value before running (or write ${env:API_IMAGE:?message} "
                          "to stop with your message when it is unset or empty)")


@pytest.mark.parametrize("extra,head,where", [
    ('env: { POSTGRES_PASSWORD: "${env:PG_PASSWORD}" }', "",
     "reconcile.yaml:8:31 (services.db.env.POSTGRES_PASSWORD)"),
    ('env: { DFLY_requirepass: "${env:PG_PASSWORD}" }', "", "reconcile.yaml:8:30 (services.db.env.DFLY_requirepass)"),
    ('user: "${env:PG_PASSWORD}"', "", "reconcile.yaml:8:11 (services.db.user)"),
    ("", 'state_dir: "${env:PG_PASSWORD}"\n', "reconcile.yaml:8:12 (state_dir)"),
    ("", 'backup:\n  s3: { enabled: true, bucket: b, region: "${env:PG_PASSWORD}" }\n',
     "reconcile.yaml:9:43 (backup.s3.region)"),
])
def test_an_empty_variable_under_a_field_never_right_empty_fails_at_load(tmp_path, extra, head, where):
    error = only(spec_with(tmp_path, extra, head), {"PG_PASSWORD": ""})
    assert error.ref == "spec.empty-value" and str(error.location).endswith(where)
    assert error.message.endswith("is empty: ${env:PG_PASSWORD} is set but empty")
    assert "give PG_PASSWORD a value" in error.hint and "${env:PG_PASSWORD:-}" in error.hint


def test_an_empty_bucket_of_an_enabled_store_names_the_variable(tmp_path):
    error = only(spec_with(tmp_path, "", 'backup:\n  s3: { enabled: true, bucket: "${env:S3_BUCKET}" }\n'),
                 {"S3_BUCKET": ""})
    assert error.ref == "spec.s3-bucket" and str(error.location).endswith("reconcile.yaml:9:24 (backup.s3.bucket)")
    assert "(${env:S3_BUCKET} is set but empty)" in error.message and "give S3_BUCKET a value" in error.hint


def test_an_empty_file_under_a_password_names_the_file(tmp_path):
    (tmp_path / "pw.txt").write_text("\n")
    error = only(spec_with(tmp_path, 'env: { POSTGRES_PASSWORD: "${file:pw.txt}" }'), {})
    assert error.message == "POSTGRES_PASSWORD is empty: ${file:pw.txt} is an empty file"
    assert str(tmp_path / "pw.txt") in error.hint


def test_empty_where_empty_is_fine_or_asked_for_still_loads(tmp_path):
    path = spec_with(tmp_path, """\
        env: { OPTIONAL: "${env:E}", POSTGRES_PASSWORD: "${env:E:-}", PGPASSWORD: "x${env:E}" }
        labels: { note: "${env:E}" }
        command: ["run", "${env:E}"]
        """, 'backup:\n  s3: { enabled: false, region: "${env:E}", endpoint: "${env:E}" }\n')
    service = load_spec(path, {"E": ""}).spec.services["db"]
    assert [service.env[name].get_secret_value() for name in ("OPTIONAL", "POSTGRES_PASSWORD")] == ["", ""]


# -- 3. ${env:NAME:?message} and ${env:NAME?message} ---------------------------------------------

@pytest.mark.parametrize("reference,environ,state", [
    ("${env:API_IMAGE:?set API_IMAGE to the image CI built}", {}, "is not set"),
    ("${env:API_IMAGE:?set API_IMAGE to the image CI built}", {"API_IMAGE": ""}, "is set but empty"),
    ("${env:API_IMAGE?set API_IMAGE to the image CI built}", {}, "is not set"),
])
def test_a_required_reference_stops_with_the_operator_s_message(tmp_path, reference, environ, state):
    path = tmp_path / "reconcile.yaml"
    path.write_text(f'version: 1\nproject: demo\nservices:\n  api:\n    image: "{reference}"\n')
    error = only(path, environ)
    assert error.ref == "spec.interpolation" and f"environment variable API_IMAGE {state}" in error.message
    assert error.hint == "set API_IMAGE to the image CI built"
    assert str(error.location).endswith("reconcile.yaml:5:12 (services.api.image)")


@pytest.mark.parametrize("text,environ,value,outcome", [
    ("${env:X:?msg}", {"X": SECRET}, SECRET, Outcome.SET),
    ("${env:X?msg}", {"X": SECRET}, SECRET, Outcome.SET),
    ("${env:X?msg}", {"X": ""}, "", Outcome.EMPTY),
    ("${env:X}", {"X": ""}, "", Outcome.EMPTY),
    ("${env:X:-dflt}", {"X": ""}, "dflt", Outcome.DEFAULT),
    ("${env:X:-dflt}", {}, "dflt", Outcome.DEFAULT),
    ("${env:X:-}", {}, "", Outcome.DEFAULT),
    ("${env:X:-dflt}", {"X": "v"}, "v", Outcome.SET),
    ("${env:X-dflt}", {}, "dflt", Outcome.DEFAULT),
    ("${env:X-dflt}", {"X": ""}, "", Outcome.EMPTY),  # set, even empty: not the default
    ("${env:X-dflt}", {"X": SECRET}, SECRET, Outcome.SET),
    ("${env:X:+on}", {"X": SECRET}, "on", Outcome.ALTERNATIVE),
    ("${env:X:+on}", {"X": ""}, "", Outcome.OMITTED),
    ("${env:X:+on}", {}, "", Outcome.OMITTED),
    ("${env:X+on}", {"X": ""}, "on", Outcome.ALTERNATIVE),
    ("${env:X+on}", {}, "", Outcome.OMITTED),
])
def test_the_grammar_and_what_each_reference_records(text, environ, value, outcome):
    resolved = interpolate(text, environ, Path("."))
    assert resolved.value == value and [r.outcome for r in resolved.references] == [outcome]
    assert resolved.references[0].env == "X" and SECRET not in repr(resolved)


@pytest.mark.parametrize("text", ["${env:X:?}", "${env:X?}", "${env:X:? }"])
def test_a_required_reference_without_a_message_still_has_a_hint(text):
    with pytest.raises(InterpolationError) as info:
        interpolate(text, {"X": ""} if ":" in text[6:] else {}, Path("."))
    assert "X" in str(info.value) and info.value.hint == "export X=… (not empty) before running"


# -- 4. at the command line: exit 1, the variable named, the value nowhere ------------------------

def run(spec: Path, *args: str, environ: dict[str, str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "RECONCILE_NO_PREFETCH": "1", **environ}
    return subprocess.run([sys.executable, "-m", "reconciler", "-f", str(spec), *args], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=120)


@pytest.mark.parametrize("args", [("validate",), ("validate", "--json"), ("plan",), ("plan", "--json")])
def test_the_cli_names_the_variables_and_never_prints_their_values(tmp_path, args):
    path = tmp_path / "reconcile.yaml"
    path.write_text(textwrap.dedent("""\
        version: 1
        project: demo
        services:
          api:
            image: "${env:API_IMAGE}"
            ports: ["${env:API_PORT}:8000"]
            env: { DB_PASSWORD: "${env:DB_PASSWORD}" }
        backup:
          s3: { enabled: "${env:S3_ENABLED}", bucket: b }
        """))
    result = run(path, *args, environ={"API_IMAGE": "", "API_PORT": SECRET, "S3_ENABLED": SECRET + "-2",
                                       "DB_PASSWORD": ""})
    assert result.returncode == 1, result
    output = result.stdout + result.stderr
    assert SECRET not in output
    for words in ("image is empty: ${env:API_IMAGE} is set but empty", "${env:API_PORT}", "API_PORT",
                  "${env:S3_ENABLED}", "DB_PASSWORD is empty: ${env:DB_PASSWORD} is set but empty",
                  "reconcile.yaml:6:13", "reconcile.yaml:9:18"):
        assert words in output, (words, output)
    if "--json" in args:
        errors = json.loads(result.stdout)["errors"]
        assert len(errors) == 4 and all(e["hint"] and e["location"] for e in errors)
