"""Which engine volume a container mounts for each logical volume, and fresh generations.

A declared volume ``pgdata`` of project ``lab`` is first the engine volume ``lab_pgdata``.
When its data cannot carry over (its definition changed, or PostgreSQL's major version did),
the new container gets a fresh GENERATION ``lab_pgdata-<token>`` (labelled
``reconcile.volume=pgdata`` and ``reconcile.generation=<token>``) while the old container
keeps the old one until the new one is verified. The old generation is never deleted
automatically: the apply summary lists it as removable by hand.

Later recreates reuse the generation the live container mounts, so a config change after an
upgrade does not silently go back to the old data. A container created with none to inherit
from (removed by hand) mounts the generation the last verified swap moved the data to,
recorded in ``<state_dir>/volumes.json`` (when that one is gone, it does not start: an older
generation would bring back old data unnoticed); without a record, the newest generation there is. A bind-backed volume's new generation needs
its own host folder: the spec's folder when it is missing or empty (a volume moved to a new
disk), else ``<bind>.<token>`` beside it; either is created 0700.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from reconciler.apply import builders
from reconciler.errors import ApplyError
from reconciler.observe.models import ObservedMount
from reconciler.spec.load import LoadedSpec
from reconciler.spec.normalise import LABEL_VOLUME, generation_name, volume_name, volume_of
from reconciler.storage.files import atomic_write

RECORD = "volumes.json"  # in the state dir: {logical volume: engine volume holding its data}


def declared_mounts(loaded: LoadedSpec, service: str) -> dict[str, str]:
    """``{target: logical volume}`` for the service's named-volume mounts."""
    return {m.target: m.source for m in loaded.spec.services[service].volumes if not m.is_host_path}


def in_use(loaded: LoadedSpec, service: str, mounts: Iterable[ObservedMount]) -> dict[str, str]:
    """``{logical: engine name}`` the given container mounts, at the spec's targets first, else
    wherever it has them: a volume the spec moves to another path (``data:/srv/data`` →
    ``data:/srv/new``) keeps its generation (QA: after an upgrade or rename had moved the data to
    a generation, a path change mounted the empty base volume and rolled back)."""
    wanted = declared_mounts(loaded, service)
    logicals = set(wanted.values())
    found: dict[str, str] = {}
    for mount in sorted(mounts, key=lambda m: m.target not in wanted):
        logical = volume_of(mount.source, loaded.spec.project)
        if mount.type == "volume" and logical in logicals:
            found.setdefault(logical, mount.source)
    return found


def record_current(state_dir: Path, generations: Mapping[str, str]) -> None:
    """After a swap that moved data to fresh generations is verified: where it lives now."""
    if not generations:
        return
    current = {**recorded(state_dir), **generations}
    with atomic_write(state_dir / RECORD) as handle:
        handle.write(json.dumps(current, indent=2, sort_keys=True).encode())


def recorded(state_dir: Path) -> dict[str, str]:
    try:
        data = json.loads((state_dir / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def current(loaded: LoadedSpec, service: str, existing: Iterable[dict], state_dir: Path) -> dict[str, str]:
    """``{logical: engine name}`` for a container of ``service`` that has no predecessor to
    inherit its volumes from: the recorded generation if it still exists, else the newest
    generation of the volume there is (``existing``: the engine's volume documents); logical
    volumes with neither get the canonical name."""
    record = recorded(state_dir)
    project = loaded.spec.project
    by_logical: dict[str, list[dict]] = {}
    for volume in existing:
        logical = (volume.get("Labels") or {}).get(LABEL_VOLUME) or volume_of(volume.get("Name", ""), project)
        if logical:
            by_logical.setdefault(logical, []).append(volume)
    names = {}
    for logical in set(declared_mounts(loaded, service).values()):
        present = {v["Name"]: v for v in by_logical.get(logical, [])}
        canonical = volume_name(loaded.spec, logical)
        if record.get(logical) in present:
            names[logical] = record[logical]
        elif logical in record:
            raise _recorded_gone(service, logical, record[logical], sorted(present), state_dir)
        elif generations := [v for name, v in present.items() if name != canonical]:
            names[logical] = max(generations, key=lambda v: (v.get("CreatedAt") or "", v["Name"]))["Name"]
    return names


def _recorded_gone(service: str, logical: str, gone: str, others: list[str], state_dir: Path) -> ApplyError:
    """The generation that holds the volume's data is gone (removed by hand). The others hold
    older data a swap moved away from: mounting one would bring back what was since deleted
    and lose what was since written (QA), with every check green. A person decides."""
    older = f"; older generations that remain: {', '.join(others)}" if others else ""
    return ApplyError(
        f"{service}'s data lived in volume {gone} ({logical}, recorded in {state_dir / RECORD}), which is "
        f"gone{older}: not started on older data", ref="apply.volume-gone",
        hint=f"to start on an empty volume and restore the newest backup: `docker volume create {gone}`, "
             f"`reconcile apply`, then `reconcile restore latest {service} --yes`; to go back to an older "
             f"generation instead, put its name in {state_dir / RECORD}")


def fresh_logicals(loaded: LoadedSpec, service: str, old_config: dict | None) -> list[str]:
    """The volumes that get a new generation: those whose definition changed, else all of them
    (a PostgreSQL major change: the data directory is what cannot carry over)."""
    declared = declared_mounts(loaded, service)
    before = {v.get("target"): v for v in (old_config or {}).get("volumes") or [] if isinstance(v, dict)}
    changed = []
    for target, logical in declared.items():
        prior = before.get(target)
        new = loaded.spec.volumes[logical].model_dump(mode="json")
        if prior is not None and (prior.get("source") != logical or prior.get("definition") != new):
            changed.append(logical)
    return sorted(set(changed or declared.values()))


def generation_folder(bind: str, token: str) -> Path:
    """Where a fresh generation of a bind volume lives (see the module docstring)."""
    path = Path(bind)
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return path
    return path.with_name(f"{path.name}.{token}")


def ensure_folder(path: Path) -> None:
    """A bind volume's host folder, created 0700 when missing (the engine will not create it)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)


def generation_args(loaded: LoadedSpec, logical: str, token: str) -> tuple[dict, Path | None]:
    """``create_volume`` arguments of a fresh generation, and its host folder when bind-backed."""
    bind = loaded.spec.volumes[logical].bind
    folder = generation_folder(bind, token) if bind else None
    args = builders.volume_args(loaded, logical, generation_name(loaded.spec, logical, token),
                                generation=token, bind=str(folder) if folder else None)
    return args, folder
