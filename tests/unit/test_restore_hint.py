"""Where to turn when the local copy of a backup is unusable. QA: with S3 off, the hint said
"--source s3", which said "S3 is not enabled … --source local": a loop, mid-incident."""

from __future__ import annotations

from types import SimpleNamespace

from reconciler.backup import metadata
from reconciler.backup.restore import Pick, _other_copy_hint
from reconciler.storage.local import LocalStore
from tests.unit.test_cli_prune import spec  # noqa: F401 - a fixture: three daily postgres backups


def session_for(spec_file, s3: bool):  # noqa: F811
    return SimpleNamespace(local=LocalStore(spec_file.parent / "backups"), spec=SimpleNamespace(
        project="shop", backup=SimpleNamespace(s3=SimpleNamespace(enabled=s3))))


def pick(session, backup_id: str) -> Pick:
    doc = next(d for d in metadata.load_all(session.local) if d["backup_id"] == backup_id)
    return Pick("postgres", doc)


def test_with_s3_off_the_hint_names_the_backup_before(spec):  # noqa: F811
    session = session_for(spec, s3=False)
    hint = _other_copy_hint(session, pick(session, "2026-11-03-020000"))
    assert "`reconcile restore 2026-11-02-020000 postgres --yes`" in hint and "--source s3" not in hint
    assert "no older backup" in _other_copy_hint(session, pick(session, "2026-11-01-020000"))


def test_with_s3_on_the_hint_is_the_s3_copy(spec):  # noqa: F811
    session = session_for(spec, s3=True)
    assert "--source s3" in _other_copy_hint(session, pick(session, "2026-11-03-020000"))
