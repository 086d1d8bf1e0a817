"""The console script's entry: give a command its head start, run the CLI, leave quickly.

Kept apart from ``cli.app`` so that the fork in ``observe.prefetch.start`` happens before
typer, pydantic or the Docker SDK are imported: the child must not wait for the parent's
imports, and the parent must not import what only the child needs.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

# Root options of the CLI that take a value (cli/app.py: root).
_FILE_OPTIONS = ("-f", "--file")
# Commands whose first question to the engine the child answers (observe/prefetch): plan's
# snapshot; the containers a backup, restore or verify reaches.
_HEAD_STARTED = ("plan", "backup", "restore", "verify")


def command_of(argv: list[str], environ=os.environ) -> tuple[str | None, Path, list[str]]:
    """The subcommand, the spec file and the subcommand's arguments, guessed before typer runs.

    Only a guess, for deciding what to start early; typer still parses everything. A wrong
    guess costs time, never correctness: the prefetch is checked against the validated spec.
    """
    spec = environ.get("RECONCILE_FILE") or "reconcile.yaml"
    args = iter(argv)
    for arg in args:
        if arg in _FILE_OPTIONS:
            spec = next(args, "")
        elif arg.startswith("--file="):
            spec = arg[len("--file="):]
        elif arg.startswith("-f") and not arg.startswith("--"):
            spec = arg[2:]
        elif arg.startswith("-"):
            break  # --help, --version, or an option the guess does not know
        else:
            return arg, Path(spec), list(args)
    return None, Path(spec), []


def main() -> None:
    command, spec, rest = command_of(sys.argv[1:])
    try:
        if command in _HEAD_STARTED and "--help" not in rest:
            from reconciler.observe import prefetch

            prefetch.start(spec.resolve(), containers_only=command != "plan")
        from reconciler.apply.signals import stop_on_sigterm

        stop_on_sigterm()  # before the CLI's imports: a SIGTERM while they load exits 130 too, not 143 (QA)
        from reconciler.cli.app import main as run
    except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM while starting up: nothing was begun
        why = "stopped by SIGTERM" if stop.args == ("SIGTERM",) else "interrupted"
        sys.stderr.write(f"error[interrupted] {why} while starting: nothing was done\n")
        sys.exit(130)

    try:
        run(command)
    finally:
        # At exit the interpreter collects every object the imports made (pydantic's schemas,
        # typer's commands): 30 ms of a 200 ms plan, to free memory the process is about to
        # give back anyway. Freezing takes them out of the collector's sight; exit still runs
        # the atexit handlers, flushes the streams and waits for threads as usual.
        gc.freeze()
