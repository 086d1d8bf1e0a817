"""How results reach people and machines: rich on a terminal, plain text in CI, JSON on request.

Colour only when stdout is a terminal (and ``NO_COLOR`` is unset), so CI logs stay clean.
Nothing is ever read as rich markup: styles come from ``Text`` and ``style=``, so a path,
image or error message with brackets in it prints as it is. On a terminal a long line is
wrapped at its width under a hanging indent (``print_line``); a pipe, a file or a CI log gets
every line whole, as grep and golden tests expect.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING

from reconciler.errors import ReconcileError

if TYPE_CHECKING:  # rich is imported only when something is styled: plain output starts faster
    from rich.console import Console
    from rich.text import Text



def color_stdout() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


def plain_stdout() -> bool:
    """Stdout is no terminal (a pipe, a file, a CI log): lines go out as they are, without
    rich. A terminal with NO_COLOR still goes through rich, which wraps to its width."""
    return not (sys.stdout.isatty() or color_stdout())


def stdout_console() -> Console:
    from rich.console import Console

    color = color_stdout()
    return Console(highlight=False, markup=False, no_color=not color, soft_wrap=True,
                   force_terminal=color or None, **_no_styles())


def stderr_console() -> Console:
    from rich.console import Console

    color = sys.stderr.isatty() and "NO_COLOR" not in os.environ
    return Console(stderr=True, highlight=False, markup=False, no_color=not color, soft_wrap=True,
                   **_no_styles())


def _no_styles() -> dict:
    """With ``NO_COLOR`` no style at all (rich's ``no_color`` keeps bold and italic): a
    terminal or log that asked for plain text gets no escape codes, as on ``TERM=dumb``."""
    return {"color_system": None} if "NO_COLOR" in os.environ else {}


def print_plan_text(text: str, console: Console | None = None) -> None:
    """Colour each plan line by its leading symbol, without interpreting any markup in it."""
    if console is None and plain_stdout():
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    from reconciler.plan.render import COLOURS

    styles = {**COLOURS, "!": "yellow"}  # the plan's own colours (also ^ update and = switch-traffic)
    console = console or stdout_console()
    for line in text.splitlines():
        stripped = line.lstrip()
        style = styles.get(stripped[:1]) if stripped[1:2] == " " else None
        print_line(console, line, style or "")


def wrap_width(console: Console) -> int | None:
    """The width to wrap people's lines at: a terminal's; None anywhere else. FORCE_COLOR or
    TTY_COMPATIBLE=1 make rich call a pipe (a CI log) a terminal: colour then, but a log has
    no width, so its lines stay whole. A console forced to be a terminal in code (ours on a
    tty, a test's) is one (rich keeps that choice apart; its private name is read carefully)."""
    if not console.is_terminal:
        return None
    isatty = getattr(console.file, "isatty", None)
    if getattr(console, "_force_terminal", None) or (isatty is not None and isatty()):
        return console.width
    return None


def live_terminal(console: Console) -> bool:
    """A terminal a person watches (``wrap_width``'s rule): a spinner, a width and a table
    squeezed to it belong there, never in a CI log that FORCE_COLOR made rich call a terminal."""
    return wrap_width(console) is not None


def print_line(console: Console, text: str | Text, style: str = "", indent: int | None = None) -> None:
    """One line for people. On a terminal wrapped at its width under a hanging indent: the
    terminal itself would break it at column 0, across the plan's symbol column and indented
    changes. Anywhere else printed as it is, one logical line per line."""
    from rich.text import Text

    from reconciler.cli.wrap import wrap_line

    line = Text(text, style=style) if isinstance(text, str) else text
    width = wrap_width(console)
    console.print(line if width is None else Text("\n").join(wrap_line(line, width, indent)))


def echo(text: str, style: str = "", err: bool = False, indent: int | None = None) -> None:
    """``typer.echo`` for people's lines: the same off a terminal (rich not even imported),
    wrapped by ``print_line`` on one."""
    if not (sys.stderr if err else sys.stdout).isatty():
        import typer

        typer.echo(text, err=err)
        return
    print_line(stderr_console() if err else stdout_console(), text, style, indent)


def print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def report_error(error: ReconcileError, as_json: bool) -> None:
    from rich.text import Text

    if as_json:
        print_json(error.as_dict())
        return
    console = stderr_console()
    errors = getattr(error, "errors", None) or [error]
    for err in errors:
        where = f"{err.location}: " if err.location else ""
        print_line(console, Text.assemble(("error", "bold red"), f"[{err.ref}] ", where, err.message))
        if err.hint:
            print_line(console, Text.assemble(("  hint: ", "cyan"), err.hint))
    if len(errors) > 1:
        print_line(console, f"{len(errors)} problems found.")


_LEVEL_STYLE = {"healthy": "green", "degraded": "yellow", "missing": "red", "stopped": "red",
                "unhealthy": "red", "unreachable": "red", "restarting": "red"}


def print_health(results) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False)
    table.add_column("service", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("details", overflow="fold")
    for result in results:
        details = ", ".join(f"{k}={v}" for k, v in result.details.items() if v not in (None, ""))
        table.add_row(result.service, Text(result.status, style=_LEVEL_STYLE.get(result.status, "")),
                      details)
    print_table(table)


def print_table(table, console: Console | None = None) -> None:
    """Print a table without ever cutting a cell: ids and timestamps must stay copyable.

    A pipe or a log has no width, so there each row is one line as wide as its content
    (trailing padding removed). A terminal keeps its width; columns marked ``no_wrap``
    (ids, timestamps, names) are never squeezed, the others wrap at spaces, and when even
    that does not fit the table is drawn wider and the terminal wraps its lines.
    """
    from rich.measure import Measurement

    console = console or stdout_console()
    if not live_terminal(console):
        unbounded = console.options.update_width(1_000_000)
        console.width = max(Measurement.get(console, unbounded, table).maximum, 1)
        with console.capture() as captured:
            console.print(table)
        console.file.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
        console.file.flush()
        return
    console.width = max(console.width, _narrowest(console, table))
    console.print(table)


def table_fits(table, console: Console) -> bool:
    """Whether ``print_table`` shows ``table`` within the console's width: always in a pipe
    (no width there), on a terminal when its no_wrap columns and longest words fit."""
    return not live_terminal(console) or _narrowest(console, table) <= console.width


def _narrowest(console: Console, table) -> int:
    """The least width that cuts nothing: no_wrap columns whole, the others at their longest word.

    rich's own minimum counts a no_wrap column at its longest word too, and squeezing a table
    to that width ellipsises the wrapping columns, so it is computed here per column (with
    rich's per-column measure and padding, private but stable across the versions allowed).
    """
    options = console.options.update_width(1_000_000)
    try:
        widths = []
        for column in table.columns:
            measured = table._measure_column(console, options, column)
            widths.append(measured.maximum if column.no_wrap else measured.minimum)
        return sum(widths) + table._extra_width
    except AttributeError:  # a rich without these internals: its own minimum, maybe squeezed
        return 0


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def print_backup(doc: dict, warnings: list[str], pruned: list[dict]) -> None:
    lines = [(f"Backup {doc['backup_id']} (local: {doc['storage']['local']}, "
              f"S3: {doc['storage']['s3']})", "")]
    for service, entry in doc["services"].items():
        facts = [f"{_size(entry['size'])}", entry["checksum"][:19] + "…"]
        if entry.get("table_count") is not None:
            facts.append(f"{_count(entry['table_count'], 'table')}, {_count(entry['row_count'], 'row')}")
        if entry.get("key_count") is not None:
            facts.append(_count(entry["key_count"], "key"))
        lines.append((f"  {service}: {entry['local_path']} ({', '.join(facts)})", ""))
    for report in pruned:
        if report["deleted"]:
            lines.append((f"  retention: {report['store']}: deleted {_count(len(report['deleted']), 'old backup file')}"
                          f" (and their metadata)", ""))
    lines += [(f"warning: {warning}", "yellow") for warning in warnings]
    print_lines(lines)


def print_restore(data: dict) -> None:
    entries = {service: entry for service, entry in data.items() if isinstance(entry, dict)}
    mixed = any(entry.get("backup_id", data["backup_id"]) != data["backup_id"] for entry in entries.values())
    lines = [("Restored, each service from its newest backup:" if mixed
              else f"Restored backup {data['backup_id']}:", "")]
    for service, entry in entries.items():
        facts = [f"backup {entry['backup_id']} from {entry.get('source')}" if mixed else f"from {entry.get('source')}"]
        if entry.get("tables_restored") is not None:
            facts.append(f"{_count(entry['tables_restored'], 'table')}, {_count(entry['rows_restored'], 'row')}")
        if entry.get("keys_restored") is not None:
            facts.append(_count(entry["keys_restored"], "key"))
        lines.append((f"  {service}: {', '.join(facts)}, verified", ""))
    lines += [(f"note: {note}", "yellow") for note in data.get("notes", [])]
    print_lines(lines)


def print_verify(data: dict) -> None:
    reports = data["services"]
    mixed = any(report.get("backup_id", data["backup_id"]) != data["backup_id"] for report in reports.values())
    lines = [(f"Verify, each service against its newest backup: {data['status']}" if mixed
              else f"Verify against backup {data['backup_id']}: {data['status']}", "")]
    for service, report in reports.items():
        failed = [c for c in report["checks"] if not c["ok"]]
        state = "ok" if not failed else f"{_count(len(failed), 'check')} failed"
        against = f" (backup {report['backup_id']})" if mixed else ""
        lines.append((f"  {service}{against}: {_count(len(report['checks']), 'check')}, {state}", ""))
        lines += [(f"    {check['name']}: expected {check['expected']}, found {check['actual']}", "red")
                  for check in failed[:VERIFY_SHOWN]]
        if len(failed) > VERIFY_SHOWN:
            lines.append((f"    … and {len(failed) - VERIFY_SHOWN} more failed (reconcile verify --json lists "
                          "them all)", "red"))
    print_lines(lines)


VERIFY_SHOWN = 10  # failed checks listed per service; the rest are counted


def print_lines(lines: list[tuple[str, str]]) -> None:
    """Lines as they are (paths and names are never read as markup), each in its style on
    a terminal (wrapped to it); plain text, without importing rich, anywhere else."""
    if plain_stdout():
        sys.stdout.write("".join(f"{text}\n" for text, _ in lines))
        return
    console = stdout_console()
    for text, style in lines:
        print_line(console, text, style)


def print_catalogue(found) -> None:
    """The table on stdout; a store that could not be read is a warning on stderr."""
    from rich.table import Table

    if found.rows:
        table = Table(box=None, pad_edge=False)
        # the id is when it was taken (YYYY-MM-DD-HHMMSS, UTC): a second column of the same time
        # made the table wider than an 80-column terminal (--json has the exact timestamp)
        table.add_column("backup (taken, UTC)", no_wrap=True)
        table.add_column("services")
        table.add_column("size", no_wrap=True, justify="right")
        table.add_column("stores", no_wrap=True)
        table.add_column("verified", no_wrap=True)
        for row in found.rows:
            size = sum(e["size"] or 0 for e in row["services"].values())
            table.add_row(row["backup_id"], ", ".join(row["services"]), _size(size),
                          ", ".join(row["stores"]) + (" (S3 copy interrupted)" if row.get("s3_copy") == "interrupted"
                                                     else ""), "yes" if row["verified"] else "no")
        print_table(table)
    elif not found.problems:
        print_line(stdout_console(), "No backups yet. Take one with: reconcile backup")
    else:
        answered = [name for name, state in found.stores.items() if state == "ok"]
        print_line(stdout_console(), f"No backups in the {' or '.join(answered)} store." if answered
                   else "No backups could be listed.")
    print_problems(found.problems)


def print_file_check(found) -> None:
    """``backups verify``: the count and each mismatch on stdout; files no metadata names and
    stores that could not be read are warnings on stderr."""
    from rich.text import Text

    console = stdout_console()
    print_line(console, f"{_count(found.checked, 'file')} checked, {_count(len(found.problems), 'problem')}.")
    for problem in found.problems:
        print_line(console, f"  {problem['store']}: {problem['key']}: {problem['error']}")
        if problem.get("hint"):
            print_line(console, f"    hint: {problem['hint']}")
    if found.unrecorded:
        errors = stderr_console()
        print_line(errors, Text.assemble(("warning", "bold yellow"), "[backup.unrecorded] ",
                                         f"{_count(len(found.unrecorded), 'file')} no backup's metadata names "
                                         "(never restored, never pruned):"))
        for item in found.unrecorded:
            print_line(errors, f"  {item['store']}: {item['key']}")
        print_line(errors, Text.assemble(("  hint: ", "cyan"), "if a metadata file was lost, copy it back from the "
                                         "other store; otherwise delete these files by hand"))
    print_problems(found.unreadable_stores)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def print_problems(problems) -> None:
    """Warnings (each with its hint) on stderr, so stdout stays what a script reads."""
    from rich.text import Text

    console = stderr_console()
    for problem in problems:
        print_line(console, Text.assemble(("warning", "bold yellow"), f"[{problem.ref}] ", str(problem)))
        if problem.hint:
            print_line(console, Text.assemble(("  hint: ", "cyan"), problem.hint))


def print_prune(reports: list[dict], dry_run: bool) -> None:
    """Each store's outcome on stdout; a store that failed is a warning (with its hint) on
    stderr, after what the other stores did, which is never hidden by it."""
    console, errors = stdout_console(), stderr_console()
    verb = "would delete" if dry_run else "deleted"
    for report in reports:
        failure = report["error"]
        if failure is None or report["deleted"]:
            print_line(console, f"{report['store']}: {verb} {len(report['deleted'])} files, "
                                f"kept {len(report['kept'])}.")
            for key in report["deleted"]:
                print_line(console, f"  - {key}")
        for item in report.get("unreadable", []):
            _warn(errors, "backup.metadata", f"{item['key']} in the {report['name']} store is skipped: "
                                             f"{item['reason']}",
                  "fix or remove that file: the files of the backup it records are not pruned until then")
        if others := report.get("others"):
            from reconciler.backup.sharing import HINT

            held = ", ".join(f"{count} of project {project or '(unnamed)'}"
                             for project, count in sorted(others.items()))
            _warn(errors, "backup.shared", f"the {report['name']} store also holds backups of other projects "
                                           f"({held}): left alone", HINT)
        if failure is not None:
            _warn(errors, failure["error"], f"pruning the {report['name']} store failed: {failure['message']}",
                  failure["hint"])


def _warn(console: Console, ref: str, message: str, hint: str | None) -> None:
    from rich.text import Text

    print_line(console, Text.assemble(("warning", "bold yellow"), f"[{ref}] ", message))
    if hint:
        print_line(console, Text.assemble(("  hint: ", "cyan"), hint))


def print_json_warnings(warnings: list[str], **extra) -> None:
    """In JSON mode, warnings that have no place in stdout's shape: one JSON object on stderr."""
    sys.stderr.write(json.dumps({"warnings": warnings, **extra}, default=str) + "\n")
    sys.stderr.flush()
