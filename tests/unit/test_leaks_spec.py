"""Spec errors name the file, line, column and key, never a value: a YAML problem from the
parser and an unusable S3 endpoint both come from text that may hold a secret."""

from __future__ import annotations

import json
import textwrap
import warnings
from pathlib import Path

import pytest

from reconciler.errors import SpecError
from reconciler.spec.load import load_spec

SECRET = "S3cr3tPgPw-XYZ"


def _error(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> SpecError:
    spec_file = tmp_path / "reconcile.yaml"
    spec_file.write_text(textwrap.dedent(text))
    with pytest.raises(SpecError) as info:
        load_spec(spec_file, environ or {})
    return info.value


def _all_text(error: SpecError) -> str:
    return f"{error}\n{error!r}\n{json.dumps(error.as_dict())}"


def test_a_duplicate_key_names_the_key_and_place_not_the_values(tmp_path) -> None:
    error = _error(tmp_path, f"""\
        version: 1
        project: p
        services:
          db:
            image: postgres:16
            env:
              POSTGRES_PASSWORD: "{SECRET}"
              POSTGRES_PASSWORD: "${{env:AUD_PG_PW}}"
        """, {"AUD_PG_PW": "Other-S3cr3t-42"})
    text = _all_text(error)
    assert SECRET not in text and "AUD_PG_PW" not in text and "Other-S3cr3t-42" not in text
    assert "reconcile.yaml:8:7" in str(error) and "POSTGRES_PASSWORD" in str(error)
    assert error.ref == "spec.yaml" and "once" in error.hint


def test_an_undefined_alias_is_not_echoed(tmp_path) -> None:
    error = _error(tmp_path, f"version: 1\nproject: p\nservices:\n  db: {{ image: *{SECRET} }}\n")
    assert SECRET not in _all_text(error)
    assert "reconcile.yaml:4:" in str(error) and "undefined alias" in str(error)


def test_an_unsafe_key_name_is_left_out_too(tmp_path) -> None:
    error = _error(tmp_path, f'x:\n  "a {SECRET}": 1\n  "a {SECRET}": 2\n')
    assert SECRET not in _all_text(error) and "reconcile.yaml:3:" in str(error)


def test_the_parser_s_warnings_do_not_quote_the_document(tmp_path) -> None:
    spec_file = tmp_path / "reconcile.yaml"
    spec_file.write_text(f"version: 1\nproject: p\na: &x 1\nb: &x {SECRET}\nservices: {{}}\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(SpecError):
            load_spec(spec_file, {})
    assert not [w for w in caught if SECRET in str(w.message)]


def test_useful_parser_problems_keep_their_token_names(tmp_path) -> None:
    error = _error(tmp_path, "version: 1\nproject: [unclosed\n")
    assert "expected ',' or ']'" in str(error) and "reconcile.yaml:3:1" in str(error)


S3_SPEC = """\
version: 1
project: p
services:
  db:
    image: postgres:16
backup:
  s3:
    enabled: {enabled}
    endpoint: "${{env:S3_ENDPOINT}}"
    bucket: b
"""
BAD_ENDPOINT = "http://127.0.0.1:9555 AKIAAUDSECS3KEY0001"


@pytest.mark.parametrize("endpoint", [BAD_ENDPOINT, "http://127.0.0.1:95x5AKIAAUDSECS3KEY0001",
                                      "ftp://AKIAAUDSECS3KEY0001", "AKIAAUDSECS3KEY0001"])
def test_an_unusable_s3_endpoint_is_a_spec_error_without_its_value(tmp_path, endpoint: str) -> None:
    error = _error(tmp_path, S3_SPEC.format(enabled="true"), {"S3_ENDPOINT": endpoint})
    assert "AKIAAUDSECS3KEY0001" not in _all_text(error)
    assert "reconcile.yaml:9:15" in str(error) and "backup.s3.endpoint" in str(error)


def test_a_disabled_store_s_endpoint_is_not_checked(tmp_path) -> None:
    spec_file = tmp_path / "reconcile.yaml"
    spec_file.write_text(S3_SPEC.format(enabled="false"))
    assert load_spec(spec_file, {"S3_ENDPOINT": BAD_ENDPOINT}).spec.backup.s3.endpoint == BAD_ENDPOINT


def test_a_usable_endpoint_loads(tmp_path) -> None:
    spec_file = tmp_path / "reconcile.yaml"
    spec_file.write_text(S3_SPEC.format(enabled="true"))
    loaded = load_spec(spec_file, {"S3_ENDPOINT": "https://user:pw@[::1]:9000"})
    assert loaded.spec.backup.s3.endpoint == "https://user:pw@[::1]:9000"
