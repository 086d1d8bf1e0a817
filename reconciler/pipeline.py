"""The read side shared by plan, apply and drift: load the spec, observe once, plan purely."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from reconciler.observe.models import Observed
from reconciler.plan.actions import Plan
from reconciler.spec.load import LoadedSpec, load_spec


@dataclass(frozen=True)
class Snapshot:
    loaded: LoadedSpec
    observed: Observed
    plan: Plan


def observe_for(loaded: LoadedSpec, client=None) -> Observed:
    """The engine's state for this spec; read by this process, or by plan's head start
    (observe/prefetch) when one was taken for this very spec."""
    from reconciler.observe import prefetch
    from reconciler.observe.collect import from_raw, observe

    project = loaded.spec.project
    refs = [s.image for s in loaded.spec.services.values()]
    if client is None and (raw := prefetch.claim(loaded.file, project, refs)) is not None:
        return from_raw(project, raw)
    from reconciler import dockerio

    return observe(client or dockerio.connect(), project, refs)


def snapshot(spec_file: Path, profiles: Collection[str] = (), client=None) -> Snapshot:
    from reconciler.plan.planner import make_plan

    loaded = load_spec(spec_file)
    unknown = set(profiles) - {s.profile for s in loaded.spec.services.values()}
    if unknown:
        import difflib

        from reconciler.errors import SpecError

        known = sorted({s.profile for s in loaded.spec.services.values()})
        close = [match for name in sorted(unknown)  # a typo, or a short form (infra)
                 for match in ([k for k in known if k.startswith(name)] or difflib.get_close_matches(name, known))[:1]]
        meant = f"did you mean {', '.join(repr(name) for name in close)}? " if close else ""
        if listed := next((name for name in sorted(unknown) if "," in name), None):  # QA: "app,infrastructure"
            parts = " ".join(f"--profile {part.strip()}" for part in listed.split(",") if part.strip())
            meant = f"give each profile its own option ({parts}); "  # was: "did you mean 'infrastructure'?"
        raise SpecError(f"unknown profile {', '.join(sorted(unknown))}", ref="spec.profile",
                        hint=f"{meant}profiles in {spec_file}: {', '.join(known)}")
    observed = observe_for(loaded, client)
    return Snapshot(loaded, observed, make_plan(loaded, observed, profiles))
