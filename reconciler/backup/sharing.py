"""A backup folder or S3 prefix that two projects share.

Keys name no project (the seed's layout: ``<service>/<service>-<time>.…``,
``metadata/backup-<id>.json``): two projects writing to one S3 prefix overwrite each other's
files when their backups start in the same second (two cron jobs at 02:00) with a service name
in common, and each would restore, list and prune the other's backups as its own. So readers
leave other projects' backups out (``metadata.load_all(project=…)``) and say the store is
shared, and a backup does not copy to an S3 prefix that holds another project's. A local
folder is written safely (ids are claimed there atomically): it is only warned about.
"""

from __future__ import annotations

import json

from reconciler.backup import metadata
from reconciler.storage.prune import read_unless_vanished

SAMPLE = 5  # the newest metadata documents a backup reads before copying to S3
HINT = ("give each project its own folder or prefix (backup.local.path, backup.s3.prefix): "
        "backup keys name no project, so in a shared one they collide")


def projects_of(docs: list[dict]) -> list[str]:
    return sorted({who for doc in docs if (who := metadata.owner(doc)) is not None})


def described(others: list[dict]) -> str:
    """``also holds 3 backups of project shop``: what a shared store's warning says."""
    projects = projects_of(others)
    plural = "s" if len(projects) > 1 else ""
    return (f"also holds {len(others)} backup{'s' if len(others) != 1 else ''} of project{plural} "
            f"{', '.join(projects)}, left alone")


def others_in(store, project: str, sample: int = SAMPLE) -> list[str]:
    """Projects other than ``project`` named by the store's newest ``sample`` metadata
    documents (ids sort by time): enough to catch a shared prefix before writing to it."""
    keys = sorted(o.key for o in store.list("metadata/") if o.key.endswith(".json"))[-sample:]
    found = set()
    for key in keys:
        raw = read_unless_vanished(store, key)
        try:
            doc = json.loads(raw) if raw is not None else None
        except ValueError:
            continue
        if isinstance(doc, dict) and (who := metadata.owner(doc)) not in (None, project):
            found.add(who)
    return sorted(found)
