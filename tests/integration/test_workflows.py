"""The CI kit: every example workflow and action.yml pass actionlint (with shellcheck), keep
secrets where they belong, their shell steps do what they say when run, and the plan comment
renders as Markdown. No Docker and no network: actionlint and shellcheck come from the dev extras.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from ruamel.yaml import YAML

from reconciler.plan.actions import Action, ActionKind, Change, Plan
from reconciler.plan.render import MARKER, render_markdown

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "github"
WORKFLOWS = sorted(EXAMPLES.glob("*.yml"))
ACTION = ROOT / "action.yml"
PUBLISHED = "OWNER/reconcile@v1"
TOOLS = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
CREDENTIALS = ("POSTGRES_PASSWORD", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY", "SSH_PRIVATE_KEY",
               "DOTENV")
SETTINGS = ("S3_ENDPOINT", "S3_BUCKET", "S3_REGION", "S3_ENABLED")
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def load(path: Path) -> dict:
    return YAML(typ="safe", pure=True).load(path.read_text())


def walk(node: object, path: tuple = ()):
    """Every scalar with the path of keys that leads to it."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, (*path, index))
    else:
        yield path, node


def all_steps(doc: dict) -> list[dict]:
    if "runs" in doc:
        return doc["runs"]["steps"]
    return [step for job in doc["jobs"].values() for step in job.get("steps", [])]


def step(doc: dict, job: str, name: str) -> dict:
    return next(s for s in doc["jobs"][job]["steps"] if s.get("name") == name)


# -- actionlint ---------------------------------------------------------------------------------

def tool(name: str) -> str:
    found = shutil.which(name, path=TOOLS)
    if not found:
        pytest.fail(f"{name} not found: install the dev extras (pip install -e '.[dev]')", pytrace=False)
    return found


@pytest.fixture(scope="module")
def lint_project(tmp_path_factory) -> Path:
    """A throw-away repository laid out as a user's would be, with the action at its root, so
    actionlint also checks every `with:` against action.yml's inputs (`uses: ./`)."""
    project = tmp_path_factory.mktemp("lint")
    workflows = project / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (project / ".github" / "actionlint.yaml").write_text("self-hosted-runner:\n  labels: [reconcile]\n")
    shutil.copy(ACTION, project / "action.yml")
    for path in WORKFLOWS:
        (workflows / path.name).write_text(path.read_text().replace(PUBLISHED, "./"))
    yaml = YAML(typ="safe", pure=True)
    with (workflows / "action-as-workflow.yml").open("w") as out:
        yaml.dump(action_as_workflow(load(ACTION)), out)
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    return project


def action_as_workflow(action: dict) -> dict:
    """actionlint checks workflows, not action metadata: the composite's steps become a reusable
    workflow's job (same inputs), so their expressions and shell get the same checks."""
    inputs = {name: {"type": "string", "required": False, "default": str(spec.get("default", ""))}
              for name, spec in action["inputs"].items()}
    return {"name": "action.yml as a workflow", "on": {"workflow_call": {"inputs": inputs}},
            "permissions": {"contents": "read"},
            "jobs": {"action": {"runs-on": "ubuntu-latest", "steps": action["runs"]["steps"]}}}


@pytest.mark.parametrize("name", [p.name for p in WORKFLOWS] + ["action-as-workflow.yml"])
def test_actionlint_with_shellcheck(lint_project, name):
    tool("shellcheck")
    done = subprocess.run([tool("actionlint"), "-oneline", "-no-color", f".github/workflows/{name}"],
                          cwd=lint_project, capture_output=True, text=True, env={**os.environ, "PATH": TOOLS})
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_there_are_three_examples():
    assert {p.name for p in WORKFLOWS} == {"plan.yml", "deploy.yml", "scheduled.yml"}


# -- what the YAML says -------------------------------------------------------------------------

DOCS = [*WORKFLOWS, ACTION]


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_secrets_only_as_whole_step_env_values(path):
    """A secret is handed to the one step that needs it, under its own name, and nowhere else."""
    for where, value in walk(load(path)):
        if not isinstance(value, str):
            continue
        for expr in EXPRESSION.findall(value):
            if "secrets." not in expr:
                continue
            name = where[-1]
            assert where[-2] == "env" and "steps" in where, f"{path.name}: secret at {where}"
            assert value.strip() == f"${{{{ secrets.{name} }}}}", f"{path.name}: {where} = {value}"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_credentials_from_secrets_settings_from_vars(path):
    text = path.read_text()
    for name in CREDENTIALS:
        assert not re.search(rf"(vars|env|inputs)\.{name}\b", text), f"{name} must come from secrets"
    for name in SETTINGS:
        for expr in re.findall(rf"\$\{{\{{[^}}]*\b{name}\b[^}}]*\}}\}}", text):
            assert expr == f"${{{{ vars.{name} }}}}", expr


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_run_scripts_take_inputs_from_env_and_never_print_secrets(path):
    """No `${{ }}` spliced into shell (script injection), no tracing, no echo of a secret."""
    for s in all_steps(load(path)):
        script = s.get("run", "")
        assert "${{" not in script, f"{path.name}: expression in run: {script[:60]}"
        assert not re.search(r"set -\w*x", script)
        for line in script.splitlines():
            if re.match(r"\s*echo\b", line):
                assert not any(name in line for name in CREDENTIALS), line
        assert "StrictHostKeyChecking=no" not in script


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_permissions_are_minimal(path):
    doc = load(path)
    assert doc["permissions"] == {"contents": "read"}
    for name, job in doc["jobs"].items():
        writes = {k for k, v in (job.get("permissions") or {}).items() if v == "write"}
        assert writes <= {"pull-requests", "issues"}, (name, writes)
        if path.name == "plan.yml" and writes:  # a job that may write never runs PR code
            assert not any("checkout" in s.get("uses", "") for s in job["steps"]), name


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_actions_pinned_to_major_versions(path):
    for s in all_steps(load(path)):
        uses = s.get("uses")
        if uses:
            assert uses == PUBLISHED or re.fullmatch(r"actions/[a-z-]+@v\d+", uses), uses


def test_plan_runs_only_for_this_repository_and_updates_one_comment():
    doc = load(EXAMPLES / "plan.yml")
    for name in ("plan", "plan-ssh"):
        assert "github.event.pull_request.head.repo.full_name == github.repository" in doc["jobs"][name]["if"]
    script = step(doc, "comment", "Post or update the plan comment")["with"]["script"]
    assert f"'{MARKER}'" in script
    assert "updateComment" in script and "createComment" in script and "paginate" in script


def test_a_failed_plan_still_replaces_the_comment():
    """QA: after a push that broke the spec, the PR kept the previous push's plan comment."""
    doc = load(EXAMPLES / "plan.yml")
    condition = doc["jobs"]["comment"]["if"]
    assert "failure" in condition and "always()" in condition
    uploads = [s for name in ("plan", "plan-ssh") for s in doc["jobs"][name]["steps"]
               if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    assert len(uploads) == 2 and all(s["if"].startswith("always()") for s in uploads)
    download = next(s for s in doc["jobs"]["comment"]["steps"] if "download-artifact" in str(s.get("uses")))
    assert download["continue-on-error"] is True
    script = step(doc, "comment", "Post or update the plan comment")["with"]["script"]
    assert "reconcile plan failed" in script and "fs.existsSync(dir)" in script


def test_deploys_never_overlap():
    doc = load(EXAMPLES / "deploy.yml")
    assert doc["concurrency"]["group"] and doc["concurrency"]["cancel-in-progress"] is False
    assert doc["on"]["push"]["branches"] == ["main"]
    changes = doc["jobs"]["changes"]
    assert changes["steps"][0]["with"]["fetch-depth"] == 0
    for name in ("deploy", "deploy-ssh"):
        assert "needs.changes.outputs.infra == 'true'" in doc["jobs"][name]["if"]


def test_schedules_backup_nightly_and_fail_on_drift():
    doc = load(EXAMPLES / "scheduled.yml")
    assert [c["cron"] for c in doc["on"]["schedule"]] == ["0 2 * * *", "*/15 * * * *"]
    assert "'0 2 * * *'" in doc["jobs"]["backup"]["if"]
    drift = doc["jobs"]["drift"]
    run = next(s for s in drift["steps"] if s.get("id") == "drift")
    assert run["with"]["command"] == "drift" and "2" in run["with"]["ok-exit-codes"].split()
    fail = step(doc, "drift", "Fail on drift")
    assert fail["if"] == "steps.drift.outputs.exit-code == '2'" and "exit 2" in fail["run"]


def test_action_outputs_come_from_the_run_step():
    action = load(ACTION)
    ids = {s.get("id") for s in action["runs"]["steps"]}
    for output in action["outputs"].values():
        assert re.fullmatch(r"\$\{\{ steps\.(\w+)\.outputs\.[\w-]+ \}\}", output["value"])
        assert re.search(r"steps\.(\w+)\.", output["value"])[1] in ids
    install = action["runs"]["steps"][1]
    assert install["env"]["ACTION_DIR"] == "${{ github.action_path }}"


# -- the shell steps, run for real against stand-ins for reconcile and ssh ----------------------

FAKE_RECONCILE = """#!/usr/bin/env bash
# Records how it was called and what it could see, prints a plan, exits with $FAKE_EXIT.
log="$FAKE_LOG"
{ printf 'ARGS'; printf ' %s' "$@"; printf '\\n'; echo "CWD $PWD"
  echo "PG ${POSTGRES_PASSWORD:-}"; echo "S3 ${S3_SECRET_ACCESS_KEY:-}"
  for f in *; do [ -f "$f" ] && echo "FILE $f $(stat -c %a "$f") $(base64 -w0 < "$f")"; done
  for f in .env*; do [ -f "$f" ] && echo "FILE $f $(stat -c %a "$f") $(base64 -w0 < "$f")"; done
} >> "$log"
echo "<!-- reconcile-plan -->"
exit "${FAKE_EXIT:-0}"
"""
FAKE_SSH = """#!/usr/bin/env bash
# A "remote" that is this machine: record the argv, then run the script from stdin.
printf '%s\\n' "$@" >> "$FAKE_SSH_LOG"
cd "$FAKE_REMOTE_HOME" && exec bash -s
"""


@pytest.fixture()
def sandbox(tmp_path):
    """A bin folder with fake reconcile and ssh first on PATH, and GitHub's step files."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("reconcile", FAKE_RECONCILE), ("ssh", FAKE_SSH)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (tmp_path / "remote").mkdir()
    (tmp_path / "work").mkdir()
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path),
           "RUNNER_TEMP": str(tmp_path), "GITHUB_OUTPUT": str(tmp_path / "output"),
           "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"), "FAKE_LOG": str(tmp_path / "log"),
           "FAKE_SSH_LOG": str(tmp_path / "ssh-log"), "FAKE_REMOTE_HOME": str(tmp_path / "remote")}
    return tmp_path, env


def run_step(script: str, env: dict, cwd: Path) -> subprocess.CompletedProcess[str]:
    """As the runner does for `shell: bash`."""
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
                          cwd=cwd, env=env, capture_output=True, text=True)


def read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


ACTION_CASES = [
    # command, profile, args, ok-exit-codes, reconcile's exit → step exit, reconcile argv
    ("plan", "infrastructure, app", "", "", 2, 0,
     "plan --detailed-exitcode --profile infrastructure --profile app --markdown"),
    ("plan", "", "", "", 1, 1, "plan --detailed-exitcode --markdown"),
    ("apply", "app", "--out x", "", 0, 0, "apply --auto-approve --profile app --out x"),
    ("apply", "", "", "", 1, 1, "apply --auto-approve"),
    ("apply", "", "", "0 1", 1, 0, "apply --auto-approve"),
    ("drift", "app", "", "", 2, 2, "drift"),
    ("drift", "", "", "0 2", 2, 0, "drift"),
    ("backup", "", "", "", 0, 0, "backup"),
    ("changes", "", "--base abc --head def", "", 0, 0, "changes --base abc --head def"),
    ("destroy", "", "", "", 0, 1, None),
]


@pytest.mark.parametrize(("command", "profile", "args", "ok", "code", "step_exit", "argv"), ACTION_CASES)
def test_action_run_step(sandbox, command, profile, args, ok, code, step_exit, argv):
    tmp, env = sandbox
    run = next(s for s in load(ACTION)["runs"]["steps"] if s.get("id") == "run")
    env.update(IN_COMMAND=command, IN_PROFILE=profile, IN_ARGS=args, IN_OK=ok,
               RECONCILE_FILE="reconcile.yaml", FAKE_EXIT=str(code))
    done = run_step(run["run"], env, tmp / "work")
    assert done.returncode == step_exit, done.stdout + done.stderr
    log, outputs = read(tmp / "log"), read(tmp / "output").splitlines()
    if argv is None:
        assert not log and "::error::command must be" in done.stdout
        return
    assert f"ARGS {argv}\n" in log
    assert f"exit-code={code}" in outputs
    if command == "plan" and code in (0, 2):
        assert f"markdown={tmp / 'reconcile-plan.md'}" in outputs
        assert MARKER in read(tmp / "summary")


SECRET_ENV = {"POSTGRES_PASSWORD": "pg 'secret' $(not run)", "S3_ACCESS_KEY_ID": "AKID",
              "S3_SECRET_ACCESS_KEY": "s3/secret+key", "DOTENV": "API_KEY=abc\nOTHER='x y'",
              "S3_ENABLED": "true", "S3_ENDPOINT": "https://s3.example", "S3_BUCKET": "b",
              "S3_REGION": "eu-central-1", "GIT_SHA": "abc123", "DEPLOY_TARGET": "deploy@server",
              "RECONCILE_FILE": "ops/reconcile.yaml", "RECONCILE_ENV_FILE": ".env.production"}


def files_seen(log: str) -> dict[str, tuple[str, str]]:
    """``FILE name mode base64`` lines the fake reconcile wrote → {name: (mode, text)}."""
    seen = {}
    for line in log.splitlines():
        if line.startswith("FILE "):
            _, name, mode, data = [*line.split(" "), ""][:4]
            seen[name] = (mode, base64.b64decode(data).decode())
    return seen


def ssh_sandbox(sandbox, code: int) -> tuple[Path, dict]:
    tmp, env = sandbox
    spec = tmp / "work" / "ops" / "reconcile.yaml"
    spec.parent.mkdir()
    spec.write_text("project: demo\n")
    env.update(SECRET_ENV, FAKE_EXIT=str(code), RECONCILE_BIN=str(tmp / "bin" / "reconcile"))
    return tmp, env


@pytest.mark.parametrize("code", [0, 2])
def test_deploy_over_ssh_copies_0600_and_passes_secrets_on_stdin(sandbox, code):
    tmp, env = ssh_sandbox(sandbox, code)
    env["DEPLOY_DIR"] = str(tmp / "remote" / "stack dir")
    script = step(load(EXAMPLES / "deploy.yml"), "deploy-ssh", "reconcile apply on the server")["run"]
    done = run_step(script, env, tmp / "work")
    assert done.returncode == code, done.stderr
    log = read(tmp / "log")
    assert "ARGS -f reconcile.yaml apply --auto-approve\n" in log
    assert f"CWD {tmp / 'remote' / 'stack dir'}\n" in log
    assert f"PG {SECRET_ENV['POSTGRES_PASSWORD']}\n" in log and "S3 s3/secret+key\n" in log
    seen = files_seen(log)
    assert seen["reconcile.yaml"] == ("600", "project: demo\n")
    assert seen[".env.production"] == ("600", SECRET_ENV["DOTENV"] + "\n")
    ssh_argv = read(tmp / "ssh-log")
    assert "deploy@server" in ssh_argv and "BatchMode=yes" in ssh_argv
    for secret in ("pg 'secret'", "s3/secret+key", "API_KEY"):
        assert secret not in ssh_argv and secret not in done.stdout + done.stderr


@pytest.mark.parametrize(("code", "step_exit"), [(0, 0), (2, 0), (1, 1)])
def test_plan_over_ssh_brings_the_markdown_back_and_cleans_up(sandbox, code, step_exit):
    tmp, env = ssh_sandbox(sandbox, code)
    script = step(load(EXAMPLES / "plan.yml"), "plan-ssh", "reconcile plan on the server")["run"]
    done = run_step(script, env, tmp / "work")
    assert done.returncode == step_exit, done.stdout + done.stderr
    log = read(tmp / "log")
    assert "ARGS -f spec.yaml plan --markdown --detailed-exitcode\n" in log
    assert read(tmp / "work" / "plan.md") == MARKER + "\n"
    assert files_seen(log)["spec.yaml"] == ("600", "project: demo\n")
    remote_dir = Path(re.search(r"^CWD (.*)$", log, re.M)[1])
    assert not remote_dir.exists()          # the private temporary folder is gone
    assert MARKER in read(tmp / "summary")  # the plan, or (exit 1) why it failed, as Markdown


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_env_file_steps_write_0600(sandbox, path):
    tmp, env = sandbox
    env.update(RECONCILE_FILE="ops/reconcile.yaml", RECONCILE_ENV_FILE=".env", DOTENV="A=1\nB=2")
    (tmp / "work" / "ops").mkdir()
    doc = load(path)
    writers = [s for s in all_steps(doc) if s.get("name") == "Write the env file (0600)"]
    assert writers
    for writer in writers:
        done = run_step(writer["run"], env, tmp / "work")
        assert done.returncode == 0, done.stderr
        written = tmp / "work" / "ops" / ".env"
        assert stat.S_IMODE(written.stat().st_mode) == 0o600 and written.read_text() == "A=1\nB=2\n"
        written.unlink()


# -- the plan comment renders ---------------------------------------------------------------------

def sample_plan() -> Plan:
    hostile = "image a|b → `c` <script>alert(1)</script> & *bold*\nsecond line"
    return Plan(project="healthcare", fingerprint="sha256:abc", profiles=("infrastructure",),
                warnings=("postgres is unhealthy | <b>look</b>",), actions=(
        Action(ActionKind.BACKUP, "postgres", "before recreate", profile="infrastructure"),
        Action(ActionKind.RECREATE, "postgres", hostile, depends_on=("backup:postgres",),
               changes=(Change("image", "postgres:15", "postgres:17|x"),
                        Change("env.A`B", "(sensitive)", "(sensitive)"))),
        Action(ActionKind.CREATE_NETWORK, "backend", "missing"),
    ))


def parse(text: str) -> list:
    return MarkdownIt("commonmark").enable("table").parse(text)


def tables(tokens: list) -> list[list[list[str]]]:
    """Each table as rows of cell texts (header row first)."""
    found, rows, row = [], [], None
    for token in tokens:
        if token.type == "table_open":
            rows = []
        elif token.type == "tr_open":
            row = []
        elif token.type == "inline" and row is not None:
            row.append(token.content)
        elif token.type == "tr_close":
            rows.append(row)
            row = None
        elif token.type == "table_close":
            found.append(rows)
    return found


def test_plan_markdown_parses_into_tables_with_the_marker_first():
    text = render_markdown(sample_plan())
    tokens = parse(text)
    assert tokens[0].type == "html_block" and tokens[0].content.strip() == MARKER
    actions, fields = tables(tokens)
    assert actions[0] == ["", "action", "resource", "cause"]
    assert [row[1:3] for row in actions[1:]] == [
        ["backup", "postgres"], ["recreate", "postgres"], ["create", "network backend"]]
    assert all(len(row) == 4 for row in actions + fields)
    # GFM reads `\|` as a literal pipe inside a cell: the value survives, the row does not split
    assert fields[1] == ["postgres", "`image`", "`postgres:15`", "`postgres:17|x`"]


def test_plan_markdown_cells_cannot_inject_html_or_break_rows():
    tokens = parse(render_markdown(sample_plan()))
    inline = [t for t in tokens if t.type == "inline"]
    injected = [c for t in inline for c in t.children or [] if c.type == "html_inline"
                and c.content not in ("<sub>", "</sub>")]
    assert injected == []
    cause = tables(tokens)[0][2][3]
    rendered = MarkdownIt("commonmark").enable("table").render(render_markdown(sample_plan()))
    assert "<script>" not in rendered and "&lt;script&gt;" in rendered
    assert cause.startswith("image a|b") and cause.endswith("second line")


def test_empty_plan_markdown_still_carries_the_marker():
    empty = Plan(project="healthcare", actions=(), fingerprint="sha256:0")
    tokens = parse(render_markdown(empty))
    assert tokens[0].content.strip() == MARKER and tables(tokens) == []
