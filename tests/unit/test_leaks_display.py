"""An old value read back from a container's config label holds resolved secrets: the plan
must not print them, in any rendering, even when the new spec writes that field without any
interpolation. Containers made since 2026-11-29 say which elements were interpolated (a label
of indexes); older ones, and the cases below made without it, rely on the display's rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.observe.codec import observed_from_dict
from reconciler.plan.planner import make_plan
from reconciler.plan.render import render_json, render_markdown, render_text
from reconciler.spec.load import load_spec
from tests.unit.test_planner_cases import (
    CASES,
    case_environ,
    made_container,
    observed_for,
)

SECRET = "C4cheRqPass-QRS"


def _plan_for(tmp_path: Path, service: str, now: str, made_from: dict, environ: dict[str, str]):
    spec_file = tmp_path / "reconcile.yaml"
    spec_file.write_text(f"version: 1\nproject: p\nservices:\n  {service}: {now}\n")
    loaded = load_spec(spec_file, environ)
    live = made_container({"service": service, "made_from": made_from}, loaded.spec, {})
    return make_plan(loaded, observed_from_dict({"project": "p", "containers": [live]}))


def _renderings(plan) -> list[str]:
    return [render_text(plan), render_markdown(plan), json.dumps(render_json(plan))]


def test_the_golden_case_hides_the_old_secrets_in_every_rendering() -> None:
    case = CASES / "old-secret-in-command"
    loaded = load_spec(case / "spec.yaml", case_environ(case))
    plan = make_plan(loaded, observed_for(case, loaded))
    for output in _renderings(plan):
        assert SECRET not in output and "Tok3nW0rker-LMN" not in output
        assert "(sensitive)" in output and "redis-server" in output


def test_a_dropped_command_element_is_hidden_even_when_its_secret_is_no_longer_set(tmp_path) -> None:
    plan = _plan_for(tmp_path, "cache", '{ image: "redis:7", command: ["redis-server"] }',
                     {"command": ["redis-server", "--requirepass", SECRET]}, {})
    (change,) = plan.actions[0].changes
    assert change.before == '["redis-server", "(sensitive)", "(sensitive)"]'
    assert all(SECRET not in output for output in _renderings(plan))


def test_a_replaced_element_that_holds_a_current_secret_is_hidden(tmp_path) -> None:
    now = '{ image: "redis:7", command: ["redis-server", "--save", "60"], env: { PW: "${env:PW}" } }'
    plan = _plan_for(tmp_path, "cache", now, {"command": ["redis-server", "--requirepass", SECRET]},
                     {"PW": SECRET})
    (change,) = plan.actions[0].changes
    assert change.before == '["redis-server", "--requirepass", "(sensitive)"]'


def test_a_removed_label_is_hidden_and_a_changed_harmless_one_is_shown(tmp_path) -> None:
    plan = _plan_for(tmp_path, "api", '{ image: "app:1", labels: { tier: web } }',
                     {"labels": {"tier": "api", "token": SECRET}}, {})
    changes = {change.field: (change.before, change.after) for change in plan.actions[0].changes}
    assert changes == {"labels.tier": ("api", "web"), "labels.token": ("(sensitive)", "(none)")}


@pytest.mark.parametrize("field", ["image", "user"])
def test_an_old_scalar_that_held_a_current_secret_is_hidden(tmp_path, field: str) -> None:
    now = '{ image: "app:1", user: "1000", env: { PW: "${env:PW}" } }'
    old = {"image": f"app:{SECRET}"} if field == "image" else {"user": SECRET}
    plan = _plan_for(tmp_path, "api", now, old, {"PW": SECRET})
    assert all(SECRET not in output for output in _renderings(plan))


def test_an_element_that_was_interpolated_stays_hidden_once_the_spec_writes_it_literally(tmp_path) -> None:
    """Apply records where a container's interpolated elements are (indexes, not values):
    `--requirepass ${env:PW}` → `--requirepass literal` with PW gone from the spec and from
    the environment of the plan still hides the old password."""
    from reconciler.apply.builders import service_labels
    from reconciler.observe.collect import container_from
    from reconciler.observe.models import Observed
    from reconciler.spec.normalise import LABEL_SENSITIVE

    spec_file = tmp_path / "reconcile.yaml"
    head = "version: 1\nproject: p\nservices:\n  cache:\n    image: redis:7\n"
    spec_file.write_text(head + '    command: ["redis-server", "--requirepass", "${env:PW}"]\n'
                                '    labels: { team: core, token: "${env:PW}" }\n')
    labels = service_labels(load_spec(spec_file, {"PW": SECRET}), "cache", "sha256:1")
    assert json.loads(labels[LABEL_SENSITIVE]) == {"command": [2], "labels": [1], "labels.token": [0]}
    assert SECRET not in labels[LABEL_SENSITIVE]
    doc = {"Id": "c1", "Name": "/p-cache", "Image": "sha256:1", "State": {"Status": "running"},
           "Config": {"Image": "redis:7", "Labels": labels}, "HostConfig": {}}

    spec_file.write_text(head + '    command: ["redis-server", "--requirepass", "now-literal"]\n'
                                '    labels: { team: core, token: plain }\n')
    plan = make_plan(load_spec(spec_file, {}), Observed("p", containers=(container_from(doc),)))
    changes = {c.field: c for c in plan.actions[0].changes}
    assert changes["command"].before == '["redis-server", "--requirepass", "(sensitive)"]'
    assert changes["labels.token"].before == "(sensitive)"
    assert all(SECRET not in output for output in _renderings(plan))


@pytest.mark.parametrize("old, new, hidden", [
    # QA: the common `sh -c "exec server --flag=X"` form printed its flags as written
    (["python3", "/app/worker.py"],
     ["sh", "-c", "exec python3 /app/worker.py --db-password=hunter2-pw --api-key hunter3-key"],
     ["hunter2-pw", "hunter3-key"]),
    (["sh", "-c", "PGPASSWORD=OldShellPw-1 exec psql -h db"], ["sh", "-c", "exec psql -h db"], ["OldShellPw-1"]),
    (["sh", "-c", "redis-server --requirepass 'Old Quoted-2'"], ["redis-server"], ["Old Quoted-2"]),
    (["sh", "-c", "curl -s https://app:UrlPw-333@api/x"], ["true"], ["UrlPw-333"]),
])
def test_secret_flags_inside_a_shell_line_are_hidden_on_both_sides(tmp_path, old, new, hidden) -> None:
    plan = _plan_for(tmp_path, "worker", json.dumps({"image": "w", "command": new}), {"command": old}, {})
    (change,) = [c for c in plan.actions[0].changes if c.field == "command"]
    assert "(sensitive)" in change.before + change.after
    for text in _renderings(plan):
        for secret in hidden:
            assert secret not in text, text


def test_a_shell_line_keeps_what_is_not_secret(tmp_path) -> None:
    line = "exec server --token-file /run/token --verbose --port 80 --api-key K3y-value"
    plan = _plan_for(tmp_path, "worker", json.dumps({"image": "w", "command": ["sh", "-c", line]}),
                     {"command": ["server"]}, {})
    (change,) = [c for c in plan.actions[0].changes if c.field == "command"]
    assert change.after == ('["sh", "-c", "exec server --token-file /run/token --verbose --port 80 '
                            '--api-key (sensitive)"]')
