"""QA of secrets in what changed on 2026-11-30 (pure; no engine): a network blocker shows an
interpolated driver as ``(sensitive)``; a port holder's command line has its secret flags masked."""

from __future__ import annotations

from reconciler.observe.models import Observed, ObservedNetwork
from reconciler.operate.procnet import parse_cmdline
from reconciler.plan.planner import make_plan
from reconciler.spec.load import load_spec


def test_an_interpolated_network_driver_reads_sensitive_in_the_blocker(tmp_path) -> None:
    spec = tmp_path / "reconcile.yaml"
    spec.write_text("version: 1\nproject: p\nnetworks:\n  backend: { driver: \"${env:NET_DRIVER}\" }\n"
                    "services:\n  web: { image: \"app:1\", networks: [backend] }\n")
    loaded = load_spec(spec, {"NET_DRIVER": "Drv-s3cr3t-value"})
    plan = make_plan(loaded, Observed("p", networks=(ObservedNetwork("p_backend", "n1", "bridge", "p"),)))
    (blocker,) = plan.blocking
    assert "driver bridge → (sensitive)" in blocker.message
    assert "Drv-s3cr3t-value" not in str(plan.to_dict())


def test_a_port_holders_secret_flags_are_masked() -> None:
    raw = b"redis-server\0*:6379\0--requirepass\0Pw-s3cr3t\0--db-password=Pw-s3cr3t\0--token-file\0/run/t\0"
    assert parse_cmdline(raw) == "redis-server *:6379 --requirepass *** --db-password=*** --token-file /run/t"
