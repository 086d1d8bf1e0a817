"""A malformed S3 endpoint (often from an env var, sometimes with a key pasted after it) is a
StorageError naming the setting, not a traceback that quotes the value."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from reconciler.errors import StorageError
from reconciler.spec.models import S3Store as S3Settings
from reconciler.storage.s3 import S3Store
from reconciler.storage.s3errors import display_endpoint

KEY = "AKIAAUDSECS3KEY0001"
BAD = [f"http://127.0.0.1:9555 {KEY}", f"http://127.0.0.1:9555{KEY}", f"http://[{KEY}", f"{KEY}",
       f"s3://{KEY}", f"http://:9000/{KEY}"]


@pytest.mark.parametrize("endpoint", BAD)
def test_display_endpoint_refuses_a_malformed_endpoint_without_quoting_it(endpoint: str) -> None:
    with pytest.raises(StorageError) as info:
        display_endpoint(endpoint, "us-east-1")
    text = f"{info.value}\n{info.value!r}\n{info.value.as_dict()}"
    assert KEY not in text and "backup.s3.endpoint" in text and info.value.hint
    assert info.value.exit_code == 1


def test_the_store_refuses_it_before_botocore_sees_it() -> None:
    settings = S3Settings.model_construct(enabled=True, endpoint=BAD[0], bucket="b")
    with pytest.raises(StorageError) as info:
        S3Store(settings, "access", "secret")
    assert KEY not in str(info.value)


@pytest.mark.parametrize(("endpoint", "shown"), [
    (None, "AWS S3 (eu-west-1)"), ("http://127.0.0.1:9555", "http://127.0.0.1:9555"),
    ("https://user:pw@s3.example.com/", "https://s3.example.com/"),
])
def test_a_usable_endpoint_is_shown_without_user_info(endpoint: str | None, shown: str) -> None:
    assert display_endpoint(endpoint, "eu-west-1") == shown


def test_backups_list_exits_1_with_no_traceback_and_no_value(tmp_path) -> None:
    spec_file = tmp_path / "reconcile.yaml"
    spec_file.write_text(textwrap.dedent("""\
        version: 1
        project: p
        services:
          db: { image: "postgres:16" }
        backup:
          s3: { enabled: true, endpoint: "${env:S3_ENDPOINT}", bucket: b }
        """))
    env = {**os.environ, "NO_COLOR": "1", "S3_ENDPOINT": BAD[0], "S3_ACCESS_KEY_ID": "a",
           "S3_SECRET_ACCESS_KEY": "b"}
    result = subprocess.run([sys.executable, "-m", "reconciler", "-f", str(spec_file), "backups", "list"],
                            capture_output=True, text=True, timeout=120, check=False, env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert KEY not in output and "Traceback" not in output and "backup.s3.endpoint" in output
