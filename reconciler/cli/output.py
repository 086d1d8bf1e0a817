"""How results reach people and machines: rich on a terminal, plain text in CI, JSON on request.

Colour only when stdout is a terminal (and ``NO_COLOR`` is unset), so CI logs stay clean.
"""

from __future__ import annotations

import json
import os
import sys

from rich.console import Console
from rich.text import Text

from reconciler.errors import ReconcileError

SYMBOL_STYLES = {"+": "green", "~": "yellow", "-": "red", ">": "cyan", "*": "blue",
                 "<": "magenta", "?": "bright_black", "!": "yellow"}


def stdout_console() -> Console:
    color = sys.stdout.isatty() and "NO_COLOR" not in os.environ
    return Console(highlight=False, no_color=not color, soft_wrap=True,
                   force_terminal=color or None)


def stderr_console() -> Console:
    color = sys.stderr.isatty() and "NO_COLOR" not in os.environ
    return Console(stderr=True, highlight=False, no_color=not color, soft_wrap=True)


def print_plan_text(text: str, console: Console | None = None) -> None:
    """Colour each plan line by its leading symbol, without interpreting any markup in it."""
    console = console or stdout_console()
    for line in text.splitlines():
        stripped = line.lstrip()
        style = SYMBOL_STYLES.get(stripped[:1]) if stripped[1:2] == " " else None
        console.print(Text(line, style=style or ""))


def print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def report_error(error: ReconcileError, as_json: bool) -> None:
    if as_json:
        print_json(error.as_dict())
        return
    console = stderr_console()
    errors = getattr(error, "errors", None) or [error]
    for err in errors:
        where = f"{err.location}: " if err.location else ""
        console.print(Text.assemble(("error", "bold red"), f"[{err.ref}] ", where, err.message))
        if err.hint:
            console.print(Text.assemble(("  hint: ", "cyan"), err.hint))
    if len(errors) > 1:
        console.print(f"{len(errors)} problems found.")
