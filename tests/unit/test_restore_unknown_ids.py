"""A mistyped backup id at 3 a.m.: the error names the closest id and the newest ones, not
only "list them with: reconcile backups list"; with S3 down, it says the local folder lacks it;
a partial local copy is not called a backup without the service; a service that keeps no data
is refused as such.
No engine and no S3 server: the backups are written into the local folder by hand
(``test_cli_prune``'s three daily postgres backups; its S3 endpoint is a closed port)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from reconciler.backup.restore import Source, pick_backups
from reconciler.errors import RestoreError
from reconciler.session import Session
from reconciler.spec.load import load_spec
from tests.conftest_s3 import TEST_ACCESS_KEY, TEST_SECRET_KEY, closed_port
from tests.unit.test_cli_prune import spec  # noqa: F401 - a fixture: three daily postgres backups


def session_for(spec_file) -> Session:  # noqa: F811
    environ = {"S3_ENDPOINT": f"http://127.0.0.1:{closed_port()}", "S3_ACCESS_KEY_ID": TEST_ACCESS_KEY,
               "S3_SECRET_ACCESS_KEY": TEST_SECRET_KEY}
    return Session(load_spec(spec_file, environ), environ=environ)


@pytest.mark.parametrize("typed", ["2026-11-02-020001", "2026-11-2-020000", "2026-11-02-02000"])
def test_a_typo_names_the_closest_id_and_the_newest(spec, typed):  # noqa: F811
    with pytest.raises(RestoreError) as caught:
        pick_backups(session_for(spec), typed, None, Source.LOCAL)
    assert caught.value.ref == "restore.unknown-id" and typed in caught.value.message
    hint = caught.value.hint
    assert hint.startswith("did you mean 2026-11-02-020000? ")
    assert "newest: 2026-11-03-020000, 2026-11-02-020000, 2026-11-01-020000 (" in hint
    assert "reconcile backups list" in hint


def test_an_id_like_none_lists_the_newest_only(spec):  # noqa: F811
    with pytest.raises(RestoreError) as caught:
        pick_backups(session_for(spec), "yesterday", ["postgres"], Source.LOCAL)
    assert caught.value.hint.startswith("newest: 2026-11-03-020000")


def test_no_backup_at_all_says_so(spec):  # noqa: F811
    for path in (spec.parent / "backups" / "metadata").iterdir():
        path.unlink()
    with pytest.raises(RestoreError) as caught:
        pick_backups(session_for(spec), "2026-11-02-020000", None, Source.LOCAL)
    assert "no backup of this project was found" in caught.value.hint


def test_an_id_not_here_with_s3_down_says_both(spec):  # noqa: F811
    """The S3 error alone ("cannot reach S3 endpoint …") did not say the local folder lacks the id."""
    with pytest.raises(RestoreError) as caught:
        pick_backups(session_for(spec), "2026-10-01-020000", None, Source.AUTO)
    message = caught.value.message
    assert message.startswith("no backup with id 2026-10-01-020000 in the local folder, and S3 could not be read")
    assert "cannot reach S3 endpoint" in message and caught.value.hint
    assert TEST_SECRET_KEY not in message + caught.value.hint and TEST_ACCESS_KEY not in message + caught.value.hint


def test_a_partial_local_copy_does_not_say_the_backup_lacks_the_service(spec):  # noqa: F811
    """The local record a restore from S3 wrote names only the files kept here: `--source local`
    of another service said "backup X holds no cache; pick another backup id", though S3 has it."""
    key = spec.parent / "backups" / "metadata" / "backup-2026-11-02-020000.json"
    doc = json.loads(key.read_text())
    key.write_text(json.dumps(dict(doc, partial=True)))
    with pytest.raises(RestoreError) as caught:
        pick_backups(session_for(spec), "2026-11-02-020000", ["cache"], Source.LOCAL)
    assert caught.value.message.startswith("the local copy of backup 2026-11-02-020000 holds no cache")
    assert "--source auto" in caught.value.hint and "pick another backup" not in caught.value.hint


@pytest.mark.parametrize("command", ["restore", "verify"])
def test_a_generic_service_without_a_writable_volume_holds_no_data(tmp_path, command):
    """It is never backed up: "no verified backup holds worker; take one with: reconcile backup"
    sent the user to a backup that refuses it ("worker has no writable volume to archive")."""
    path = tmp_path / "reconcile.yaml"
    path.write_text(textwrap.dedent("""\
        version: 1
        project: qa-restore-cli
        services:
          worker:
            image: reconcile-lab/app:1
            volumes: ["/srv/config:/config:ro"]
          files:
            image: reconcile-lab/app:1
            volumes: ["files:/srv/files"]
            stateful: true
        volumes:
          files: {}
        backup:
          local: { path: ./backups }
        """))
    result = subprocess.run([sys.executable, "-m", "reconciler", "-f", str(path), command, "latest", "worker",
                             *(["--yes"] if command == "restore" else [])],
                            capture_output=True, text=True, timeout=60, env={**os.environ, "NO_COLOR": "1"})
    assert result.returncode == 1
    assert (f"error[{command}.no-data] nothing to {command} for worker: no data is kept "
            "(worker is kind generic with no writable volume)") in result.stderr
    assert "take one with" not in result.stderr
