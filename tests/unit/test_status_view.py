"""`reconcile status`: the image a service's container runs (not only the one the spec names),
secrets kept out of it, and a long image reference folded to the terminal's width."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from rich.console import Console

from reconciler.observe.models import Health, Observed, ObservedContainer, Role, State
from reconciler.operate.show import print_status
from reconciler.operate.status import rows
from reconciler.spec.load import load_spec

NOW = datetime(2026, 11, 29, 20, 0, tzinfo=UTC)
DIGEST = "ghcr.io/example-org/healthcare-backend@sha256:" + "4f2a9c1e0b7d3a5f" * 4


def loaded_spec(tmp_path, image: str, environ: dict | None = None, env: str = ""):
    path = tmp_path / "reconcile.yaml"
    path.write_text(f'version: 1\nproject: shop\nservices:\n  api:\n    image: "{image}"\n{env}'
                    '  worker: { image: "app:2", profile: app }\n')
    return load_spec(path, environ or {})


def box(service: str, image: str, sensitive: dict | None = None) -> ObservedContainer:
    return ObservedContainer(id=f"id-{service}", name=f"shop-{service}", project="shop", service=service,
                             profile="default", role=Role.CURRENT, spec_hash="h", config={}, image_ref=image,
                             image_id="sha256:" + "1" * 64, state=State.RUNNING, health=Health.NONE,
                             started_at="2026-11-29T19:58:00Z", sensitive=sensitive)


def image_text(row: dict) -> str:
    from reconciler.operate.show import image_text

    return image_text(row)


def by_service(loaded, *containers: ObservedContainer) -> dict[str, dict]:
    table = rows(loaded, Observed("shop", containers), {}, [], {}, NOW)
    return {row["service"]: row for row in table}


def test_the_running_image_is_shown_and_the_spec_s_beside_it_when_they_differ(tmp_path):
    loaded = loaded_spec(tmp_path, "app:${env:APP_VERSION:-1}", {"APP_VERSION": "2"})
    found = by_service(loaded, box("api", "app:1"))
    api, worker = found["api"], found["worker"]
    assert (api["image"], api["running_image"], api["image_matches_spec"]) == ("app:2", "app:1", False)
    assert image_text(api) == "app:1 (spec: app:2)"
    assert (worker["image"], worker["running_image"], worker["image_matches_spec"]) == ("app:2", None, None)
    assert image_text(worker) == "app:2"  # no container: the spec's
    same = by_service(loaded, box("api", "app:2"))["api"]
    assert (same["running_image"], same["image_matches_spec"], image_text(same)) == ("app:2", True, "app:2")


def test_a_secret_in_an_image_reference_stays_hidden_on_both_sides(tmp_path):
    env = '    env: { DB_PASSWORD: "${env:PW}" }\n'
    loaded = loaded_spec(tmp_path, "app:${env:PW}", {"PW": "hunter2222"}, env)
    same = by_service(loaded, box("api", "app:hunter2222"))["api"]
    assert same["image_matches_spec"] is True and "hunter2222" not in json.dumps(same)
    old = by_service(loaded, box("api", "app:oldsecret99", sensitive={"image": [0]}))["api"]
    assert old["image_matches_spec"] is False
    assert "oldsecret99" not in json.dumps(old) and "hunter2222" not in json.dumps(old)
    assert "(sensitive)" in image_text(old)


def test_an_old_image_holding_a_current_secret_is_hidden_though_the_spec_image_is_literal(tmp_path):
    env = '    env: { DB_PASSWORD: "${env:PW}" }\n'
    loaded = loaded_spec(tmp_path, "app:2", {"PW": "hunter2222"}, env)
    row = by_service(loaded, box("api", "app:hunter2222"))["api"]  # made before the labels said so
    assert row["image_matches_spec"] is False and "hunter2222" not in json.dumps(row)
    assert image_text(row) == "(sensitive) (spec: app:2)"  # as a plan shows such an old image


def status(image: str, running: str) -> dict:
    row = {"service": "api", "profile": "app", "image": image, "running_image": running,
           "image_matches_spec": image == running, "state": "running", "health": "healthy", "uptime": "2m 23s",
           "restarts": 0, "last_backup": {"local": "2026-11-29T03:32:58Z", "s3": None},
           "last_apply": "2026-11-29T03:40:00Z"}
    cache = {**row, "service": "dragonfly", "profile": "infrastructure", "image": "redis:7",
             "running_image": "redis:7", "image_matches_spec": True}
    return {"project": "shop", "services": [cache, row], "warnings": [],
            "last_apply": {"apply_id": "20261129T041209Z-4fe217", "result": "ok",
                           "started": "2026-11-29T04:12:09Z", "duration_s": 10.1}}


def test_a_digest_pinned_image_is_folded_to_an_80_column_terminal_and_nothing_is_cut():
    console = Console(force_terminal=True, width=80, no_color=True, soft_wrap=True, record=True)
    print_status(status(DIGEST, DIGEST.replace("4f2a", "0000")), console)
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80, "\n".join(lines)
    start = lines[1].index("details")
    details = "".join(line[start:].rstrip() for line in lines[2:])
    assert f"{DIGEST.replace('4f2a', '0000')} (spec:" in details
    assert DIGEST in details and "…" not in "".join(lines)
    assert any(line.startswith("dragonfly ") for line in lines) and "redis:7" in details


def test_a_pipe_gets_the_running_and_the_spec_image_on_the_service_s_one_line(capsys):
    print_status(status("app:2", "app:1"))
    lines = capsys.readouterr().out.splitlines()
    assert "app:1 (spec: app:2)" in next(line for line in lines if line.startswith("api "))
