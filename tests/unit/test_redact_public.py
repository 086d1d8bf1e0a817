"""What the redactor leaves readable: names the spec shows anyway."""

from __future__ import annotations

from reconciler.operate.redact import Redactor
from reconciler.spec.load import load_spec

SPEC = """\
version: 1
project: shop
services:
  db:
    kind: postgres
    image: postgres:16
    env: {{ POSTGRES_DB: healthcare, POSTGRES_PASSWORD: "${{env:PW}}", POSTGRES_USER: "${{env:PGUSER}}" }}
    backup: {{ databases: [healthcare, "{second}"] }}
"""


def test_a_database_name_written_in_backup_databases_is_not_masked_but_an_interpolated_one_is(tmp_path):
    """QA: POSTGRES_DB's value is an env value, so apply's errors read 'database ***'; the
    spec writes the name in backup.databases, shown in every plan."""
    spec = tmp_path / "reconcile.yaml"
    spec.write_text(SPEC.format(second="${env:OTHER_DB}"))
    redact = Redactor.for_spec(load_spec(spec, {"PW": "s3cret-pw", "PGUSER": "owner1", "OTHER_DB": "tenant42"}))
    assert redact("psql restore of database healthcare failed") == "psql restore of database healthcare failed"
    assert redact("database tenant42, password s3cret-pw, user owner1") == "database ***, password ***, user ***"
