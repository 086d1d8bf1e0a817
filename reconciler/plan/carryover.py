"""Can a service's data carry over to its new container? (pure; part of the planner)

It cannot when a mount's volume source or definition changed, when PostgreSQL's major
version changes (a 15 data directory will not start on 17), or when a stateful cache's command
turns ``--appendonly yes`` on (Redis then ignores its snapshot), off, or moves its files
(``--dir``, ``--dbfilename``…), or when PostgreSQL's ``PGDATA`` changes (the server would
initialise an empty cluster there). Then the plan gives the new container a fresh volume and
restores the backup into it. Going down a major is planned the same way, with a warning:
PostgreSQL does not promise that a dump loads into an older server (17's pg_dump writes
settings 15 rejects), so the restore may fail and apply roll back.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from reconciler.observe.models import Observed, ObservedContainer, ObservedImage
from reconciler.plan import leftovers
from reconciler.plan.actions import Action, ActionKind, Blocker
from reconciler.plan.display import SENSITIVE, Views
from reconciler.spec.models import Kind

if TYPE_CHECKING:
    from reconciler.plan.planner import _Context

_TAG_MAJOR = re.compile(r"^(\d+)(?:[.\-_]|$)")
_REDIS_DEFAULTS = {"dbfilename": "dump.rdb", "appendfilename": "appendonly.aof", "appenddirname": "appendonlydir"}
"""Redis's own defaults for the files it loads (``--dir`` defaults to the working folder)."""


def fresh_cause(ctx: _Context, name: str, current: ObservedContainer, views: Views,
                 warnings: list[str], image_changed: bool) -> str | None:
    """Why the new container cannot start on the old data, or None when it can."""
    moved = _moved_volume(ctx, name, current.config)
    if moved is not None:
        return (f"{moved} changed: the new container starts on a fresh volume; "
                "restore from the backup")
    service = ctx.spec.services[name]
    if service.kind is Kind.REDIS and service.stateful and (moved := _redis_files_moved(ctx, name, current)):
        return f"{moved}; it starts on a fresh volume (the old one is kept); restore from the backup"
    if service.kind is not Kind.POSTGRES:
        return None
    if service.stateful and current.config is not None and \
            (current.config.get("env") or {}).get("PGDATA") != (ctx.configs[name].get("env") or {}).get("PGDATA"):
        # QA: the server initialised an empty cluster at the new PGDATA, verify failed, apply rolled back
        return ("PGDATA changed: the server would start on an empty data directory; it starts on a fresh "
                "volume (the old one is kept); restore from the backup")
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


def _redis_files_moved(ctx: _Context, name: str, current: ObservedContainer) -> str | None:
    """Why the new Redis would not load the old one's data files: its command line turns AOF on
    (QA: it then loads only its append-only file, none yet; verify found no keys and rolled back)
    or off, or moves where it reads them (``--dir``, and the file or folder it loads: the
    snapshot's without AOF, the append-only file's with it)."""
    if current.config is None:
        return None
    old, old_known = _runs(current.config, next((i for i in ctx.observed.images if i.id == current.image_id), None))
    new, new_known = _runs(ctx.configs[name], ctx.observed.image(str(ctx.configs[name]["image"])))
    if _redis_option(new, "appendonly") == "yes" != _redis_option(old, "appendonly"):
        return "appendonly turned on: the new server loads only its append-only file, not the old snapshot"
    if _redis_option(old, "appendonly") == "yes" != _redis_option(new, "appendonly"):
        return ("appendonly turned off: the new server loads its snapshot, which may be older than "
                "its append-only file, or missing")
    if not (old_known and new_known):
        return None  # an option left to an image the snapshot lacks: its default cannot be compared
    options = ["dir"] + (["appendfilename", "appenddirname"] if _redis_option(new, "appendonly") == "yes"
                         else ["dbfilename"])
    for option in options:
        before = _redis_option(old, option) or _REDIS_DEFAULTS.get(option, "")
        after = _redis_option(new, option) or _REDIS_DEFAULTS.get(option, "")
        if before.rstrip("/") != after.rstrip("/"):
            return f"--{option} changed: the new server would look for its data files elsewhere"
    return None


def _runs(config: dict, image: ObservedImage | None) -> tuple[list[str], bool]:
    """The command line a container made from ``config`` runs, as Docker builds it (the image's
    entrypoint and command where the config sets none; an entrypoint set in the config drops the
    image's command), and whether it is known: False when it relies on an image not observed."""
    entrypoint, command = config.get("entrypoint"), config.get("command")
    if entrypoint is not None:
        args, known = [*entrypoint, *(command or ())], True
    elif command is not None:
        args, known = [*(image.entrypoint if image else ()), *command], True
    else:
        args, known = list(image.entrypoint + image.command) if image else [], image is not None
    return [str(a) for a in args], known


def _redis_option(args: list[str], name: str) -> str | None:
    """The last value the command line gives ``--name`` (``--name value`` or ``--name=value``),
    lower case for ``appendonly``."""
    found = None
    for index, arg in enumerate(args):
        if arg == f"--{name}" and index + 1 < len(args):
            found = args[index + 1]
        elif arg.startswith(f"--{name}="):
            found = arg.split("=", 1)[1]
    return found.lower() if found is not None and name == "appendonly" else found


def _moved_volume(ctx: _Context, name: str, old: dict | None) -> str | None:
    """A mount whose target stays but whose volume source or definition changed, or whose volume
    and target both changed (the new container would start on an empty volume)."""
    if not old or not isinstance(old.get("volumes"), list):
        return None
    before = {v.get("target"): v for v in old["volumes"] if isinstance(v, dict)}
    new = ctx.configs[name]["volumes"]
    # a mount whose volume AND path both changed: the old one is gone from the spec, the new one is new
    gone = {v.get("source") for t, v in before.items() if t not in {e["target"] for e in new}} - \
        {e["source"] for e in new}
    for index, entry in enumerate(new):
        prior = before.get(entry["target"])
        if prior is None:
            if gone and entry["source"] not in {v.get("source") for v in before.values()}:
                prior = {}
            else:
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


def moved_blockers(ctx: _Context, actions: list[Action]) -> tuple[Blocker, ...]:
    """A stateful generic service whose volume is renamed AND moved in one change: its new
    container starts on a fresh volume, and the backup it needs holds the old path, which that
    container does not mount, so the restore would be refused and apply roll back (QA: the plan
    showed no restore at all, and the backup failed with "no writable volume"). Blocked, with
    the two applies that work: a path change alone and a rename alone each carry the data."""
    out = []
    for action in actions:
        service = ctx.spec.services.get(action.resource)
        current = leftovers.live(ctx.observed, action.resource)
        if (action.kind is not ActionKind.RECREATE or not action.fresh_volume or not action.stateful
                or service is None or service.kind is not Kind.GENERIC or current is None):
            continue
        old = [v for v in (current.config or {}).get("volumes") or () if isinstance(v, dict)]
        new = ctx.configs[action.resource]["volumes"]
        gone = [v for v in old if v.get("target") not in {e["target"] for e in new}
                and v.get("source") not in {e["source"] for e in new}]
        if gone:
            # a declared volume's name only: a host folder may have come from an interpolated value
            was = ", ".join(str(v.get("source")) for v in gone if not str(v.get("source", "/")).startswith("/"))
            out.append(Blocker(
                resource=action.resource, ref="plan.volume-renamed-and-moved",
                message=f"{action.resource}: volume {was or '(a host folder)'} is renamed and moved in one "
                        "change: the backup holds its old path, which the new container does not mount, so it "
                        "cannot be restored",
                hint="change one at a time: first the volume's name (keep the path) and apply, then the "
                     "path and apply; each carries the data over"))
    return tuple(out)
