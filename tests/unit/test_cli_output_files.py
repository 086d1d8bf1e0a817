"""Files a user asks a command to write (a saved plan, diagnose's facts): whole, 0600 even
over an existing file, and a path that cannot be written is an error naming it, exit 1."""

from __future__ import annotations

import os

import pytest

from reconciler.cli.app import write_output
from reconciler.errors import ReconcileError


def test_an_existing_readable_file_is_replaced_by_a_0600_one(tmp_path):
    out = tmp_path / "plan.json"
    out.write_text("old")
    out.chmod(0o644)
    write_output(out, b'{"actions": []}\n', "the plan", ref="plan.write")
    assert out.read_bytes() == b'{"actions": []}\n'
    assert out.stat().st_mode & 0o777 == 0o600


def test_a_umask_of_zero_does_not_open_it_up(tmp_path):
    previous = os.umask(0)
    try:
        write_output(tmp_path / "facts.json", b"{}", "the facts", ref="diagnose.save-facts")
    finally:
        os.umask(previous)
    assert (tmp_path / "facts.json").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("where, says", [("missing/facts.json", "No such file or directory"),
                                         (".", "it is a folder")])
def test_a_path_that_cannot_be_written_is_a_clear_error(tmp_path, where, says):
    with pytest.raises(ReconcileError) as caught:
        write_output(tmp_path / where, b"{}", "the facts", ref="diagnose.save-facts")
    assert caught.value.ref == "diagnose.save-facts" and says in caught.value.message
    assert caught.value.hint
