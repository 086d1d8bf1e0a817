"""The forms a secret is printed in: a URL's password, URL-encoded, base64; and the engines'
``Target.redact`` masking a URL env value's password."""

from __future__ import annotations

import base64
import textwrap
from urllib.parse import quote

import pytest

from reconciler.engines.base import make_target
from reconciler.operate.redact import MASK, Redactor, url_passwords
from reconciler.spec.load import load_spec

SPEC = """\
version: 1
project: shop
state_dir: ./state
services:
  db:
    kind: postgres
    image: postgres:16
    env: { POSTGRES_PASSWORD: "S3cr3tPgPw-XYZ", POSTGRES_DB: x }
  api:
    image: shop/api:1
    env:
      DATABASE_URL: "postgresql://app:L1teralDbUrlPw-GHI@db/x"
      CACHE_DSN: "redis://:p%40ss-w0rd@cache:6379/0"
"""


@pytest.fixture()
def loaded(tmp_path):
    path = tmp_path / "reconcile.yaml"
    path.write_text(textwrap.dedent(SPEC))
    return load_spec(path, {})


def test_the_password_of_a_url_value_is_masked_wherever_the_url_is_printed(loaded):
    redact = Redactor.for_spec(loaded)
    line = "connecting to postgresql://app:L1teralDbUrlPw-GHI@db:5432/x?sslmode=disable"
    assert redact(line) == f"connecting to postgresql://app:{MASK}@db:5432/x?sslmode=disable"
    assert redact("auth failed for p@ss-w0rd") == f"auth failed for {MASK}"  # decoded too
    assert redact("dsn redis://:p%40ss-w0rd@cache:1/0") == f"dsn redis://:{MASK}@cache:1/0"


@pytest.mark.parametrize(("value", "expected"), [
    ("postgresql://app:pw-123@db/x", ["pw-123"]),
    ("redis://:p%40ss@cache:6379", ["p%40ss", "p@ss"]),
    ("postgresql://app@db/x", []),
    ("https://example.com/x", []),
    ("not a url: a:b@c", []),
    ("http://[::1", []),  # unclosed IPv6 bracket: urlsplit refuses it
])
def test_url_passwords(value, expected):
    assert url_passwords(value) == expected


def test_url_encoded_and_base64_forms_are_masked():
    secret = "p@ss/w0rd+x"
    redact = Redactor([secret])
    b64 = base64.b64encode(secret.encode()).decode()
    assert redact(f"q={quote(secret, safe='')}&r=1") == f"q={MASK}&r=1"
    assert redact(f"Authorization: Basic {b64}") == f"Authorization: Basic {MASK}"
    assert redact(f"token {b64.rstrip('=')}.") == f"token {MASK}."


def test_short_values_keep_their_encoded_forms_readable():
    redact = Redactor(["abcde"])  # masked as is, but its base64 would hit ordinary text
    assert redact("abcde YWJjZGU") == f"{MASK} YWJjZGU"


def test_an_interpolated_project_name_and_folders_stay_readable(tmp_path):
    path = tmp_path / "reconcile.yaml"
    path.write_text('version: 1\nproject: "${env:P}"\nstate_dir: "${env:S}"\n'
                    'backup: { local: { path: "${env:B}/backups" } }\n'
                    'services: { api: { image: "shop/api:${env:TAG}" } }\n')
    redact = Redactor.for_spec(load_spec(path, {"P": "shop-it", "S": "/srv/state", "B": "/srv/data",
                                                "TAG": "build-4711"}))
    text = ("docker start shop-it-api; journal /srv/state/journal/a.jsonl; "
            "backup /srv/data/backups/x.zst; image shop/api:build-4711")
    assert redact(text) == text  # nor is an image tag: the plan and the logs say what runs


def test_an_image_tag_taken_from_a_secret_s_variable_stays_hidden(tmp_path):
    path = tmp_path / "reconcile.yaml"
    path.write_text('version: 1\nproject: p\nservices: { api: { image: "shop/api:${env:PW}", '
                    'env: { DB_PASSWORD: "${env:PW}" } } }\n')
    loaded = load_spec(path, {"PW": "Hunter2-Pw"})
    assert loaded.shown(("services", "api", "image"), "shop/api:Hunter2-Pw") == "shop/api:(sensitive)"
    assert "Hunter2-Pw" not in Redactor.for_spec(loaded)("image shop/api:Hunter2-Pw")


def test_an_engine_target_masks_the_password_of_its_url_env_only(loaded):
    target = make_target("api", loaded.spec.services["api"], "c", "h")
    text = "error: postgresql://app:L1teralDbUrlPw-GHI@db:5432/x unreachable"
    assert target.redact(text) == "error: postgresql://app:***@db:5432/x unreachable"


def test_a_secret_written_literally_on_a_command_line_is_masked(tmp_path):
    path = tmp_path / "reconcile.yaml"
    path.write_text(SPEC + '    command: ["api", "--db-password=Cmd1ineSecret-A", "--api-key", "Cmd1ineKey-B",\n'
                           '              "--token-file", "/run/secrets/token", "--verbose"]\n')
    loaded = load_spec(path, {})
    redact = Redactor.for_spec(loaded)
    text = redact("started api --db-password=Cmd1ineSecret-A --api-key Cmd1ineKey-B from /run/secrets/token")
    assert "Cmd1ineSecret-A" not in text and "Cmd1ineKey-B" not in text
    assert "/run/secrets/token" in text  # where a secret is kept is not the secret
    assert Redactor.for_service(loaded, "api")("key Cmd1ineKey-B") == f"key {MASK}"


def test_a_password_in_docker_host_is_not_printed(monkeypatch):
    from reconciler import dockerio
    from reconciler.errors import EngineError

    monkeypatch.setenv("DOCKER_HOST", "tcp://ops:D0ckerH0stPw-Q@127.0.0.1:1")
    with pytest.raises(EngineError) as caught:
        dockerio.connect(timeout=1)
    assert "D0ckerH0stPw-Q" not in str(caught.value)
    assert f"tcp://ops:{MASK}@127.0.0.1:1" in caught.value.message
