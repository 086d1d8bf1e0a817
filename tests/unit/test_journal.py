"""The journal: append-only JSON lines; a torn last line; summaries for `reconcile history`."""

from __future__ import annotations

import json
import os

from reconciler.apply.journal import Journal, history, read_records, summarise


def write(tmp_path, apply_id: str, events: list[tuple[str, dict]]) -> Journal:
    journal = Journal(tmp_path, apply_id)
    for event, fields in events:
        journal.write(event, **fields)
    journal.close()
    return journal


FULL = [("start", {"actions": ["backup:db", "recreate:db"]}),
        ("action-begin", {"action": "backup:db"}), ("action-end", {"action": "backup:db", "status": "ok"}),
        ("action-begin", {"action": "recreate:db"}),
        ("action-end", {"action": "recreate:db", "status": "failed"}),
        ("finish", {"result": "failed", "exit_code": 2})]


def test_a_finished_apply_is_summarised(tmp_path):
    write(tmp_path, "20260101T000000Z-aaaaaa", FULL)
    [record] = history(tmp_path)
    assert (record.apply_id, record.actions, record.result, record.exit_code) == (
        "20260101T000000Z-aaaaaa", 1, "failed", 2)
    assert record.duration_s is not None and record.duration_s >= 0 and record.finished


def write_and_die(tmp_path, apply_id: str, events: list[tuple[str, dict]]) -> Journal:
    """The journal of an apply killed after ``events``: written by a process that is gone."""
    pid = os.fork()
    if pid == 0:  # the child is the apply
        try:
            write(tmp_path, apply_id, events)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    return Journal(tmp_path, apply_id)


def test_a_torn_last_line_ends_the_record_and_says_where_it_stopped(tmp_path):
    journal = write_and_die(tmp_path, "20260101T000000Z-bbbbbb", FULL[:4])
    journal.close()
    with journal.path.open("a") as out:
        out.write('{"ts": "2026-01-01T00:00:01", "event": "st')  # killed mid-write
    assert [r["event"] for r in read_records(journal.path)] == ["start", "action-begin", "action-end",
                                                               "action-begin"]
    record = summarise(journal.path)
    assert record.result == "interrupted during recreate:db" and record.duration_s is None
    assert record.exit_code is None


def test_history_lists_applies_in_order_and_skips_empty_files(tmp_path):
    write(tmp_path, "20260102T000000Z-cccccc", FULL)
    write(tmp_path, "20260101T000000Z-dddddd", FULL)
    (tmp_path / "journal" / "20260103T000000Z-eeeeee.jsonl").write_text("")
    assert [r.apply_id for r in history(tmp_path)] == ["20260101T000000Z-dddddd", "20260102T000000Z-cccccc"]
    assert history(tmp_path / "nowhere") == []


def test_lines_are_appended_never_rewritten(tmp_path):
    journal = write(tmp_path, "20260101T000000Z-ffffff", FULL[:2])
    again = Journal(tmp_path, "20260101T000000Z-ffffff")
    again.write("finish", result="ok")
    again.close()
    assert [r["event"] for r in read_records(journal.path)] == ["start", "action-begin", "finish"]
    assert (journal.path.stat().st_mode & 0o777) == 0o600


def test_an_apply_whose_process_still_runs_is_running_not_interrupted(tmp_path):
    """``status``, ``history`` and the metrics read an apply in progress (it holds the lock,
    no ``finish`` yet) as running: not "interrupted during recreate:db", not failed."""
    journal = write(tmp_path, "20260101T000000Z-abcdef", FULL[:4])  # this process: still alive
    record = summarise(journal.path)
    assert record.result == "running" and record.finished is None and record.exit_code is None
    assert read_records(journal.path)[0]["owner"]["pid"] == os.getpid()


def test_an_apply_whose_pid_now_belongs_to_another_process_is_interrupted(tmp_path):
    journal = write(tmp_path, "20260101T000000Z-fedcba", FULL[:4])
    lines = journal.path.read_text().splitlines()
    start = json.loads(lines[0])
    start["owner"]["since"] = "1"  # the pid is alive, but it started at another moment
    journal.path.write_text("\n".join([json.dumps(start), *lines[1:]]) + "\n")
    assert summarise(journal.path).result == "interrupted during recreate:db"


def test_a_journal_without_an_owner_is_interrupted(tmp_path):
    """Journals written before the owner was recorded keep their old reading."""
    journal = write(tmp_path, "20260101T000000Z-0a0b0c", FULL[:4])
    lines = journal.path.read_text().splitlines()
    start = json.loads(lines[0])
    del start["owner"]
    journal.path.write_text("\n".join([json.dumps(start), *lines[1:]]) + "\n")
    assert summarise(journal.path).result == "interrupted during recreate:db"


def test_the_metrics_and_status_read_a_running_apply_as_neither_failed_nor_interrupted(tmp_path):
    from reconciler.operate import gather

    write(tmp_path, "20260101T000000Z-111111", [("start", {}), ("finish", {"result": "ok", "exit_code": 0})])
    write(tmp_path, "20260102T000000Z-222222", FULL[:4])  # running now
    ended = gather.last_apply(tmp_path)
    assert (ended.apply_id, ended.result, ended.success) == ("20260101T000000Z-111111", "ok", True)
    now = gather.last_apply(tmp_path, running=True)
    assert (now.apply_id, now.result, now.success) == ("20260102T000000Z-222222", "running", None)


def test_a_rollback_is_listed_as_one(tmp_path):
    write(tmp_path, "20260101T000000Z-aaaaaa", [("start", {"project": "p"}), ("finish", {"result": "ok"})])
    write(tmp_path, "20260101T000100Z-bbbbbb", [("start", {"project": "p", "command": "rollback"}),
                                                 ("finish", {"result": "ok"})])
    assert [r.command for r in history(tmp_path)] == ["apply", "rollback"]
