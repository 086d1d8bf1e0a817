"""Which engine volume a container mounts for each logical volume, and fresh generations.

A declared volume ``pgdata`` of project ``lab`` is first the engine volume ``lab_pgdata``.
When its data cannot carry over (its definition changed, or PostgreSQL's major version did),
the new container gets a fresh GENERATION ``lab_pgdata-<token>`` (labelled
``reconcile.volume=pgdata`` and ``reconcile.generation=<token>``) while the old container
keeps the old one until the new one is verified. The old generation is never deleted
automatically: the apply summary lists it as removable by hand.

Later recreates reuse the generation the live container mounts, so a config change after an
upgrade does not silently go back to the old data. A bind-backed volume's new generation needs
its own host folder: the spec's folder when it is missing or empty (a volume moved to a new
disk), else ``<bind>.<token>`` beside it; either is created 0700.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from reconciler.apply import builders
from reconciler.observe.models import ObservedMount
from reconciler.spec.load import LoadedSpec
from reconciler.spec.normalise import generation_name, volume_of


def declared_mounts(loaded: LoadedSpec, service: str) -> dict[str, str]:
    """``{target: logical volume}`` for the service's named-volume mounts."""
    return {m.target: m.source for m in loaded.spec.services[service].volumes if not m.is_host_path}


def in_use(loaded: LoadedSpec, service: str, mounts: Iterable[ObservedMount]) -> dict[str, str]:
    """``{logical: engine name}`` the given container mounts at the spec's targets."""
    wanted = declared_mounts(loaded, service)
    found = {}
    for mount in mounts:
        logical = wanted.get(mount.target)
        if mount.type == "volume" and logical and volume_of(mount.source, loaded.spec.project) == logical:
            found[logical] = mount.source
    return found


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
