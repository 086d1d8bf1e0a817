"""Tables on stdout: nothing is ever cut (ids and timestamps are copied from logs into
`reconcile restore ID`); a pipe gets one line per row, a terminal wraps only the free text."""

from __future__ import annotations

from rich.console import Console

from reconciler.backup.catalogue import Catalogue, StoreProblem
from reconciler.cli import output
from reconciler.health import Level, ServiceHealth

ROWS = [
    {"backup_id": f"2026-11-29-033{n}58-{n}", "timestamp": f"2026-11-29T03:3{n}:58.886731Z",
     "reason": "manual", "verified": True, "stores": ["local", "s3"],
     "services": {"postgres": {"size": 426, "file": "x"}, "dragonfly": {"size": 34, "file": "y"}}}
    for n in range(2, 4)
]
LONG = {"container": "healthcare-postgres-blue", "state": "running", "restarts": 0,
        "docker_health": "healthy", "version": "15.18 (Debian 15.18-0+deb12u1)",
        "database": "healthcare", "database_size": 7634279, "connections": 1,
        "max_connections": 100, "latency_ms": 9.2}


def test_piped_catalogue_keeps_whole_ids_one_line_per_row(capsys):
    output.print_catalogue(Catalogue(ROWS, [], {"local": "ok", "s3": "ok"}))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + len(ROWS)
    for row, line in zip(ROWS, lines[1:]):  # the id says when (UTC): the table fits 80 columns
        assert line.split()[:2] == [row["backup_id"], "postgres,"]
    assert all("…" not in line and line == line.rstrip() and len(line) <= 80 for line in lines)


def test_piped_health_is_one_line_per_service(capsys):
    results = [ServiceHealth(name, "healthy", Level.HEALTHY, LONG) for name in ("postgres", "worker")]
    output.print_health(results)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[1].startswith("postgres") and lines[1].endswith("latency_ms=9.2")
    assert "version=15.18 (Debian 15.18-0+deb12u1)" in lines[1]


def test_narrow_terminal_wraps_free_text_but_never_cuts_an_id():
    console = Console(force_terminal=True, width=50, no_color=True, soft_wrap=True, record=True)
    table = _catalogue_table()
    output.print_table(table, console)
    text = console.export_text()
    assert "…" not in text
    for row in ROWS:
        assert row["backup_id"] in text and row["timestamp"] in text
    assert "dragonfly" in text


def test_wide_terminal_keeps_its_width():
    console = Console(force_terminal=True, width=120, no_color=True, soft_wrap=True, record=True)
    output.print_table(_catalogue_table(), console)
    assert console.width == 120
    assert max(len(line) for line in console.export_text().splitlines()) <= 120


def test_store_problem_is_a_warning_on_stderr_with_its_hint(capsys):
    problem = StoreProblem("s3", "storage", "cannot reach S3 endpoint http://127.0.0.1:9", "check S3_ENDPOINT")
    output.print_catalogue(Catalogue([], [problem], {"local": "ok", "s3": "failed"}))
    captured = capsys.readouterr()
    assert "No backups yet" not in captured.out and "No backups in the local store." in captured.out
    assert "warning[storage] backups in the s3 store were not listed: cannot reach" in captured.err
    assert "hint: check S3_ENDPOINT" in captured.err


def _catalogue_table():
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    table.add_column("backup", no_wrap=True)
    table.add_column("taken (UTC)", no_wrap=True)
    table.add_column("services")
    for row in ROWS:
        table.add_row(row["backup_id"], row["timestamp"], ", ".join(row["services"]))
    return table


def test_piped_status_keeps_long_image_names_whole(capsys):
    from reconciler.operate.show import print_status

    image = "registry.example.org/healthcare/backend-api:2026.11.29-build.4711-" + "f" * 40
    when = {"local": "2026-11-29T03:32:58Z", "s3": None}
    rows = [{"service": name, "profile": "app", "image": image, "state": "running", "health": "healthy",
             "uptime": "3h 12m", "restarts": 0, "last_backup": when, "last_apply": "2026-11-29T03:40:00Z"}
            for name in ("api", "worker")]
    last = {"apply_id": "20261129T041209Z-4fe217", "result": "ok", "started": "2026-11-29T04:12:09Z",
            "duration_s": 10.1}
    print_status({"project": "healthcare", "services": rows, "last_apply": last, "warnings": ["w"]})
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 + len(rows) + 2  # title, header, one line per service, last apply, warning
    assert all(image in line for line in lines[2:4])
    assert lines[4].startswith("last apply 20261129T041209Z-4fe217: ok") and lines[5] == "warning: w"
    assert "…" not in "".join(lines)


BACKUP_DOC = {"backup_id": "2026-11-29-062344", "storage": {"local": "ok", "s3": "failed"},
              "services": {"dragonfly": {
                  "size": 42_000_000, "checksum": "sha256:" + "ab" * 32, "key_count": 1000,
                  "local_path": "/srv/[old]/backups[/x]/dragonfly-2026-11-29-062344.redis-dump.zst"}}}


def test_piped_backup_result_prints_paths_with_brackets_whole(capsys):
    output.print_backup(BACKUP_DOC, ["S3 [eu] unreachable"], [])
    out = capsys.readouterr().out
    assert BACKUP_DOC["services"]["dragonfly"]["local_path"] in out
    assert "warning: S3 [eu] unreachable" in out


def test_colour_terminal_styles_result_lines_without_reading_markup(monkeypatch):
    console = Console(force_terminal=True, width=200, soft_wrap=True, record=True)
    monkeypatch.setattr(output, "color_stdout", lambda: True)
    monkeypatch.setattr(output, "stdout_console", lambda: console)
    output.print_backup(BACKUP_DOC, ["S3 [eu] unreachable"], [])
    assert BACKUP_DOC["services"]["dragonfly"]["local_path"] in console.export_text(clear=False)
    assert "\x1b[33mwarning: S3 [eu] unreachable" in console.export_text(styles=True)


def test_consoles_never_read_markup(capsys):
    """apply's summary, tables and errors print through these: a closing tag in a message
    was a MarkupError, an opening one lost its text."""
    output.stdout_console().print("warning: volume [old] of /srv/[/x]", style="yellow")
    output.stderr_console().print("… removed /srv/[bold]/tmp")
    captured = capsys.readouterr()
    assert "warning: volume [old] of /srv/[/x]" in captured.out
    assert "… removed /srv/[bold]/tmp" in captured.err


def test_a_restore_from_several_backups_names_each_services_backup(capsys):
    data = {"status": "success", "backup_id": "2026-11-29-140913", "restore_timestamp": "…",
            "postgres": {"source": "local", "backup_id": "2026-11-28-020000", "tables_restored": 2,
                         "rows_restored": 10},
            "dragonfly": {"source": "s3", "backup_id": "2026-11-29-140913", "keys_restored": 1}}
    output.print_restore(data)
    assert capsys.readouterr().out.splitlines() == [
        "Restored, each service from its newest backup:",
        "  postgres: backup 2026-11-28-020000 from local, 2 tables, 10 rows, verified",
        "  dragonfly: backup 2026-11-29-140913 from s3, 1 key, verified"]
    data["postgres"]["backup_id"] = data["backup_id"]
    output.print_restore(data)
    assert capsys.readouterr().out.splitlines()[:2] == [
        "Restored backup 2026-11-29-140913:", "  postgres: from local, 2 tables, 10 rows, verified"]


def test_verify_counts_read_as_english(capsys):
    check = {"name": "keys without a TTL in db0", "expected": 3, "actual": 2, "ok": False}
    output.print_verify({"backup_id": "b1", "status": "failed", "services": {
        "dragonfly": {"backup_id": "b1", "checks": [check]},
        "postgres": {"backup_id": "b1", "checks": [dict(check, ok=True), dict(check, ok=True)]}}})
    assert capsys.readouterr().out.splitlines() == [
        "Verify against backup b1: failed",
        "  dragonfly: 1 check, 1 check failed",
        "    keys without a TTL in db0: expected 3, found 2",
        "  postgres: 2 checks, ok"]


def test_verify_counts_the_failed_checks_it_does_not_list(capsys):
    """QA: only 10 of 14 failed checks were shown, and the broken foreign key was hidden."""
    failed = [{"name": f"rows in public.t{i:02}", "expected": 2, "actual": 1, "ok": False} for i in range(14)]
    output.print_verify({"backup_id": "b1", "status": "failed", "services": {
        "postgres": {"backup_id": "b1", "checks": failed}}})
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "    … and 4 more failed (reconcile verify --json lists them all)"
    assert len(lines) == 3 + output.VERIFY_SHOWN


STATUS = {"project": "healthcare", "last_apply": None, "warnings": [], "services": [
    {"service": name, "profile": profile, "image": image, "state": "running", "health": health,
     "uptime": "3h 12m", "restarts": 0, "last_backup": {"local": "2026-11-29T03:32:58Z", "s3": "2026-11-29T03:33:10Z"},
     "last_apply": "2026-11-29T03:40:00Z"}
    for name, profile, image, health in (("postgres", "infrastructure", "reconcile-lab/postgres:17", "healthy"),
                                         ("dragonfly", "infrastructure", "reconcile-lab/redis:7", "unreachable"),
                                         ("api", "app", "reconcile-lab/app:2", "healthy"))]}


def test_status_on_a_narrow_terminal_fits_its_width_and_cuts_no_name():
    from reconciler.operate.show import print_status

    console = Console(force_terminal=True, width=60, no_color=True, soft_wrap=True, record=True)
    print_status({**STATUS, "last_apply": {"apply_id": "20261129T041209Z-4fe217", "result": "ok",
                                           "started": "2026-11-29T04:12:09Z", "duration_s": 10.1},
                  "warnings": ["the S3 store answered slowly, so the newest S3 backups may be missing here"]}, console)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 60, text
    assert console.width == 60 and "…" not in text
    for row in STATUS["services"]:
        assert any(line.startswith(f"{row['service']} ") for line in text.splitlines())
        assert row["image"] in text and row["health"] in text
    assert "2026-11-29 03:32" in text and "2026-11-29 03:40" in text and "infrastructure" in text
    assert "20261129T041209Z-4fe217" in text


def test_status_on_a_wide_terminal_keeps_one_line_per_service():
    from reconciler.operate.show import print_status

    console = Console(force_terminal=True, width=200, no_color=True, soft_wrap=True, record=True)
    print_status(STATUS, console)
    lines = console.export_text().splitlines()
    assert len(lines) == 2 + len(STATUS["services"])
    assert lines[1].split()[:4] == ["service", "profile", "image", "state"]
    assert lines[2].split()[:3] == ["postgres", "infrastructure", "reconcile-lab/postgres:17"]


def test_piped_status_is_one_line_per_service_whatever_the_width(capsys, monkeypatch):
    from reconciler.operate.show import print_status

    monkeypatch.setenv("COLUMNS", "60")
    print_status(STATUS)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 + len(STATUS["services"]) and max(len(line) for line in lines) > 60
    assert lines[3].split()[:5] == ["dragonfly", "infrastructure", "reconcile-lab/redis:7", "running", "unreachable"]
