"""Renderings of a plan: JSON round-trips, Markdown for PRs, colour markup, and no secrets."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from test_planner_cases import CASES, case_environ, made_container, observed_for

from reconciler.observe.codec import observed_from_dict
from reconciler.observe.models import Observed
from reconciler.plan.actions import Action, ActionKind, Change, Plan
from reconciler.plan.planner import make_plan
from reconciler.plan.render import (
    MARKER,
    NO_CHANGES,
    escape,
    render_json,
    render_markdown,
    render_text,
    summary,
)
from reconciler.spec.load import load_spec

SECRETS = ("hunter2-secret", "hunter2-old", "tok3n-value")

SECRET_SPEC = """\
version: 1
project: vault
volumes:
  data: { bind: "/srv/${env:DATA_DIR}" }
services:
  db:
    profile: infrastructure
    kind: postgres
    image: "postgres:16"
    env: { POSTGRES_PASSWORD: "${env:DB_PASSWORD}", PLAIN: not-a-secret-but-hidden }
    volumes: ["data:/var/lib/postgresql/data"]
    stateful: true
  api:
    image: "acme/api:${env:API_TAG}"
    command: ["api", "--token=${env:API_TOKEN}"]
    labels: { owner: "${env:OWNER}" }
    ports: ["127.0.0.1:${env:API_PORT}:8000"]
    env: { TOKEN: "${env:API_TOKEN}" }
"""

SECRET_ENV = {"DB_PASSWORD": "hunter2-secret", "API_TAG": "hunter2-secret", "API_TOKEN": "tok3n-value",
              "OWNER": "hunter2-secret", "API_PORT": "48213", "DATA_DIR": "hunter2-secret"}


def case_plan(name: str) -> Plan:
    case = CASES / name
    loaded = load_spec(case / "spec.yaml", case_environ(case))
    return make_plan(loaded, observed_for(case, loaded))


def secret_plan(tmp_path: Path) -> Plan:
    """A stack whose interpolated values are secret (its image tag and host port are not: they
    are shown as they resolve, but the tag takes a password's variable), made from older
    secret values."""
    spec_file = tmp_path / "reconcile.yaml"
    spec_file.write_text(SECRET_SPEC)
    loaded = load_spec(spec_file, SECRET_ENV)
    old_api = {"image": "acme/api:v1", "command": ["api", "--token=hunter2-old"],
               "labels": {"owner": "hunter2-old"}, "ports": ["127.0.0.1:41111:8000"],
               "env": {"TOKEN": "hunter2-old"}}
    containers = [
        made_container({"service": "db", "made_from": {"env": {"POSTGRES_PASSWORD": "hunter2-old"}},
                        "made_from_volumes": {"data": {"bind": "/srv/hunter2-old"}}}, loaded.spec, {}),
        made_container({"service": "api", "made_from": old_api}, loaded.spec, {}),
    ]
    observed = observed_from_dict({"project": "vault", "containers": containers,
                                   "missing_images": ["acme/api:hunter2-secret"]})
    return make_plan(loaded, observed)


def test_no_secret_reaches_any_rendering(tmp_path: Path) -> None:
    plan = secret_plan(tmp_path)
    assert {a.id for a in plan.actions} >= {"recreate:api", "recreate:db", "restore:db"}
    outputs = [render_text(plan), render_text(plan, color=True), render_markdown(plan),
               json.dumps(render_json(plan))]
    for output in outputs:
        for secret in SECRETS:
            assert secret not in output
    text = outputs[0]
    assert "image acme/api:(sensitive) → acme/api:(sensitive)" in text  # the tag is a password's variable
    assert "ports: 127.0.0.1:41111:8000/tcp → 127.0.0.1:48213:8000/tcp" in text  # ports are public
    assert 'command: ["api", "--token=(sensitive)"] → ["api", "--token=(sensitive)"]' in text
    assert "labels.owner: (sensitive) → (sensitive)" in text
    assert "env.TOKEN: (sensitive) → (sensitive)" in text
    assert "(bind /srv/(sensitive))" in text


def test_json_round_trips_through_plan_from_dict() -> None:
    plan = case_plan("postgres-major-upgrade")
    data = json.loads(json.dumps(render_json(plan)))
    assert Plan.from_dict(data) == plan
    assert data["format"] == 1 and data["changes"] is True
    assert data["summary"] == {"backup": 1, "recreate": 1, "restore": 1, "verify": 1}
    assert [a["id"] for a in data["actions"]] == [
        "backup:postgres", "recreate:postgres", "restore:postgres", "verify:postgres"]
    assert data["actions"][1]["depends_on"] == ["backup:postgres"]
    assert data["actions"][1]["fresh_volume"] is True


def test_markdown_has_the_marker_the_table_and_the_field_changes() -> None:
    markdown = render_markdown(case_plan("stateful-recreate-backup"))
    assert markdown.startswith(MARKER + "\n")
    assert "| | action | resource | cause |" in markdown
    assert "| `~` | recreate | postgres | command changed |" in markdown
    assert "| `*` | backup | postgres |" in markdown
    assert "<details>" in markdown and "</details>" in markdown
    assert '| postgres | `command` | `["postgres", "-c", "max_connections=100"]` |' in markdown
    assert "**Plan: 0 to create, 1 to recreate, 0 to remove, 1 backup, 1 verification.**" in markdown


def test_an_update_in_place_in_every_rendering() -> None:
    plan = case_plan("hand-edit-restart-stopped")
    cause = "live container changed in place (docker update): restart: no → unless-stopped"
    text = render_text(plan)
    assert f"  ^ update  worker  {cause}\n" in text and text.count("no → unless-stopped") == 1
    assert "[yellow]^ update[/yellow]" in render_text(plan, color=True)
    markdown = render_markdown(plan)
    assert f"| `^` | update | worker | {cause} |" in markdown
    assert "| worker | `restart` | `no` | `unless-stopped` |" in markdown
    data = json.loads(json.dumps(render_json(plan)))
    assert data["summary"] == {"update": 1, "start": 1}
    update, start = data["actions"]
    assert (update["id"], update["kind"], update["depends_on"]) == ("update:worker", "update", [])
    assert update["changes"] == [{"field": "restart", "before": "no", "after": "unless-stopped"}]
    assert start["depends_on"] == ["update:worker"] and update["container_id"] == start["container_id"]
    assert Plan.from_dict(data) == plan


def test_an_interpolated_memory_limit_is_not_shown_in_an_update(tmp_path: Path) -> None:
    spec_file = tmp_path / "reconcile.yaml"
    spec_file.write_text('version: 1\nproject: p\nservices:\n  api: { image: a, mem_limit: "${env:MEM}" }\n')
    loaded = load_spec(spec_file, {"MEM": "777m"})
    live = made_container({"service": "api", "made_from": {}, "memory_limit": 555 * 1024 ** 2}, loaded.spec, {})
    plan = make_plan(loaded, observed_from_dict({"project": "p", "containers": [live]}))
    assert [a.id for a in plan.actions] == ["update:api"]
    assert plan.actions[0].changes == (Change("mem_limit", "(sensitive)", "(sensitive)"),)
    for output in (render_text(plan), render_markdown(plan), json.dumps(render_json(plan))):
        for secret in ("777m", "555m", str(777 * 1024 ** 2), str(555 * 1024 ** 2)):
            assert secret not in output


def test_markdown_of_an_empty_plan_says_no_changes() -> None:
    markdown = render_markdown(Plan(project="p", actions=(), fingerprint="sha256:0"))
    assert MARKER in markdown and NO_CHANGES in markdown and "|" not in markdown


def test_markdown_cells_cannot_break_the_table_or_inject_html() -> None:
    action = Action(ActionKind.CREATE, "api", cause="a | b <script>")
    markdown = render_markdown(Plan(project="p", actions=(action,), fingerprint="sha256:0"))
    assert "a \\| b &lt;script&gt;" in markdown and "<script>" not in markdown


def test_text_is_plain_without_colour_and_marked_up_with_it() -> None:
    plan = case_plan("orphan")
    plain, coloured = render_text(plan), render_text(plan, color=True)
    assert "[" not in plain
    assert "[red]- remove[/red]" in coloured and "[blue]* backup[/blue]" in coloured
    assert "[bold]Plan: 0 to create, 0 to recreate, 3 to remove, 1 backup.[/bold]" in coloured


def test_colour_markup_escapes_brackets_in_causes() -> None:
    action = Action(ActionKind.CREATE, "api", cause="new service [bold]x")
    coloured = render_text(Plan(project="p", actions=(action,), fingerprint="sha256:0"), color=True)
    assert "\\[bold]x" in coloured
    assert escape("a [b] c\\") == "a \\[b] c\\\\"


def test_empty_plan_text() -> None:
    text = render_text(Plan(project="p", actions=(), fingerprint="sha256:0", profiles=("app",)))
    assert text == f"Plan for project p (profiles: app):\n\n{NO_CHANGES}\n"


@pytest.mark.parametrize(("kinds", "line"), [
    ((ActionKind.CREATE, ActionKind.CREATE_NETWORK, ActionKind.RECREATE, ActionKind.BACKUP),
     "Plan: 2 to create, 1 to recreate, 0 to remove, 1 backup."),
    ((ActionKind.START, ActionKind.REMOVE, ActionKind.REMOVE),
     "Plan: 0 to create, 0 to recreate, 1 to start, 2 to remove, 0 backups."),
    ((ActionKind.UPDATE, ActionKind.UPDATE, ActionKind.START),
     "Plan: 0 to create, 0 to recreate, 2 to update in place, 1 to start, 0 to remove, 0 backups."),
])
def test_summary_line(kinds: tuple[ActionKind, ...], line: str) -> None:
    actions = tuple(Action(k, f"r{i}", cause="c") for i, k in enumerate(kinds))
    assert summary(Plan(project="p", actions=actions, fingerprint="f")) == line


def test_changes_already_told_by_the_cause_are_not_repeated() -> None:
    change = Change("image", "app:1", "app:2")
    action = Action(ActionKind.RECREATE, "api", cause="image app:1 → app:2", changes=(change,))
    text = render_text(Plan(project="p", actions=(action,), fingerprint="f"))
    assert text.count("app:1 → app:2") == 1


def test_warnings_are_rendered_everywhere() -> None:
    plan = Plan(project="p", actions=(), fingerprint="f", warnings=("postgres is unhealthy",))
    assert "  ! postgres is unhealthy" in render_text(plan)
    assert "- ⚠️ postgres is unhealthy" in render_markdown(plan)
    assert render_json(plan)["warnings"] == ["postgres is unhealthy"]


def test_an_empty_engine_is_planned_from_a_textwrapped_spec(tmp_path: Path) -> None:
    spec_file = tmp_path / "reconcile.yaml"
    spec_file.write_text(textwrap.dedent("""\
        version: 1
        project: tiny
        services: { web: { image: nginx:1.27 } }
    """))
    plan = make_plan(load_spec(spec_file, {}), Observed(project="tiny"))
    assert render_text(plan).splitlines()[2] == "  + create  web  new service"


def test_markdown_of_a_huge_plan_fits_a_pull_request_comment():
    """40 services with 40 changed labels each made 166 kB; GitHub refuses over 65,536."""
    fields = [f"labels.com.example.setting{i:02d}" for i in range(40)]
    actions = tuple(
        Action(ActionKind.RECREATE, f"svc{n:02d}", cause="config changed: " + ", ".join(fields),
               changes=tuple(Change(f, "a" * 30, "b" * 30) for f in fields))
        for n in range(40))
    plan = Plan(project="many", fingerprint="sha256:" + "0" * 64, actions=actions,
                warnings=("a warning that must survive",))
    text = render_markdown(plan)
    assert len(text) <= 60_000
    assert text.startswith(MARKER) and summary(plan) in text
    assert text.count("| `~` |") == 40  # every action is listed, its cause clipped
    assert "more field changes: `reconcile plan --json` lists them all" in text
    assert "a warning that must survive" in text and plan.fingerprint in text
    assert text.count("<details>") == text.count("</details>") == 1


def test_markdown_of_thousands_of_actions_counts_those_left_out():
    actions = tuple(Action(ActionKind.CREATE, f"service-{n:04d}", cause="new service " + "x" * 100)
                    for n in range(2000))
    text = render_markdown(Plan(project="many", fingerprint="sha256:1", actions=actions))
    assert len(text) <= 60_000 and "more actions: `reconcile plan --json` lists them all" in text


def test_a_failed_plan_is_a_comment_under_the_same_marker(tmp_path) -> None:
    """`plan --markdown` that fails writes why as Markdown on stdout (the comment that replaces
    the last plan's), the error as usual on stderr, and exits 1."""
    import subprocess
    import sys

    spec = tmp_path / "reconcile.yaml"
    spec.write_text("version: 1\nproject: x\nservices:\n  api:\n    image: a\n    deploy: { drain: 2 seconds }\n")
    done = subprocess.run([sys.executable, "-m", "reconciler", "-f", str(spec), "plan", "--markdown"],
                          capture_output=True, text=True, timeout=60, env={"NO_COLOR": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[:2] == ["<!-- reconcile-plan -->", "### reconcile plan failed"]
    assert f"`{spec}:6:22 (services.api.deploy.drain)` `spec.invalid`: invalid value" in done.stdout
    assert "error[spec.invalid]" in done.stderr
