"""Can a service's data carry over to its new container? (pure; part of the planner)

It cannot when a mount's volume source or definition changed, or when PostgreSQL's major
version changes (a 15 data directory will not start on 17). Then the plan gives the new
container a fresh volume and restores the backup into it. Going down a major is planned the
same way, with a warning: PostgreSQL does not promise that a dump loads into an older server
(17's pg_dump writes settings 15 rejects), so the restore may fail and apply roll back.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from reconciler.observe.models import Observed, ObservedContainer
from reconciler.plan.display import SENSITIVE, Views
from reconciler.spec.models import Kind

if TYPE_CHECKING:
    from reconciler.plan.planner import _Context

_TAG_MAJOR = re.compile(r"^(\d+)(?:[.\-_]|$)")


def fresh_cause(ctx: _Context, name: str, current: ObservedContainer, views: Views,
                 warnings: list[str], image_changed: bool) -> str | None:
    """Why the new container cannot start on the old data, or None when it can."""
    moved = _moved_volume(ctx, name, current.config)
    if moved is not None:
        return (f"{moved} changed: the new container starts on a fresh volume; "
                "restore from the backup")
    if ctx.spec.services[name].kind is not Kind.POSTGRES:
        return None
    old_major, old_fact = _old_pg_major(ctx.observed, current)
    new_major, new_fact = _new_pg_major(ctx.observed, str(ctx.configs[name]["image"]))
    if old_major is None or new_major is None:
        if image_changed:
            warnings.append(f"{name}: cannot tell the PostgreSQL major version of the old or new image; "
                            "assuming the data directory carries over")
        return None
    if old_major == new_major:
        return None
    shown_old = old_fact or SENSITIVE not in views.before_text("image", current.image_ref)
    shown_new = new_fact or SENSITIVE not in views.after_text("image", ctx.configs[name])
    versions = f"{old_major} → {new_major}" if shown_old and shown_new else "major version changes"
    if new_major < old_major:
        what = (f"PostgreSQL {versions} is a downgrade" if shown_old and shown_new
                else "the PostgreSQL major version goes down")
        warnings.append(f"{name}: {what}, which PostgreSQL does not support: the newer server's dump "
                        "may not load into the older one; if the restore fails, apply puts the old "
                        "container and its data back")
    return f"PostgreSQL {versions}: the data directory cannot carry over; restore from the backup"


def _moved_volume(ctx: _Context, name: str, old: dict | None) -> str | None:
    """A mount whose target stays but whose volume source or definition changed."""
    if not old or not isinstance(old.get("volumes"), list):
        return None
    before = {v.get("target"): v for v in old["volumes"] if isinstance(v, dict)}
    for index, entry in enumerate(ctx.configs[name]["volumes"]):
        prior = before.get(entry["target"])
        if prior is None:
            continue
        if prior.get("source") != entry["source"] or prior.get("definition") != entry.get("definition"):
            mount = ctx.spec.services[name].volumes[index]
            hidden = ("services", name, "volumes", index) in ctx.loaded.display
            return "a volume" if hidden else f"volume {mount.source}"
    return None


def _old_pg_major(observed: Observed, current: ObservedContainer) -> tuple[int | None, bool]:
    """The old server's major: the engine's fact for its image id, else its tag."""
    image = next((i for i in observed.images if i.id == current.image_id), None)
    if image is not None and image.pg_major is not None:
        return image.pg_major, True
    return tag_major(current.image_ref), False


def _new_pg_major(observed: Observed, ref: str) -> tuple[int | None, bool]:
    image = observed.image(ref)
    if image is not None and image.pg_major is not None:
        return image.pg_major, True
    return tag_major(ref), False


def tag_major(ref: str) -> int | None:
    """The leading number of an image tag: ``postgres:16.4-bookworm`` → 16; no tag → None."""
    name = ref.split("@", 1)[0]
    _, sep, tag = name.rpartition(":")
    if not sep or "/" in tag:
        return None
    match = _TAG_MAJOR.match(tag)
    return int(match[1]) if match else None
