"""The backup of a service that left the spec, taken before its container is removed.

Backups, engines and targets look a service up in the spec; an orphan is no longer there
(QA: removing a stateful service from the spec failed its backup with ``KeyError``, so it
could never be removed). It is backed up as its container was made: kind, profile, image,
command and volumes from its labels, PostgreSQL's credentials from its env.
"""

from __future__ import annotations

import dataclasses
import json

from reconciler.engines.base import env_of
from reconciler.session import Session
from reconciler.spec.models import Service
from reconciler.spec.normalise import LABEL_CONFIG, LABEL_KIND, LABEL_PROFILE

_CREDENTIALS = ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB",
                "POSTGRES_USER_FILE", "POSTGRES_PASSWORD_FILE")


def session_for(session: Session, service: str, doc: dict) -> Session:
    """``session``, whose spec also holds ``service`` as its container ``doc`` was made."""
    if service in session.spec.services:
        return session
    config = doc.get("Config") or {}
    labels = config.get("Labels") or {}
    made = json.loads(labels.get(LABEL_CONFIG) or "{}")
    env = env_of(config.get("Env"))
    volumes = [f"{v['source']}:{v['target']}{':ro' if v.get('read_only') else ''}"
               for v in made.get("volumes") or () if isinstance(v, dict)]
    fields = {"kind": labels.get(LABEL_KIND) or "generic", "image": made.get("image") or config.get("Image"),
              "command": made.get("command"), "entrypoint": made.get("entrypoint"), "volumes": volumes,
              "env": {k: v for k, v in env.items() if k in _CREDENTIALS}, "stateful": True}
    if labels.get(LABEL_PROFILE):
        fields["profile"] = labels[LABEL_PROFILE]
    spec = session.spec.model_copy(update={"services": {**session.spec.services,
                                                        service: Service.model_validate(fields)}})
    return dataclasses.replace(session, loaded=dataclasses.replace(session.loaded, spec=spec))
