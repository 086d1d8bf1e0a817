"""Text for people: diagnose findings, drift, and the status table (rich, no colour in CI)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from reconciler.cli.output import print_table, stdout_console, table_fits

_SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}
_HEALTH_STYLE = {"healthy": "green", "degraded": "yellow", "missing": "red", "stopped": "red",
                 "unhealthy": "red", "unreachable": "red", "refused": "red", "restarting": "red",
                 "error": "red"}


def print_diagnosis(report: dict) -> None:
    console = stdout_console()
    issues = report["issues"]
    if not issues:
        console.print(Text("No issues found.", style="green"))
    for issue in issues:
        style = _SEVERITY_STYLE.get(issue["severity"], "")
        console.print(Text.assemble((f"{issue['severity'].upper():<9}", style),
                                    f"{issue['service']}: ", (issue["issue"], "bold")))
        console.print(Text(f"         {issue['details']}"))
        console.print(Text.assemble(("         fix: ", "cyan"), issue["suggested_fix"]))
    _print_usage(console, report.get("resource_usage") or {})
    for service, lines in (report.get("logs") or {}).items():
        console.print(Text(f"\nlast log lines of {service}:", style="bold"))
        for line in lines or ["(no output)"]:
            console.print(Text(f"  | {line}"))


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
        console.print(Text("\nhost: " + ", ".join(parts), style="bright_black"))


def print_drift(data: dict) -> None:
    console = stdout_console()
    if "apply_running" in data:
        console.print(Text("Not judged: an apply is changing the stack.", style="yellow"))
    elif not data["drifted"]:
        console.print(Text("No drift: the stack matches the spec.", style="green"))
    for entry in data["drifted"]:
        console.print(Text.assemble(("drift  ", "yellow"), (entry["service"], "bold")))
        for reason in entry["reasons"]:
            console.print(Text(f"       {reason}"))
    for warning in data.get("warnings") or []:
        console.print(Text(f"warning: {warning}", style="yellow"))
    if data.get("metrics_file"):
        console.print(Text(f"metrics written to {data['metrics_file']}", style="bright_black"))


def print_status(data: dict, console=None) -> None:
    """One row per service. A terminal too narrow for the ten columns gets three instead:
    the service and its state and health whole, the rest as text that wraps at its spaces
    (the image is never cut); a pipe always gets the ten, one line per service."""
    console = console or stdout_console()
    table = _status_table(data)
    if not table_fits(table, console):
        table = _narrow_status_table(data)
    print_table(table, console)
    wrap = console.is_terminal  # at the terminal's width, at spaces; a pipe gets whole lines
    last = data.get("last_apply")
    if last:
        console.print(Text(f"last apply {last['apply_id']}: {last['result']} at {last['started']}"
                           + (f" ({last['duration_s']:.1f}s)" if last.get("duration_s") is not None else ""),
                           style="bright_black"), soft_wrap=not wrap)
    for warning in data.get("warnings") or []:
        console.print(Text(f"warning: {warning}", style="yellow"), soft_wrap=not wrap)


def _status_table(data: dict) -> Table:
    table = Table(box=None, pad_edge=False, title=f"project {data['project']}", title_justify="left")
    for column in ("service", "profile", "image", "state", "health", "uptime", "restarts",
                   "backup local", "backup S3", "last apply"):
        table.add_column(column, no_wrap=column != "image", overflow="fold")
    for row in data["services"]:
        table.add_row(row["service"], row["profile"], row["image"], row["state"], _health(row),
                      row["uptime"] or "-", str(row["restarts"]) if row["restarts"] is not None else "-",
                      _when(row["last_backup"]["local"]), _when(row["last_backup"]["s3"]),
                      _when(row["last_apply"]))
    return table


def _narrow_status_table(data: dict) -> Table:
    table = Table(box=None, pad_edge=False, title=f"project {data['project']}", title_justify="left")
    table.add_column("service", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("details", overflow="fold")
    for row in data["services"]:
        table.add_row(row["service"], Text.assemble(row["state"], "\n", _health(row)), _status_details(row))
    return table


def _status_details(row: dict) -> str:
    """The wide table's other columns, one line per topic (each may wrap at its spaces)."""
    running = [row["profile"]]
    if row["uptime"]:
        running.append(f"up {row['uptime']}")
    if row["restarts"] is not None:
        running.append(f"{row['restarts']} restart{'' if row['restarts'] == 1 else 's'}")
    backups = f"backup local {_when(row['last_backup']['local'])}, S3 {_when(row['last_backup']['s3'])}"
    return "\n".join([row["image"], ", ".join(running), backups, f"last apply {_when(row['last_apply'])}"])


def _health(row: dict) -> Text:
    return Text(row["health"], style=_HEALTH_STYLE.get(row["health"], ""))


def _when(value: str | None) -> str:
    """``2026-01-05 02:00`` from an ISO timestamp (minutes are enough on one screen)."""
    if not value:
        return "-"
    return value.replace("T", " ")[:16]
