"""The journal: append-only JSON lines; a torn last line; summaries for `reconcile history`."""

from __future__ import annotations

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


def test_a_torn_last_line_ends_the_record_and_says_where_it_stopped(tmp_path):
    journal = write(tmp_path, "20260101T000000Z-bbbbbb", FULL[:4])
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
