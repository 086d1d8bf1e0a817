"""`reconcile changes`: globs → classes (pure, table-driven), then the CLI on a real git repo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from reconciler.changes import (
    APP,
    CLASS_HINT,
    DEFAULT_RULES,
    INFRA,
    classify,
    compile_glob,
    effective_rules,
    make_rules,
    matches,
    read_rules,
)
from reconciler.cli.ci import shown_name
from reconciler.errors import SpecError, SpecErrors
from reconciler.spec.load import load_spec

RECONCILE = Path(sys.executable).with_name("reconcile")

GLOBS = [
    # pattern, path, matches?
    ("src/**", "src/a.ts", True),
    ("src/**", "src/deep/er/a.ts", True),
    ("src/**", "src", False),
    ("src/**", "lib/src/a.ts", False),
    ("src/", "src/a/b.ts", True),
    ("/src/**", "src/a.ts", True),
    ("package.json", "package.json", True),
    ("package.json", "web/package.json", False),           # bare names are root-only
    ("**/package.json", "web/package.json", True),
    ("**/package.json", "package.json", True),
    ("prisma/migrations/**", "prisma/migrations/2024_init/migration.sql", True),
    ("prisma/migrations/**", "prisma/schema.prisma", False),
    ("docker/**/Dockerfile*", "docker/postgres/Dockerfile", True),
    ("docker/**/Dockerfile*", "docker/Dockerfile.redis", True),  # ** spans zero folders
    ("docker/**/Dockerfile*", "docker/a/b/Dockerfile.pg", True),
    ("docker/**/Dockerfile*", "docker/postgres/init.sql", False),
    ("**/Dockerfile.postgres", "Dockerfile.postgres", True),
    ("**/Dockerfile.postgres", "ops/docker/Dockerfile.postgres", True),
    ("docker-compose*.yml", "docker-compose.prod.yml", True),
    ("docker-compose*.yml", "deploy/docker-compose.yml", False),
    ("*.yaml", "reconcile.yaml", True),
    ("*.yaml", "specs/reconcile.yaml", False),                # * stops at /
    ("specs/*.yaml", "specs/a.yaml", True),
    ("specs/?.yaml", "specs/a.yaml", True),
    ("specs/?.yaml", "specs/ab.yaml", False),
    ("docker/[pr]*/**", "docker/postgres/Dockerfile", True),
    ("docker/[!pr]*/**", "docker/postgres/Dockerfile", False),
    ("docker/[!pr]*/**", "docker/nginx/Dockerfile", True),
    ("a[.yaml", "a[.yaml", True),                            # an unclosed [ is literal
    ("a.b", "axb", False),                                   # . is literal
    ("src/**/*.ts", "src/a.ts", True),
    ("src/**/*.ts", "src/x/y/a.ts", True),
    ("src/**/*.ts", "src/x/a.js", False),
]


@pytest.mark.parametrize(("pattern", "path", "expected"), GLOBS)
def test_glob(pattern, path, expected):
    assert bool(compile_glob(pattern).fullmatch(path)) is expected


ODD_NAMES = [
    # pattern, path (a file name git allows), matches?
    ("src/**", "src/a\nb.ts", True),                # ** spans a newline, as * always did
    ("src/**", "src/new\nline/a.ts", True),
    ("src/**/*.ts", "src/x\ny/a.ts", True),
    ("package.json", "package.json\n", False),      # $ would match before the trailing newline
    ("*.yaml", "a.yaml\n", False),
]


@pytest.mark.parametrize(("pattern", "path", "expected"), ODD_NAMES)
def test_names_with_newlines_match_whole(pattern, path, expected):
    assert matches(path, make_rules([pattern])) is expected


def test_the_spec_rule_matches_the_spec_path_only_whole():
    result = classify(["reconcile.yaml\n"], effective_rules({"infra": []}, "reconcile.yaml"))
    assert result.classes[INFRA] == () and result.unclassified == ("reconcile.yaml\n",)


SHOWN = [
    ("src/a\nb.ts", '"src/a\\nb.ts"'),
    ("src/t\tab.ts", '"src/t\\tab.ts"'),
    ("cr\r", '"cr\\r"'),
    ('say "hi".txt', '"say \\"hi\\".txt"'),
    ("back\\slash", '"back\\\\slash"'),
    ("esc\x1b[31m", '"esc\\x1b[31m"'),
    ("line\u2028sep", '"line\\u2028sep"'),
]


@pytest.mark.parametrize(("name", "shown"), SHOWN)
def test_text_output_escapes_names_that_would_split_a_log_line(name, shown):
    assert shown_name(name) == shown
    assert "\n" not in shown_name(name) and "\t" not in shown_name(name)
    assert shown_name("src/café/ü.ts") == "src/café/ü.ts"  # printable names stay as they are


NEGATIONS = [
    (["src/**", "!src/**/*.md"], "src/a.ts", True),
    (["src/**", "!src/**/*.md"], "src/docs/a.md", False),
    (["src/**", "!src/**/*.md", "src/keep.md"], "src/keep.md", True),   # last match wins
    (["!src/**"], "src/a.ts", False),
]


@pytest.mark.parametrize(("lines", "path", "expected"), NEGATIONS)
def test_negation_last_match_wins(lines, path, expected):
    assert matches(path, make_rules(lines)) is expected


SEED_FILES = ["src/api/users.ts", "package.json", "yarn.lock", "tsconfig.json",
              "docker/postgres/Dockerfile", "prisma/migrations/1_init/migration.sql",
              "docker-compose.yml", "README.md", "web/package.json"]

DEFAULTS = [
    # changed files, expected infra, expected app, expected unclassified
    (["src/api/users.ts"], [], ["src/api/users.ts"], []),
    (["docker/postgres/Dockerfile"], ["docker/postgres/Dockerfile"], [], []),
    (["docker-compose.yml", "README.md"], ["docker-compose.yml"], [], ["README.md"]),
    (["prisma/migrations/1_init/migration.sql"], ["prisma/migrations/1_init/migration.sql"], [], []),
    (["web/package.json"], [], [], ["web/package.json"]),
    (["reconcile.yaml"], ["reconcile.yaml"], [], []),
    (SEED_FILES, ["docker/postgres/Dockerfile", "prisma/migrations/1_init/migration.sql",
                  "docker-compose.yml"],
     ["src/api/users.ts", "package.json", "yarn.lock", "tsconfig.json"],
     ["README.md", "web/package.json"]),
]


@pytest.mark.parametrize(("files", "infra", "app", "other"), DEFAULTS)
def test_default_rules(files, infra, app, other):
    result = classify(files, effective_rules({}, "reconcile.yaml"))
    assert list(result.classes[INFRA]) == infra
    assert list(result.classes[APP]) == app
    assert list(result.unclassified) == other


def test_defaults_are_the_seeds_lists():
    assert set(DEFAULT_RULES[APP]) == {"src/**", "package.json", "yarn.lock", "tsconfig.json"}
    assert "prisma/migrations/**" in DEFAULT_RULES[INFRA]


def test_spec_file_always_counts_as_infra_even_against_a_negation():
    rules = effective_rules({"infra": ["!specs/**"], "app": ["specs/**"]}, "specs/stack[1].yaml")
    result = classify(["specs/stack[1].yaml", "specs/other.yaml"], rules)
    assert result.classes[INFRA] == ("specs/stack[1].yaml",)
    assert result.classes[APP] == ("specs/stack[1].yaml", "specs/other.yaml")


def test_configured_classes_replace_the_defaults_and_infra_app_always_exist():
    result = classify(["docs/x.md", "src/a.ts"], effective_rules({"docs": ["docs/**"]}, None))
    assert set(result.classes) == {INFRA, APP, "docs"}
    assert result.classes["docs"] == ("docs/x.md",)
    assert result.unclassified == ("src/a.ts",)
    assert not result.changed(INFRA) and result.changed("docs")


def test_duplicates_are_listed_once_in_order():
    result = classify(["b", "a", "b"], effective_rules({"x": ["*"]}, None))
    assert result.files == ("b", "a") and result.classes["x"] == ("b", "a")


# -- the spec's changes block -------------------------------------------------------------------

def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


SPEC = """\
version: 1
project: demo
services:
  db: { image: "postgres:16", env: { PASSWORD: "${env:NOT_SET_ANYWHERE}" } }
  api: { image: app:1, env_file: .env.missing }
changes:
  infra: ["docker/**"]
  app: ["src/**"]
"""


def test_read_rules_needs_no_secrets_or_env_files(tmp_path):
    assert read_rules(write(tmp_path / "r.yaml", SPEC)) == {"infra": ["docker/**"], "app": ["src/**"]}


def test_read_rules_of_a_spec_that_is_not_utf8_is_a_spec_error(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_bytes(SPEC.encode() + "# café\n".encode("latin-1"))
    with pytest.raises(SpecError) as caught:
        read_rules(path)
    assert caught.value.ref == "spec.encoding" and "is not UTF-8" in caught.value.message
    assert "UTF-8" in caught.value.hint


def test_the_reference_spec_has_a_changes_block():
    root = Path(__file__).resolve().parents[2]
    rules = read_rules(root / "specs" / "healthcare.yaml")
    assert "prisma/migrations/**" in rules["infra"] and "src/**" in rules["app"]


@pytest.mark.parametrize(("block", "ref"), [
    ("changes: { infra: docker/** }", "spec.changes"),
    ("changes: [docker/**]", "spec.changes"),
    ("changes: { Infra Files: [docker/**] }", "spec.changes"),
    ("changes: { infra: [1] }", "spec.changes"),
    ("changes: {", "spec.yaml"),
])
def test_bad_changes_block(tmp_path, block, ref):
    with pytest.raises(SpecError) as caught:
        read_rules(write(tmp_path / "r.yaml", "project: demo\n" + block + "\n"))
    assert caught.value.ref == ref and caught.value.hint


@pytest.mark.parametrize(("block", "where"), [
    ("changes: { infra: docker/** }", "3:12 (changes.infra)"),
    ("changes: [docker/**]", "3:1 (changes)"),
    ("changes: { Infra Files: [docker/**] }", "3:12 (changes.Infra Files)"),
    ("changes: { app: [src/**], infra: [1] }", "3:27 (changes.infra)"),
    ("changes:\n  app: [src/**]\n  Infra Files: [docker/**]", "5:3 (changes.Infra Files)"),
    ('changes:\n  "infra\\n": [docker/**]', "4:3 (changes.infra\\n)"),
])
def test_bad_changes_block_names_its_line(tmp_path, block, where):
    path = write(tmp_path / "r.yaml", "version: 1\nproject: demo\n" + block + "\n")
    with pytest.raises(SpecError) as caught:
        read_rules(path)
    assert str(caught.value.location) == f"{path}:{where}"


def test_a_class_name_with_a_trailing_newline_is_refused(tmp_path):
    """It would write a line of its own into $GITHUB_OUTPUT."""
    with pytest.raises(SpecError) as caught:
        read_rules(write(tmp_path / "r.yaml", 'changes: { "infra\\n": [docker/**] }\n'))
    assert caught.value.ref == "spec.changes" and caught.value.hint == CLASS_HINT


VALID = """\
version: 1
project: demo
services:
  api: { image: "app:1" }
changes:
  app: ["src/**"]
"""


@pytest.mark.parametrize("name", ["Infra Stuff", "infra.files", "-infra", '"infra\\n"', '""'])
def test_validate_refuses_the_class_names_changes_refuses(tmp_path, name):
    plain = write(tmp_path / "plain.yaml", VALID + "  docs_2: [docs/**]\n  ci-config: [.github/**]\n")
    assert set(load_spec(plain, environ={}).spec.changes) == {"app", "docs_2", "ci-config"}
    path = write(tmp_path / "r.yaml", VALID + f"  {name}: [docker/**]\n")
    with pytest.raises(SpecError) as by_changes:
        read_rules(path)
    with pytest.raises(SpecErrors) as by_validate:
        load_spec(path, environ={})
    (error,) = by_validate.value.errors
    assert (error.location.line, error.location.col) == (7, 3)
    assert error.location.path.startswith("changes.")
    assert error.hint == CLASS_HINT == by_changes.value.hint
    assert str(error.location).split(" ")[0] == str(by_changes.value.location).split(" ")[0]



def test_no_block_means_defaults(tmp_path):
    assert read_rules(write(tmp_path / "r.yaml", "project: demo\n")) == {}


# -- the CLI on a real repository -----------------------------------------------------------------

def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    done = subprocess.run(["git", "-C", str(repo), *args], env=env, check=True,
                          capture_output=True, text=True)
    return done.stdout.strip()


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        write(repo / name, text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture()
def repo(tmp_path):
    """base: a spec and an app; head: one infra file, two app files and a README."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    base = commit(root, {"deploy/reconcile.yaml": SPEC, "src/a.ts": "1", "README.md": "r"}, "base")
    head = commit(root, {"docker/pg/Dockerfile": "FROM x", "src/a.ts": "2", "src/b.ts": "3",
                         "README.md": "r2"}, "head")
    return root, base, head


def reconcile(spec: Path, *args: str, cwd: Path, output: Path | None = None):
    env = {k: v for k, v in os.environ.items() if k not in ("GITHUB_OUTPUT", "RECONCILE_FILE")}
    env["NO_COLOR"] = "1"
    if output is not None:
        env["GITHUB_OUTPUT"] = str(output)
    return subprocess.run([str(RECONCILE), "-f", str(spec), "changes", *args], cwd=cwd, env=env,
                          capture_output=True, text=True)


def test_cli_writes_github_outputs(repo, tmp_path):
    root, base, _ = repo
    out = tmp_path / "github_output"
    out.write_text("earlier=kept\n")
    done = reconcile(root / "deploy" / "reconcile.yaml", "--base", base, cwd=tmp_path, output=out)
    assert done.returncode == 0, done.stderr
    assert out.read_text().splitlines() == [
        "earlier=kept", "infra-changed=true", "app-changed=true", "changed-files=4"]
    assert "infra: 1 file (docker/pg/Dockerfile)" in done.stdout
    assert "app: 2 files (src/a.ts, src/b.ts)" in done.stdout
    assert "other: 1 file (README.md)" in done.stdout


def test_cli_json_and_no_changes_still_exits_zero(repo, tmp_path):
    root, base, head = repo
    out = tmp_path / "github_output"
    done = reconcile(root / "deploy" / "reconcile.yaml", "--base", head, "--head", head, "--json",
                     cwd=root, output=out)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["files"] == []
    assert "infra-changed=false" in out.read_text() and "changed-files=0" in out.read_text()


def test_cli_spec_change_is_infra(repo, tmp_path):
    root, _, head = repo
    commit(root, {"deploy/reconcile.yaml": SPEC + "# tweak\n"}, "spec")
    done = reconcile(root / "deploy" / "reconcile.yaml", "--base", head, "--json", cwd=root)
    report = json.loads(done.stdout)
    assert report["spec"] == "deploy/reconcile.yaml"
    assert report["classes"]["infra"] == {"changed": True, "files": ["deploy/reconcile.yaml"]}
    assert report["classes"]["app"]["changed"] is False


def test_cli_all_zero_base_counts_every_file(repo):
    root, _, _ = repo
    done = reconcile(root / "deploy" / "reconcile.yaml", "--base", "0" * 40, "--json", cwd=root)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["files"]) == 5


@pytest.mark.parametrize("missing_base", ["fail", "all"])
def test_cli_unknown_ref_in_a_full_clone_is_a_typo_not_missing_history(repo, tmp_path, missing_base):
    root, _, _ = repo
    out = tmp_path / "github_output"
    done = reconcile(root / "deploy" / "reconcile.yaml", "--base", "no-such-ref", "--missing-base", missing_base,
                     cwd=root, output=out)
    assert done.returncode == 1
    assert "unknown git revision 'no-such-ref'" in done.stderr and "check the name" in done.stderr
    assert "fetch-depth" not in done.stderr and "shallow" not in done.stderr
    assert not out.exists()


@pytest.fixture()
def force_pushed(repo, tmp_path):
    """main rewritten over its old head (a force-push), then cloned in full, as CI checks out."""
    root, base, old_head = repo
    git(root, "reset", "-q", "--hard", base)
    new_head = commit(root, {"src/c.ts": "4"}, "rewritten")
    clone = tmp_path / "full"
    git(tmp_path, "clone", "-q", f"file://{root}", str(clone))
    return clone, old_head, new_head


def test_cli_force_pushed_base_says_why_and_how_to_go_on(force_pushed):
    clone, old_head, _ = force_pushed
    done = reconcile(clone / "deploy" / "reconcile.yaml", "--base", old_head, "--json", cwd=clone)
    assert done.returncode == 1
    error = json.loads(done.stdout)
    assert error["error"] == "changes.unknown-ref"
    assert f"base '{old_head}' is not in this repository's history" in error["message"]
    assert "force-push" in error["message"]
    assert "--missing-base all" in error["hint"] and "fetch-depth" not in error["hint"]


def test_cli_missing_base_all_counts_every_file_and_warns(force_pushed, tmp_path):
    clone, old_head, new_head = force_pushed
    out = tmp_path / "github_output"
    spec = clone / "deploy" / "reconcile.yaml"
    done = reconcile(spec, "--base", old_head, "--missing-base", "all", "--json", cwd=clone, output=out)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["base_missing"] is True and report["base"] == old_head
    assert report["files"] == git(clone, "ls-tree", "-r", "--name-only", new_head).splitlines()
    assert "every file of HEAD counts as changed" in done.stderr
    assert "infra-changed=true" in out.read_text() and "changed-files=4" in out.read_text()
    text = reconcile(spec, "--base", old_head, "--missing-base", "all", cwd=clone)
    assert text.returncode == 0 and "warning[changes.missing-base]" in text.stderr
    assert "4 files changed" in text.stdout


def test_cli_missing_base_all_changes_nothing_when_the_base_is_there(repo):
    root, base, _ = repo
    done = reconcile(root / "deploy" / "reconcile.yaml", "--base", base, "--missing-base", "all", "--json",
                     cwd=root)
    assert done.returncode == 0 and done.stderr == ""
    report = json.loads(done.stdout)
    assert report["base_missing"] is False and len(report["files"]) == 4
    wrong = reconcile(root / "deploy" / "reconcile.yaml", "--base", base, "--missing-base", "some", cwd=root)
    assert wrong.returncode == 1 and "--missing-base" in wrong.stderr


@pytest.mark.parametrize("missing_base", ["fail", "all"])
def test_cli_shallow_clone_says_so(repo, tmp_path, missing_base):
    """A shallow clone may only lack history: fetching more helps, so "all" does not apply."""
    root, base, _ = repo
    clone = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{root}", str(clone))
    done = reconcile(clone / "deploy" / "reconcile.yaml", "--base", base, "--json", "--missing-base", missing_base,
                     cwd=clone)
    assert done.returncode == 1
    error = json.loads(done.stdout)
    assert error["error"] == "changes.unknown-ref"
    assert "shallow" in error["message"] and "fetch-depth: 0" in error["hint"]


@pytest.mark.parametrize("json_flag", [(), ("--json",)])
def test_cli_unwritable_github_output_is_an_error_not_a_traceback(repo, tmp_path, json_flag):
    root, base, _ = repo
    target = tmp_path / "no" / "such" / "dir" / "out"
    done = reconcile(root / "deploy" / "reconcile.yaml", "--base", base, *json_flag, cwd=root, output=target)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    if json_flag:  # one JSON document on stdout: the error, not a report followed by it
        error = json.loads(done.stdout)
        message, hint = error["message"], error["hint"]
        assert error["error"] == "changes.output"
    else:
        message, hint = done.stderr, done.stderr
        assert "error[changes.output]" in done.stderr
    assert str(target) in message and "No such file or directory" in message
    assert "GITHUB_OUTPUT" in hint


def test_cli_escapes_odd_names_in_text_and_keeps_them_in_json(repo):
    root, _, head = repo
    commit(root, {"src/a\nb.ts": "1", "src/t\tab.ts": "2"}, "odd names")
    spec = root / "deploy" / "reconcile.yaml"
    text = reconcile(spec, "--base", head, cwd=root)
    assert text.returncode == 0, text.stderr
    assert 'app: 2 files ("src/a\\nb.ts", "src/t\\tab.ts")' in text.stdout
    assert "\t" not in text.stdout and len(text.stdout.splitlines()) == 3
    report = json.loads(reconcile(spec, "--base", head, "--json", cwd=root).stdout)
    assert report["classes"]["app"]["files"] == ["src/a\nb.ts", "src/t\tab.ts"]


def test_cli_outside_a_repository(tmp_path):
    spec = write(tmp_path / "alone" / "reconcile.yaml", SPEC)
    done = reconcile(spec, "--base", "HEAD", cwd=tmp_path, output=None)
    assert done.returncode == 1
    assert "not inside a git repository" in done.stderr


def test_cli_base_is_required(repo):
    root, _, _ = repo
    done = reconcile(root / "deploy" / "reconcile.yaml", cwd=root)
    assert done.returncode == 1 and "--base" in done.stderr  # a usage error, never "changes"
