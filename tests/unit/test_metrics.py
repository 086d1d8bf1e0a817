"""The Prometheus textfile writer: exposition format, escaping, and atomic replacement."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from reconciler.operate import metrics
from reconciler.operate.gather import ApplyFact, BackupFact
from reconciler.operate.metrics import Metric, Sample, StackFacts

# One sample line of the text format: name{label="value",…} value
_LINE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\})? \S+$')


def stack(**overrides) -> str:
    args = dict(
        project="shop", drift={"api": True, "postgres": False}, health={"api": 0, "postgres": 2},
        backups=[BackupFact("postgres", "local", "b1", "2026-01-05T02:00:00Z", 1767578400.0, 123456),
                 BackupFact("postgres", "s3", "b1", "2026-01-05T02:00:00Z", 1767578400.0, 123456)],
        last_apply=ApplyFact("a1", "ok", True, "2026-01-05T01:00:00Z", "2026-01-05T01:00:42.5Z",
                             1767574842.5, 42.5))
    args.update(overrides)
    return metrics.render(metrics.stack_metrics(StackFacts(**args)))


def test_every_series_has_help_and_type_and_parses():
    text = stack()
    names = re.findall(r"^# TYPE (\S+) gauge$", text, re.M)
    assert names == ["reconcile_engine_up", "reconcile_apply_running", "reconcile_drift", "reconcile_service_health",
                     "reconcile_last_backup_timestamp_seconds", "reconcile_last_backup_size_bytes",
                     "reconcile_last_apply_success", "reconcile_last_apply_duration_seconds",
                     "reconcile_last_apply_timestamp_seconds"]
    assert len(re.findall(r"^# HELP ", text, re.M)) == len(names)
    for line in text.splitlines():
        assert line.startswith("# ") or _LINE.match(line), line
    assert text.endswith("\n")


def test_values_say_which_service_drifted_and_what_backed_up():
    text = stack()
    assert 'reconcile_drift{project="shop",service="api"} 1\n' in text
    assert 'reconcile_drift{project="shop",service="postgres"} 0\n' in text
    assert 'reconcile_service_health{project="shop",service="postgres"} 2\n' in text
    assert ('reconcile_last_backup_timestamp_seconds{project="shop",service="postgres",location="s3"} '
            "1767578400\n") in text
    assert 'reconcile_last_backup_size_bytes{project="shop",service="postgres",location="local"} 123456' in text
    assert 'reconcile_last_apply_success{project="shop"} 1\n' in text
    assert 'reconcile_last_apply_duration_seconds{project="shop"} 42.5\n' in text


def test_series_without_data_are_left_out():
    text = stack(backups=[], last_apply=None)
    assert "reconcile_last_backup" not in text and "reconcile_last_apply" not in text
    assert metrics.render([Metric("x", "nothing")]) == ""


def test_label_values_and_help_are_escaped():
    text = metrics.render([Metric("m", "a \\ help\nline", samples=(
        Sample.of(1, service='we"ird\\name\nx'),))])
    assert "# HELP m a \\\\ help\\nline\n" in text
    assert 'm{service="we\\"ird\\\\name\\nx"} 1\n' in text
    assert all(_LINE.match(line) for line in text.splitlines() if not line.startswith("#"))


@pytest.mark.parametrize("value, shown", [
    (1, "1"), (0.25, "0.25"), (1767578400.0, "1767578400"), (float("nan"), "NaN"),
    (float("inf"), "+Inf"), (float("-inf"), "-Inf"), (1e20, "1e+20")])
def test_values_are_formatted_as_the_format_expects(value, shown):
    assert metrics.format_value(value) == shown


def test_write_is_atomic_complete_and_0644(tmp_path, monkeypatch):
    target = tmp_path / "collector" / "reconcile.prom"
    seen = {}
    real_replace = os.replace

    def spy(src, dst):
        src = Path(src)
        seen["temp"] = src.name
        seen["same_dir"] = src.parent == Path(dst).parent
        seen["complete"] = src.read_text()
        seen["target_before"] = Path(dst).exists()
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    text = stack()
    metrics.write_atomic(target, text)
    assert re.fullmatch(r"\.reconcile\.prom\..+\.tmp", seen["temp"])  # not *.prom: never collected
    assert seen["same_dir"] and seen["complete"] == text and not seen["target_before"]
    assert target.read_text() == text
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in target.parent.iterdir()] == ["reconcile.prom"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "reconcile.prom"
    metrics.write_atomic(target, "old 1\n")

    def boom(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        metrics.write_atomic(target, "new 2\n")
    assert target.read_text() == "old 1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["reconcile.prom"]


# -- what the drift metric is computed from (pure) -------------------------------------------

def test_plan_actions_become_per_service_drift(tmp_path):
    from reconciler.operate.drift import drift_of
    from reconciler.plan.actions import Action, ActionKind, Change, Plan
    from reconciler.plan.inplace import memory_bytes, memory_text
    from reconciler.spec.load import load_spec

    spec = tmp_path / "reconcile.yaml"
    spec.write_text("version: 1\nproject: shop\nnetworks: { backend: {} }\nservices:\n"
                    "  api: { image: a, networks: [backend] }\n  db: { image: d, networks: [backend] }\n"
                    "  web: { image: w }\n")
    loaded = load_spec(spec)
    edits = (Change("restart", "no", "unless-stopped"), Change("mem_limit", "64m", "128m"))
    plan = Plan("shop", (
        Action(ActionKind.CREATE_NETWORK, "backend", "new network shop_backend"),
        Action(ActionKind.REMOVE, "shop-api-old-0a1b2c", "previous container of api left by an interrupted apply"),
        Action(ActionKind.BACKUP, "db", "back up first"),
        Action(ActionKind.RECREATE, "db", "image d:1 → d:2"),
        Action(ActionKind.REMOVE, "cron", "service cron is no longer in the spec"),
        Action(ActionKind.UPDATE, "web", "live container changed in place (docker update): "
               "restart: no → unless-stopped; mem_limit: 64m → 128m", edits),
    ), "fp")
    found = {d.service: d for d in drift_of(loaded, plan)}
    assert set(found) == {"api", "db", "cron", "web"}
    assert found["api"].reasons == ("network backend is missing (apply would create it)",
                                    "previous container of api left by an interrupted apply (apply would remove it)")
    assert found["db"].reasons[-1] == "image d:1 → d:2 (apply would recreate it)"
    assert found["cron"].orphan and not found["db"].orphan
    assert found["web"].reasons == ((
        "live container changed in place (docker update): restart: no → unless-stopped; "
        "mem_limit: 64m → 128m (apply would update it in place; by hand: docker update "
        "--restart unless-stopped --memory 128m --memory-swap 256m shop-web)"),)
    assert memory_bytes("1g") == 1024 ** 3 and memory_bytes(None) is None and memory_bytes("x") is None
    assert memory_bytes("0") is None and memory_text(64 * 1024 ** 2) == "64m" and memory_text(1000) == "1000"


def test_a_hidden_value_gets_no_by_hand_command(tmp_path):
    from reconciler.operate.drift import drift_of
    from reconciler.plan.actions import Action, ActionKind, Change, Plan
    from reconciler.spec.load import load_spec

    spec = tmp_path / "reconcile.yaml"
    spec.write_text("version: 1\nproject: shop\nservices:\n  web: { image: w }\n")
    update = Action(ActionKind.UPDATE, "web", "live container changed in place (docker update): "
                    "mem_limit: (sensitive) → (sensitive)", (Change("mem_limit", "(sensitive)", "(sensitive)"),))
    (found,) = drift_of(load_spec(spec), Plan("shop", (update,), "fp"))
    assert found.reasons[0].endswith("(apply would update it in place)")


def test_a_paused_container_is_drift_though_no_plan_action_names_it(tmp_path):
    """A plan leaves a paused container alone (the engine calls it running); apply unpauses it,
    so drift must say so, or a frozen service would pass the cron check."""
    from reconciler.observe.models import Health, Observed, ObservedContainer, Role, State
    from reconciler.operate.drift import drift_of
    from reconciler.plan.actions import Plan
    from reconciler.spec.load import load_spec

    spec = tmp_path / "reconcile.yaml"
    spec.write_text("version: 1\nproject: shop\nservices:\n  web: { image: w }\n"
                    "  db: { image: d, profile: infrastructure }\n")
    loaded = load_spec(spec)

    def box(service: str, state: State) -> ObservedContainer:
        return ObservedContainer(id=f"id-{service}", name=f"shop-{service}", project="shop", service=service,
                                 profile=None, role=Role.CURRENT, spec_hash="h", config={}, image_ref="w",
                                 image_id="sha256:1", state=state, health=Health.NONE)

    observed = Observed("shop", (box("web", State.PAUSED), box("db", State.PAUSED)))
    (found, other) = drift_of(loaded, Plan("shop", (), "fp"), observed)
    assert (found.service, other.service) == ("db", "web")
    assert found.reasons == ("container paused: its processes are frozen (apply would unpause it; "
                             "by hand: docker unpause shop-db)",)
    only_app = Plan("shop", (), "fp", profiles=("app",))
    assert [d.service for d in drift_of(loaded, only_app, observed)] == ["web"]
    running = Observed("shop", (box("web", State.RUNNING),))
    assert drift_of(loaded, Plan("shop", (), "fp"), running) == []


def test_a_blocked_service_says_apply_would_refuse(tmp_path):
    """drift from cron said only "create it" while apply would refuse the plan."""
    from reconciler.operate.drift import drift_of
    from reconciler.plan.actions import Action, ActionKind, Blocker, Plan
    from reconciler.spec.load import load_spec

    spec = tmp_path / "reconcile.yaml"
    spec.write_text("version: 1\nproject: shop\nservices:\n  web: { image: w }\n")
    blocker = Blocker("web", "plan.name-taken", "web: the name shop-web is taken by container 0a1b2c3d4e5f "
                      "(image busybox, running), which reconcile did not make (it has no reconcile labels): "
                      "apply cannot create the container of web", "docker rename shop-web …")
    plan = Plan("shop", (Action(ActionKind.CREATE, "web", "new service"),), "fp", blocking=(blocker,))
    (found,) = drift_of(load_spec(spec), plan)
    assert found.reasons == ("new service (apply would create it)",
                             "blocked: the name shop-web is taken by container 0a1b2c3d4e5f (image busybox, running), "
                             "which reconcile did not make (it has no reconcile labels): apply cannot create the "
                             "container of web (apply refuses until that container is renamed or removed)")
