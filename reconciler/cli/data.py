"""Data commands: health, backup, restore, verify, and the backups catalogue."""

from __future__ import annotations

import re
import sys
from typing import Annotated, Optional

import typer

from reconciler.cli.app import STATE, JsonOpt, LockWaitOpt, app, lock_wait_seconds

backups_app = typer.Typer(help="List, verify and prune stored backups.", no_args_is_help=True)
app.add_typer(backups_app, name="backups")

ServicesArg = Annotated[Optional[list[str]], typer.Argument(help="Services (default: all).")]


def _session():
    from reconciler.observe import prefetch
    from reconciler.session import Session
    from reconciler.spec.load import load_spec

    loaded = load_spec(STATE.file)
    return Session(loaded, prefetched=prefetch.claim_containers(loaded.file, loaded.spec.project))


# What ``backup`` names backups: the UTC time, and -2, -3… for more in the same second.
_BACKUP_ID = re.compile(r"^\d{4}-\d{2}-\d{2}-\d{6}(-\d+)?$")


def _check_request(session, command: str, backup_id: str, services: list[str] | None) -> None:
    """Catch slips before any store is read: a service the spec does not have, one that keeps
    no data, and a service name given where the backup id goes (``verify postgres``)."""
    from reconciler.errors import ReconcileError
    from reconciler.spec.models import BACKUPABLE_KINDS, Kind

    known = session.spec.services
    unknown = [name for name in services or [] if name not in known]
    if unknown:
        raise ReconcileError(f"unknown service{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}",
                             ref=f"{command}.unknown-service",
                             hint=f"services: {', '.join(sorted(known))}")
    # a generic service without a writable volume is never backed up ("take one with: reconcile
    # backup" sent the user to a backup that refuses it)
    holds_none = [name for name in services or [] if known[name].kind not in BACKUPABLE_KINDS
                  or (known[name].kind is Kind.GENERIC and all(m.read_only for m in known[name].volumes))]
    if holds_none:
        kinds = ", ".join(f"{name} is kind {known[name].kind.value}"
                          + (" with no writable volume" if known[name].kind is Kind.GENERIC else "")
                          for name in holds_none)
        raise ReconcileError(f"nothing to {command} for {', '.join(holds_none)}: no data is kept ({kinds})",
                             ref=f"{command}.no-data",
                             hint="only postgres, redis and generic services with volumes are backed up")
    if backup_id in known and not _BACKUP_ID.match(backup_id):
        wanted = " ".join([backup_id, *(services or [])])
        raise ReconcileError(f"{backup_id} is a service, not a backup id", ref=f"{command}.service-as-id",
                             hint=f"the backup id comes first: `reconcile {command} latest {wanted}` "
                                  "(or an id from `reconcile backups list`)")


def _say(as_json: bool):
    """A progress callback: a line on stderr for people, nothing in JSON mode; and the
    meter for long transfers: bars on the same console when it is a terminal. Messages
    are printed as they are (a file name in brackets is not rich markup), and off a
    terminal without rich at all, which a scheduled backup would only wait to import."""
    from reconciler.backup.meter import NO_METER

    if as_json:
        return (lambda _msg: None), NO_METER
    if not sys.stderr.isatty():
        def plain(msg: str) -> None:
            sys.stderr.write(f"… {msg}\n")
            sys.stderr.flush()
        return plain, NO_METER
    from reconciler.cli.output import print_line, stderr_console
    from reconciler.cli.progress import meter_for

    console = stderr_console()
    return (lambda msg: print_line(console, f"… {msg}")), meter_for(console, as_json)


@app.command()
def health(services: ServicesArg = None, as_json: JsonOpt = False) -> None:
    """Deep health of each service.

    Exit 0 healthy, 1 minor, 2 critical (or the engine cannot be reached), 3 containers missing.
    """
    from reconciler import health as checks
    from reconciler.apply.lock import held_by
    from reconciler.cli import output
    from reconciler.operate.hooks import notify_health

    STATE.json = as_json
    session = _session()
    results = checks.check_all(session, services)
    if (holder := held_by(session.loaded.state_dir(), session.spec.project)) is not None:
        results = checks.while_changing(results, holder.describe(), holder.running)
    notify_health(session, results)
    if as_json:
        output.print_json(checks.report(results))
    else:
        output.print_health(results)
    raise typer.Exit(checks.exit_code(results))


@app.command()
def backup(services: ServicesArg = None, as_json: JsonOpt = False,
           prune: Annotated[bool, typer.Option(help="Apply retention afterwards.")] = True) -> None:
    """Back up stateful services to the local folder and S3. Exit 1 when only S3 failed."""
    from reconciler.backup.run import backup_services, backupable
    from reconciler.cli import output
    from reconciler.operate import runlog

    STATE.json = as_json
    session = _session()
    say, meter = _say(as_json)
    with runlog.open_run(session, "backup") as log:
        run = backup_services(session, backupable(session, services),
                              progress=log.progress(say), meter=meter, resume_interrupted=True)
        pruned = _prune_after_backup(session, run) if prune else []
        log.event("result", backup_id=run.backup_id, storage=run.document["storage"],
                  warnings=run.warnings, resumed=run.resumed)
    if as_json:
        output.print_json({**run.document, "warnings": run.warnings, "pruned": pruned, "resumed": run.resumed})
    else:
        output.print_backup(run.document, run.warnings, pruned)
    if run.warnings:
        raise typer.Exit(1)


@app.command()
def restore(
    backup_id: Annotated[str, typer.Argument(help="latest, or a backup id.")] = "latest",
    services: ServicesArg = None,
    source: Annotated[str, typer.Option(help="auto | local | s3")] = "auto",
    as_json: JsonOpt = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask: replace the live data.")] = False,
    lock_wait: LockWaitOpt = "0s",
) -> None:
    """Replace live data with a backup (local copy first, S3 when it is missing or corrupt)."""
    from reconciler.apply.journal import new_apply_id
    from reconciler.apply.lock import ApplyLock, waiting_notice
    from reconciler.backup.restore import Source, restore_services
    from reconciler.cli import output
    from reconciler.operate import runlog

    STATE.json = as_json
    chosen = Source(source) if source in {s.value for s in Source} else None
    if chosen is None:
        raise typer.BadParameter("auto, local or s3", param_hint="--source")
    session = _session()
    _check_request(session, "restore", backup_id, services)
    which = ("the newest backup of each (`reconcile backups list` shows them)" if backup_id == "latest"
             else f"backup {backup_id}")
    _confirm(yes, f"Replace the live data of {', '.join(services or ['all backed-up services'])} with {which}? "
                  "Data written since that backup is lost.")
    # Under the apply lock: two restores (or a restore and an apply's) replacing the same
    # databases at once left one missing, with errors that blamed the backup.
    wait = lock_wait_seconds(lock_wait)
    lock = ApplyLock(session.state_dir(), new_apply_id(), wait=wait, project=session.spec.project,
                     command="restore", on_wait=waiting_notice(lambda e: output.echo(e["message"], err=True), wait))
    with lock, runlog.open_run(session, "restore") as log:
        say, meter = _say(as_json)
        run = restore_services(session, backup_id, services, source=chosen,
                               progress=log.progress(say), meter=meter)
        log.event("result", restore=run.as_dict())
    output.print_json(run.as_dict()) if as_json else output.print_restore(run.as_dict())


def _confirm(yes: bool, question: str) -> None:
    import sys

    from reconciler.errors import ReconcileError

    if yes:
        return
    if not sys.stdin.isatty():
        raise ReconcileError("refusing to restore without confirmation", ref="restore.confirm",
                             hint="pass --yes when running without a terminal")
    if not typer.confirm(question):
        raise ReconcileError("restore cancelled: nothing was changed", ref="restore.cancelled")


@app.command()
def verify(
    backup_id: Annotated[str, typer.Argument(help="latest, or a backup id.")] = "latest",
    services: ServicesArg = None, as_json: JsonOpt = False,
) -> None:
    """Check live data against a backup: row counts, critical tables, foreign keys, keys."""
    from reconciler.backup.verify import as_seed_dict, verify_services
    from reconciler.cli import output

    STATE.json = as_json
    session = _session()
    _check_request(session, "verify", backup_id, services)
    _not_being_restored(session, services)
    found, reports = verify_services(session, backup_id, services)
    data = as_seed_dict(found, reports)
    output.print_json(data) if as_json else output.print_verify(data)
    if data["status"] != "success":
        raise typer.Exit(2)


def _not_being_restored(session, services: list[str] | None) -> None:
    """A restore running now is refilling the data in place: verify would report its half-way
    state as a mismatch (exit 2, which CI reads as lost data). One that stopped halfway is
    partial data, which verify reports as it is."""
    from reconciler.backup import restoring
    from reconciler.errors import ReconcileError

    state = session.loaded.state_dir()
    running = {name: record for name, record in restoring.open_records(state).items()
               if (not services or name in services) and restoring.interrupted(state, name) is None}
    if running:
        what = ", ".join(f"{name} (from backup {record.get('backup_id')})" for name, record in sorted(running.items()))
        raise ReconcileError(f"a restore is replacing the data of {what} right now: not verified",
                             ref="verify.restore-running", hint="verify once the restore has finished")


@backups_app.command("list")
def backups_list(as_json: JsonOpt = False) -> None:
    """Backups in the local folder and on S3, newest first. Exit 1 when a store cannot be read
    (or a backup's S3 copy was interrupted: its process killed during the copy).

    With --json, stdout stays the list of backups; a store's error goes to stderr as
    {"warnings": [...], "stores": {...}, "problems": [...]}.
    """
    from reconciler.backup.catalogue import catalogue
    from reconciler.cli import output

    STATE.json = as_json
    found = catalogue(_session())
    if not as_json:
        output.print_catalogue(found)
    else:
        output.print_json(found.rows)
        if found.problems:
            output.print_json_warnings([str(p) for p in found.problems], stores=found.stores,
                                       problems=[p.as_dict() for p in found.problems])
    if found.problems:
        raise typer.Exit(1)


@backups_app.command("verify")
def backups_verify(as_json: JsonOpt = False) -> None:
    """Re-hash every stored backup file against its metadata checksum (local and S3).

    Exit 2 when a file or metadata does not match, or a backup has no S3 copy its record
    promised (deleted there, or its copy interrupted), 1 when a store could not be read (the
    others are still checked). Files no metadata names are a warning.
    """
    from reconciler.backup.catalogue import check_files
    from reconciler.cli import output

    STATE.json = as_json
    found = check_files(_session())
    status = "failed" if found.problems else "incomplete" if found.unreadable_stores else "ok"
    if as_json:
        output.print_json({"checked": found.checked, "problems": found.problems, "unrecorded": found.unrecorded,
                           "stores_not_read": [p.as_dict() for p in found.unreadable_stores],
                           "status": status})
    else:
        output.print_file_check(found)
    if found.problems:
        raise typer.Exit(2)
    if found.unreadable_stores:
        raise typer.Exit(1)


@backups_app.command("prune")
def backups_prune(dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show.")] = False,
                  as_json: JsonOpt = False) -> None:
    """Apply the retention policy (daily/weekly/monthly) to local and S3 separately.

    A store that fails does not stop the others: their reports are printed, the failure
    is a warning (stderr, or an "error" in that store's JSON entry), and the exit code is 1.
    So is a metadata file that cannot be read (the backup it records is never pruned).
    """
    from reconciler.cli import output

    STATE.json = as_json
    reports = _prune_all(_session(), dry_run)
    if as_json:
        output.print_json(reports)
    else:
        output.print_prune(reports, dry_run)
    if any(report["error"] or report["unreadable"] for report in reports):
        raise typer.Exit(1)


def _prune_after_backup(session, run) -> list[dict]:
    """Retention after a backup; a store that fails to prune is a warning, never a failed
    backup, and never hides what was pruned in the other store."""
    reports = _prune_all(session, dry_run=False, with_s3=run.s3_status == "ok")
    for report in reports:
        if report["error"]:
            run.warnings.append(f"retention was not applied to {report['name']} "
                                f"({report['store']}): {report['error']['message']}")
        run.warnings += [f"{item['key']} in the {report['name']} store cannot be read ({item['reason']}): "
                         "the files of the backup it records are never pruned; fix or remove it"
                         for item in report["unreadable"]]
    return reports


def _prune_all(session, dry_run: bool, with_s3: bool = True) -> list[dict]:
    """One report per store, each pruned on its own: local deletions already made must be
    reported even when S3 then fails, so a store's error lands in its own entry."""
    names = ["local"] + (["s3"] if with_s3 and session.spec.backup.s3.enabled else [])
    return [_prune_one(session, name, dry_run) for name in names]


def _prune_one(session, name: str, dry_run: bool) -> dict:
    from reconciler.errors import ReconcileError
    from reconciler.storage.prune import PrunePartlyDone, prune_store

    entry = {"name": name, "store": name, "dry_run": dry_run, "deleted": [],
             "deleted_metadata": [], "kept": [], "unreadable": [], "others": {}, "error": None}
    report = None
    try:
        store = session.local if name == "local" else session.s3  # opening S3 can fail too
        entry["store"] = store.describe()
        report = prune_store(store, session.spec.backup.retention, dry_run=dry_run, project=session.spec.project,
                             keep_ids=_in_use(session))
    except ReconcileError as exc:
        entry["error"] = {"error": exc.ref, "message": exc.message, "hint": exc.hint}
        report = exc.report if isinstance(exc, PrunePartlyDone) else None
    if report is not None:
        entry.update(store=report.store, deleted=report.deleted,
                     deleted_metadata=report.deleted_metadata, kept=report.kept,
                     unreadable=[{"key": u.key, "reason": u.reason} for u in report.unreadable],
                     others=report.others)
        if name == "s3" and not dry_run and report.deleted_metadata:
            _mark_s3_pruned(session, entry, report.deleted_metadata)
    return entry


def _in_use(session) -> set[str]:
    """Backups retention keeps whatever it decides: one a restore was loading (running, or
    stopped halfway), and those a live process holds the claim of (a backup still copying to
    S3, one a restore or an apply is using). QA: a backup's retention deleted the files of
    another backup mid-copy, whose record then named files that were gone, and of the backup a
    restore was loading, which failed halfway with a traceback."""
    from reconciler.backup import restoring
    from reconciler.storage.leftovers import running_ids

    restoring_from = {r.get("backup_id") for r in restoring.open_records(session.loaded.state_dir()).values()}
    return restoring_from | running_ids(session.local.root)


def _mark_s3_pruned(session, entry: dict, keys: list[str]) -> None:
    """The local records of backups S3's retention removed say so (``backups verify``)."""
    from reconciler.backup import metadata
    from reconciler.errors import ReconcileError

    try:
        metadata.mark_s3_pruned(session.local, keys)
    except ReconcileError as exc:
        entry["error"] = entry["error"] or {"error": exc.ref, "hint": exc.hint,
                                            "message": f"the local records of what was pruned were not "
                                                       f"updated: {exc.message}"}
