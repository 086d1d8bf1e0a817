"""A saved plan runs only as it was reviewed: the file alone is never trusted.

``reconcile plan --out FILE`` on a pull request, ``reconcile apply FILE`` on merge: between
the two the spec may be edited and the file may be edited. Either is refused before anything
changes; an edited file must never remove a protected database or another project's container.
"""

from __future__ import annotations

import json

import pytest

from tests.integration.apply_support import (
    apply,
    checksum,
    cli,
    containers,
    lab_env,
    pg_spec,
    pg_stack,
    show,
)

pytestmark = pytest.mark.engine


@pytest.fixture()
def stack(client, project, tmp_path):
    return pg_stack(client, project, tmp_path, rows=200)


def saved_plan(spec, env, path) -> dict:
    result = cli(spec, env, "plan", "--out", str(path))
    assert result.returncode == 0, show(result)
    assert f"Apply it with: reconcile -f {spec} apply {path}" in result.stdout  # the spec it needs
    return json.loads(path.read_text())


def untouched(client, project, name, before_id, rows):
    now = containers(client, project)
    assert now[name]["Id"] == before_id and now[name]["State"]["Running"]
    assert checksum(client, name) == rows


def test_a_spec_edited_after_the_plan_is_refused(client, project, stack, tmp_path):
    """The reviewed plan recreates postgres for TUNING=b; the spec now says c. The action list
    reads the same (env values are not shown), but what would be built is not what was reviewed."""
    spec, env, name, rows = stack
    before = containers(client, project)[name]["Id"]
    saved = tmp_path / "plan.json"
    saved_plan(spec, {**env, "PG_TUNING": "b"}, saved)
    result = cli(spec, {**env, "PG_TUNING": "c"}, "apply", str(saved))
    assert result.returncode == 1, show(result)
    assert "error[plan.spec-changed]" in result.stderr and "not the reviewed plan" in result.stderr
    untouched(client, project, name, before, rows)
    done = cli(spec, {**env, "PG_TUNING": "b"}, "apply", str(saved))  # the reviewed world: it runs
    assert done.returncode == 0, show(done)
    assert containers(client, project)[name]["Id"] != before and checksum(client, name) == rows


def test_an_image_tag_changed_through_the_environment_is_called_a_spec_change(client, project, stack, tmp_path):
    """The image reference is part of what the engine state is read for: the spec check
    comes first, so the error says what changed (not "the engine changed")."""
    spec, env, name, rows = stack
    before = containers(client, project)[name]["Id"]
    saved = tmp_path / "plan.json"
    saved_plan(spec, {**env, "PG_TUNING": "b"}, saved)
    result = cli(spec, {**env, "PG_TUNING": "b", "LAB_PG_VERSION": "17"}, "apply", str(saved))
    assert result.returncode == 1, show(result)
    assert "error[plan.spec-changed]" in result.stderr and "${env:" in result.stderr
    untouched(client, project, name, before, rows)


def test_a_reviewed_plan_whose_backup_settings_changed_is_refused(client, project, stack, tmp_path):
    """QA: moving the backup folder (or turning S3 off, dropping a critical table) after the
    review went through: the plan covered only the containers' configs. Nothing runs, nothing
    is backed up to the folder nobody reviewed."""
    spec, env, name, rows = stack
    before = containers(client, project)[name]["Id"]
    saved = tmp_path / "plan.json"
    saved_plan(spec, {**env, "PG_TUNING": "b"}, saved)
    elsewhere = tmp_path / "unreviewed-backups"
    result = cli(spec, {**env, "PG_TUNING": "b", "LAB_BACKUP_DIR": str(elsewhere)}, "apply", str(saved))
    assert result.returncode == 1, show(result)
    assert "error[plan.spec-changed]" in result.stderr
    assert not elsewhere.exists()
    untouched(client, project, name, before, rows)
    spec.write_text(spec.read_text().replace("critical_tables: [users]", "critical_tables: []"))
    result = cli(spec, {**env, "PG_TUNING": "b"}, "apply", str(saved))
    assert result.returncode == 1 and "error[plan.spec-changed]" in result.stderr, show(result)
    untouched(client, project, name, before, rows)


def test_an_edited_plan_cannot_skip_the_backup_of_a_protected_database(client, project, stack, tmp_path):
    spec, env, name, rows = stack
    before = containers(client, project)[name]["Id"]
    saved = tmp_path / "plan.json"
    data = saved_plan(spec, {**env, "PG_TUNING": "b"}, saved)
    data["actions"] = [{"id": "remove:postgres", "kind": "remove", "resource": "postgres",
                        "cause": "cleanup", "container_id": before, "stateful": False, "protected": False}]
    saved.write_text(json.dumps(data))
    result = cli(spec, {**env, "PG_TUNING": "b"}, "apply", "--json", str(saved))
    assert result.returncode == 1, show(result)
    error = json.loads(result.stdout.splitlines()[-1])
    assert error["event"] == "error" and error["error"] == "plan.tampered", error
    untouched(client, project, name, before, rows)


def test_an_edited_plan_cannot_remove_another_projects_container(client, project, stack, tmp_path):
    spec, env, name, rows = stack
    other = f"{project}x-victim"
    victim = client.api.create_container("reconcile-lab/debian:bookworm", ["sleep", "infinity"], name=other,
                                         labels={"reconcile.project": f"{project}x"})
    try:
        saved = tmp_path / "plan.json"
        data = saved_plan(spec, env, saved)  # no changes: an empty plan, with this engine's fingerprint
        assert data["actions"] == []
        data["actions"] = [{"id": "remove:victim", "kind": "remove", "resource": "victim", "cause": "x",
                            "container_id": victim["Id"]}]
        saved.write_text(json.dumps(data))
        result = cli(spec, env, "apply", str(saved))
        assert result.returncode == 1 and "error[plan.tampered]" in result.stderr, show(result)
        assert client.api.inspect_container(victim["Id"])["Name"] == f"/{other}"
    finally:
        client.api.remove_container(victim["Id"], force=True)
    untouched(client, project, name, containers(client, project)[name]["Id"], rows)


@pytest.mark.parametrize("content", ["[]", "null", '"x"', '{"format": 1}'])
def test_a_file_that_is_not_a_plan_is_refused_cleanly(project, tmp_path, content):
    spec, env = pg_spec(tmp_path), lab_env(project, tmp_path)
    saved = tmp_path / "plan.json"
    saved.write_text(content)
    result = cli(spec, env, "apply", "--json", str(saved))
    assert result.returncode == 1, show(result)
    assert "Traceback" not in result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["error"] == "plan.unreadable"


WEB_SPEC = """\
version: 1
project: "${env:LAB_PROJECT}"
state_dir: "${env:LAB_STATE_DIR}"
services:
  web:
    kind: http
    image: reconcile-lab/nginx:latest
    health: { http: { port: 80, path: /health }, timeout: 5s, interval: 1s }
backup:
  local: { path: "${env:LAB_BACKUP_DIR}" }
"""


def test_a_saved_plan_never_turns_into_an_unreviewed_recreate(client, project, tmp_path):
    """The reviewed plan changes nothing; by merge time the service answers 500 (its own
    files changed, so a restart does not help). apply restarts it, a fix in place, and then
    stops: recreating it is a new plan, for review, not something the old approval covers."""
    spec, env = tmp_path / "web.yaml", lab_env(project, tmp_path)
    spec.write_text(WEB_SPEC)
    assert apply(spec, env).returncode == 0
    saved = tmp_path / "plan.json"
    assert saved_plan(spec, env, saved)["actions"] == []
    name = f"{project}-web"
    before = containers(client, project)[name]["Id"]
    broken = "sed -i 's/return 200/return 500/' /etc/nginx/conf.d/default.conf && nginx -s reload"
    client.api.exec_start(client.api.exec_create(name, ["sh", "-c", broken]))
    result = cli(spec, env, "apply", str(saved))
    assert result.returncode == 1, show(result)
    assert "error[plan.needs-recreate]" in result.stderr, show(result)
    assert containers(client, project)[name]["Id"] == before  # restarted, never replaced


def test_plan_files_are_private_and_an_unwritable_path_is_a_clear_error(project, tmp_path):
    spec, env = pg_spec(tmp_path), lab_env(project, tmp_path)
    saved = tmp_path / "plan.json"
    saved_plan(spec, env, saved)
    assert saved.stat().st_mode & 0o777 == 0o600  # names, images and hashes of the stack
    result = cli(spec, env, "plan", "--json", "--out", str(tmp_path / "missing" / "plan.json"))
    assert result.returncode == 1 and "Traceback" not in result.stderr, show(result)
    assert json.loads(result.stdout)["error"] == "plan.write"
