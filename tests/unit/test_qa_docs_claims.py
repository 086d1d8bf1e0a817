"""QA of what README.md and docs/ci.md say, checked against the code (no engine)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

from ruamel.yaml import YAML

from reconciler.changes import APP, DEFAULT_RULES, INFRA

ROOT = Path(__file__).resolve().parents[2]

# Sends SIGTERM to itself the moment the launcher imports the CLI (typer, click, the commands),
# the slowest part of a start; README: "Ctrl-C or SIGTERM stops any command with exit 130".
SIGTERM_WHILE_STARTING = textwrap.dedent("""\
    import importlib.abc, os, signal, sys

    class Stop(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "reconciler.cli.app":
                os.kill(os.getpid(), signal.SIGTERM)
            return None

    sys.meta_path.insert(0, Stop())
    sys.argv = ["reconcile", "validate"]
    from reconciler.cli.launch import main
    main()
""")


def test_sigterm_while_the_cli_starts_exits_130_and_says_so():
    result = subprocess.run([sys.executable, "-c", SIGTERM_WHILE_STARTING], capture_output=True, text=True,
                            timeout=60, cwd=ROOT)
    assert result.returncode == 130, (result.returncode, result.stderr)
    assert "stopped by SIGTERM while starting: nothing was done" in result.stderr, result.stderr


def _ci_example_changes() -> dict[str, list[str]]:
    text = (ROOT / "docs" / "ci.md").read_text()
    block = re.search(r"```yaml\n(changes:\n.*?)```", text, re.S)
    assert block, "docs/ci.md lost its changes: example"
    return YAML(typ="safe").load(block.group(1))["changes"]


def test_ci_md_says_how_the_default_change_lists_differ_from_its_example():
    """docs/ci.md: "Without a `changes:` block the seed's lists above apply": the defaults lack
    the example's `!src/**/*.md` and cover more infra files; the sentence must name each."""
    example = _ci_example_changes()
    text = " ".join((ROOT / "docs" / "ci.md").read_text().split())
    sentence = text[text.index("Without a `changes:` block"):]
    sentence = sentence[:sentence.index("The spec file itself")]
    for name in (INFRA, APP):
        for glob in set(example[name]) - set(DEFAULT_RULES[name]):
            assert f"without the `{glob}` line" in sentence, (glob, sentence)
        for glob in set(DEFAULT_RULES[name]) - set(example[name]):
            shown = glob if not glob.startswith("**/Dockerfile.") or glob.endswith(".postgres") \
                else glob.removeprefix("**/Dockerfile")
            assert f"`{shown}`" in sentence, (glob, sentence)
