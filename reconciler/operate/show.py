"""Text for people: diagnose findings, drift, the status table (rich, no colour in CI) and the
history of applies."""

from __future__ import annotations

import textwrap

from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from reconciler.cli.output import print_line, print_table, stdout_console, table_fits

_SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}
_HEALTH_STYLE = {"healthy": "green", "degraded": "yellow", "missing": "red", "stopped": "red",
                 "unhealthy": "red", "unreachable": "red", "refused": "red", "restarting": "red",
                 "error": "red"}


_SEVERITY_WIDTH = 9  # ``CRITICAL `` then the issue; its details and fix are indented as much


def print_diagnosis(report: dict) -> None:
    """Each line wrapped on a terminal (continuing under its text), whole anywhere else."""
    console = stdout_console()
    issues = report["issues"]
    if not issues:
        print_line(console, "No issues found.", "green")
    margin = " " * _SEVERITY_WIDTH
    for issue in issues:
        style = _SEVERITY_STYLE.get(issue["severity"], "")
        print_line(console, Text.assemble((f"{issue['severity'].upper():<{_SEVERITY_WIDTH}}", style),
                                          f"{issue['service']}: ", (issue["issue"], "bold")), indent=_SEVERITY_WIDTH)
        print_line(console, f"{margin}{issue['details']}")
        print_line(console, Text.assemble((f"{margin}fix: ", "cyan"), issue["suggested_fix"]))
    _print_usage(console, report.get("resource_usage") or {})
    for service, lines in (report.get("logs") or {}).items():
        print_line(console, f"\nlast log lines of {service}:", "bold")
        for line in lines or ["(no output)"]:
            print_line(console, f"  | {line}")


def _print_usage(console, usage: dict) -> None:
    cpu, memory, disk = usage.get("cpu") or {}, usage.get("memory") or {}, usage.get("disk") or {}
    parts = []
    if cpu.get("host_percent") is not None:
        parts.append(f"CPU {cpu['host_percent']} %")
    if cpu.get("load_average"):
        parts.append("load " + " ".join(str(v) for v in cpu["load_average"]))
    host_memory = memory.get("host") or {}
    if host_memory.get("used_percent") is not None:
        parts.append(f"memory {host_memory['used_percent']} % used")
    for label, entry in (disk.get("host") or {}).items():
        parts.append(f"{label} {entry['free_percent']} % free")
    if parts:
        print_line(console, "\nhost: " + ", ".join(parts), "bright_black")


def print_drift(data: dict) -> None:
    console = stdout_console()
    if "apply_running" in data:
        print_line(console, f"Not judged: {data.get('running') or 'an apply'} is changing the stack.", "yellow")
    elif not data["drifted"]:
        print_line(console, "No drift: the stack matches the spec.", "green")
    for entry in data["drifted"]:
        print_line(console, Text.assemble(("drift  ", "yellow"), (entry["service"], "bold")))
        for reason in entry["reasons"]:
            print_line(console, f"       {reason}")
    for warning in data.get("warnings") or []:
        print_line(console, f"warning: {warning}", "yellow")
    if data.get("metrics_file"):
        print_line(console, f"metrics written to {data['metrics_file']}", "bright_black")


def print_status(data: dict, console=None) -> None:
    """One row per service. A terminal too narrow for the ten columns gets three instead:
    the service and its state and health whole, the rest as text that wraps at its spaces,
    and an image reference longer than the room left (pinned by digest) folded onto
    continuation lines, never cut; a pipe always gets the ten, one line per service."""
    console = console or stdout_console()
    table = _status_table(data)
    if not table_fits(table, console):
        table = _narrow_status_table(data, _details_room(data, console))
    print_table(table, console)
    last = data.get("last_apply")  # these lines wrap at a terminal's width; a pipe gets them whole
    if last:
        print_line(console, f"last apply {last['apply_id']}: {last['result']} at {last['started']}"
                            + (f" ({last['duration_s']:.1f}s)" if last.get("duration_s") is not None else ""),
                   "bright_black")
    for warning in data.get("warnings") or []:
        print_line(console, f"warning: {warning}", "yellow")


def _status_table(data: dict) -> Table:
    table = Table(box=None, pad_edge=False, title=f"project {data['project']}", title_justify="left")
    for column in ("service", "profile", "image", "state", "health", "uptime", "restarts",
                   "backup local", "backup S3", "last apply"):
        table.add_column(column, no_wrap=column != "image", overflow="fold")
    for row in data["services"]:
        table.add_row(row["service"], row["profile"], image_text(row), row["state"], _health(row),
                      row["uptime"] or "-", str(row["restarts"]) if row["restarts"] is not None else "-",
                      _when(row["last_backup"]["local"]), _when(row["last_backup"]["s3"]),
                      _when(row["last_apply"]))
    return table


def _narrow_status_table(data: dict, room: int | None = None) -> Table:
    """Three columns; with ``room`` (the details column's width) the image line is folded."""
    table = _narrow_columns(data)
    for row in data["services"]:
        table.add_row(row["service"], _state_cell(row), _status_details(row, room))
    return table


def _narrow_columns(data: dict) -> Table:
    table = Table(box=None, pad_edge=False, title=f"project {data['project']}", title_justify="left")
    table.add_column("service", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("details", overflow="fold")
    return table


_LEAST_ROOM = 8  # below this a folded image is unreadable anyway: the table is drawn wider


def _details_room(data: dict, console) -> int:
    """The width the terminal leaves the details column once service and state are whole
    (measured on the table with a one-character details cell), at least a few characters."""
    probe = _narrow_columns(data)
    for row in data["services"]:
        probe.add_row(row["service"], _state_cell(row), "x")
    used = Measurement.get(console, console.options.update_width(1_000_000), probe).maximum - 1
    return max(console.width - used, _LEAST_ROOM)


def _state_cell(row: dict) -> Text:
    return Text.assemble(row["state"], "\n", _health(row))


def _status_details(row: dict, room: int | None = None) -> str:
    """The wide table's other columns, one line per topic (each may wrap at its spaces)."""
    running = [row["profile"]]
    if row["uptime"]:
        running.append(f"up {row['uptime']}")
    if row["restarts"] is not None:
        running.append(f"{row['restarts']} restart{'' if row['restarts'] == 1 else 's'}")
    backups = f"backup local {_when(row['last_backup']['local'])}, S3 {_when(row['last_backup']['s3'])}"
    image = image_text(row) if room is None else fold_long_words(image_text(row), room)
    return "\n".join([image, ", ".join(running), backups, f"last apply {_when(row['last_apply'])}"])


def image_text(row: dict) -> str:
    """The image the service runs; when it is not the spec's, both: ``app:1 (spec: app:2)``.
    A row without ``running_image`` (no container) shows the spec's."""
    running = row.get("running_image")
    if not running:
        return row["image"]
    return running if row.get("image_matches_spec", True) else f"{running} (spec: {row['image']})"


def fold_long_words(text: str, width: int) -> str:
    """``text`` with each word longer than ``width`` broken into lines of ``width``: a value
    without spaces (an image digest) continues on the next lines instead of widening the
    table; nothing is cut, and the lines joined give the word back."""
    width = max(width, 1)
    words = (word if len(word) <= width else
             "\n".join(word[i:i + width] for i in range(0, len(word), width)) for word in text.split(" "))
    return " ".join(words)


_HISTORY_COLUMNS = (("APPLY", "<"), ("COMMAND", "<"), ("STARTED", "<"), ("DURATION", ">"), ("ACTIONS", ">"))
_RESULT_INDENT = "    "


def history_lines(records: list[dict], width: int | None = None) -> list[str]:
    """``reconcile history`` for people: id, command, start (UTC, to the minute, as ``status``
    shows times: the id holds the second), duration and actions whole and aligned, two spaces
    apart, then the result: 80 columns for the usual results. On a terminal of ``width``, a
    result that does not fit after them (``interrupted during recreate:…``) continues on
    indented lines of its own, so no line is wider than the terminal and nothing is cut."""
    cells = [_history_cells(record) for record in records]
    widths = [max([len(header)] + [len(row[i]) for row in cells]) for i, (header, _) in enumerate(_HISTORY_COLUMNS)]

    def fixed(values: list[str]) -> str:
        return "  ".join(f"{value:{align}{size}}" for value, (_, align), size in zip(values, _HISTORY_COLUMNS, widths))

    lines = [fixed([header for header, _ in _HISTORY_COLUMNS]) + "  RESULT"]
    for record, row in zip(records, cells):
        lines += _with_result(fixed(row), str(record["result"]), width)
    return lines


def _history_cells(record: dict) -> list[str]:
    duration = f"{record['duration_s']:.1f}s" if record.get("duration_s") is not None else "-"
    return [record["apply_id"], record["command"], _when(record["started"]), duration, str(record["actions"])]


def _with_result(columns: str, result: str, width: int | None) -> list[str]:
    line = f"{columns}  {result}"
    if width is None or len(line) <= width:
        return [line]
    folded = textwrap.wrap(result, max(width, 2 * len(_RESULT_INDENT)), initial_indent=_RESULT_INDENT,
                           subsequent_indent=_RESULT_INDENT, break_on_hyphens=False)
    return [columns.rstrip(), *folded]


def _health(row: dict) -> Text:
    return Text(row["health"], style=_HEALTH_STYLE.get(row["health"], ""))


def _when(value: str | None) -> str:
    """``2026-01-05 02:00`` from an ISO timestamp (minutes are enough on one screen)."""
    if not value:
        return "-"
    return value.replace("T", " ")[:16]
