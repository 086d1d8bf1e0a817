"""Backup settings that every backup would trip on are spec errors, found by `validate`:
a policy that keeps nothing, a time zone that does not exist, an S3 store with no bucket."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from reconciler.errors import SpecErrors
from reconciler.spec.load import load_spec

SPEC = """\
version: 1
project: demo
services:
  db:
    kind: postgres
    image: postgres:16
    stateful: true
backup:
  retention: {retention}
"""


def load(tmp_path, retention: str):
    path = tmp_path / "reconcile.yaml"
    path.write_text(textwrap.dedent(SPEC).replace("{retention}", retention))
    return load_spec(path, {})


def errors_of(tmp_path, retention: str) -> list:
    with pytest.raises(SpecErrors) as info:
        load(tmp_path, retention)
    return info.value.errors


@pytest.mark.parametrize("retention", [
    "{ daily: 0, weekly: 0, monthly: 0 }",
    "{ daily: 0, weekly: 0, monthly: 0, timezone: Europe/Berlin }",
])
def test_a_policy_that_keeps_nothing_is_refused_with_place_and_hint(tmp_path, retention):
    [error] = errors_of(tmp_path, retention)
    assert error.ref == "spec.retention"
    assert str(error.location) == f"{tmp_path}/reconcile.yaml:9:3 (backup.retention)"
    assert "keeps nothing" in error.message
    assert "daily: 7" in error.hint and "--no-prune" in error.hint


@pytest.mark.parametrize(("zone", "hint"), [
    ("Mars/Base", "use an IANA name such as UTC or Europe/Berlin"),
    ("europe/berlin", "did you mean 'Europe/Berlin'?"),
    ("Europe/Berln", "did you mean 'Europe/Berlin'?"),
    ("Europe", "IANA name"),
    ("../../etc/passwd", "IANA name"),
    ('""', "IANA name"),
])
def test_an_unknown_timezone_is_refused_with_place_and_hint(tmp_path, zone, hint):
    [error] = errors_of(tmp_path, f"{{ daily: 7, timezone: {zone} }}")
    assert error.ref == "spec.timezone"
    assert "reconcile.yaml:9:26 (backup.retention.timezone)" in str(error.location)
    assert hint in error.hint


@pytest.mark.parametrize("retention", [
    "{ daily: 1, weekly: 0, monthly: 0 }",
    "{ daily: 0, weekly: 0, monthly: 1, timezone: UTC }",
    "{ timezone: America/New_York }",
    "{}",
])
def test_policies_that_keep_something_in_a_real_zone_load(tmp_path, retention):
    assert load(tmp_path, retention).spec.backup.retention.keeps_anything


def test_validate_exits_1_and_names_both_problems(tmp_path):
    path = tmp_path / "reconcile.yaml"
    path.write_text(textwrap.dedent(SPEC).replace(
        "{retention}", "{ daily: 0, weekly: 0, monthly: 0, timezone: Mars/Base }"))
    result = subprocess.run([sys.executable, "-m", "reconciler", "-f", str(path), "validate"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "reconcile.yaml:9:3 (backup.retention): backup.retention keeps nothing" in result.stderr
    assert "(backup.retention.timezone): backup.retention.timezone is not a known time zone" \
        in result.stderr
    assert result.stderr.count("hint:") == 2


def test_an_enabled_s3_store_without_a_bucket_is_refused_with_place_and_hint(tmp_path):
    path = tmp_path / "reconcile.yaml"
    path.write_text(textwrap.dedent(SPEC).replace("  retention: {retention}", "  s3: { enabled: true }"))
    with pytest.raises(SpecErrors) as info:
        load_spec(path, {})
    [error] = info.value.errors
    assert error.ref == "spec.s3-bucket" and "names no bucket" in error.message
    assert str(error.location) == f"{tmp_path}/reconcile.yaml:9:3 (backup.s3)"
    assert "backup.s3.bucket" in error.hint
    path.write_text(textwrap.dedent(SPEC).replace("  retention: {retention}", "  s3: { enabled: false }"))
    assert load_spec(path, {}).spec.backup.s3.enabled is False
