"""Diagnose rules over recorded inputs, and the pure parsers behind the facts.

Each folder of ``tests/cases_diagnose/`` holds either ``facts.json`` (recorded from a real
engine by ``tests/integration/test_diagnose_faults.py``) with ``expect.yaml``, or a
``case.yaml`` with hand-written ``facts`` and ``expect``. ``expect.issues`` lists exactly the
issues the rules must find — service, severity, rule — and substrings their ``issue``,
``details`` and ``fix`` must contain.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from reconciler.operate import logscan, procnet, rules
from reconciler.operate.collect import parse_mount_probe
from reconciler.operate.facts import Facts, parse_time, seconds_between
from reconciler.operate.issues import Issue, Severity, exit_code

CASES = Path(__file__).resolve().parents[1] / "cases_diagnose"


def _load(folder: Path) -> tuple[Facts, dict]:
    yaml = YAML(typ="safe")
    if (folder / "case.yaml").exists():
        case = yaml.load((folder / "case.yaml").read_text())
        return Facts.from_dict(case["facts"]), case["expect"]
    facts = json.loads((folder / "facts.json").read_text())
    return Facts.from_dict(facts), yaml.load((folder / "expect.yaml").read_text())


CASE_DIRS = sorted(p for p in CASES.iterdir() if p.is_dir())


def test_every_case_folder_is_complete():
    assert len(CASE_DIRS) >= 20
    for folder in CASE_DIRS:
        assert (folder / "case.yaml").exists() or {"facts.json", "expect.yaml"} <= {
            p.name for p in folder.iterdir()}, folder


@pytest.mark.parametrize("folder", CASE_DIRS, ids=[p.name for p in CASE_DIRS])
def test_recorded_case(folder: Path):
    facts, expect = _load(folder)
    found = rules.diagnose(facts)
    got = sorted((i.service, i.severity.value, i.rule) for i in found)
    want = sorted((e["service"], e["severity"], e["rule"]) for e in expect["issues"])
    assert got == want, [i.to_dict() for i in found]
    for wanted in expect["issues"]:
        issue = next(i for i in found if (i.service, i.severity.value, i.rule) ==
                     (wanted["service"], wanted["severity"], wanted["rule"])
                     and all(str(t) in i.issue for t in wanted.get("issue", ())))
        _contains(issue.issue, wanted.get("issue", ()), "issue")
        _contains(issue.details, wanted.get("details", ()), "details")
        _contains(issue.suggested_fix, wanted.get("fix", ()), "suggested_fix")
        assert issue.suggested_fix and issue.details
    assert exit_code(found) == expect["exit_code"]


def _contains(text: str, parts, what: str) -> None:
    for part in parts:
        assert str(part) in text, f"{what} lacks {part!r}: {text}"


def test_facts_survive_a_round_trip():
    for folder in CASE_DIRS:
        facts, _ = _load(folder)
        assert Facts.from_dict(json.loads(json.dumps(facts.to_dict()))) == facts


def test_issues_are_sorted_worst_first_and_exit_codes_follow_the_worst():
    info = Issue("a", Severity.INFO, "i", "d", "f", "r")
    warn = Issue("b", Severity.WARNING, "i", "d", "f", "r")
    crit = Issue("c", Severity.CRITICAL, "i", "d", "f", "r")
    assert exit_code([]) == 0 and exit_code([info]) == 0
    assert exit_code([info, warn]) == 1 and exit_code([warn, crit]) == 2
    assert [i.service for i in rules.sort_issues([info, warn, crit])] == ["c", "b", "a"]
    assert set(crit.to_dict()) >= {"service", "severity", "issue", "details", "suggested_fix"}


def test_rules_module_does_no_io():
    """Rules are pure: they import only the facts, issues and the pattern tables."""
    tree = ast.parse(Path(rules.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert imported <= {"__future__", "collections.abc", "reconciler.operate",
                        "reconciler.operate.facts", "reconciler.operate.issues"}, imported


# -- log and engine-error patterns ---------------------------------------------------------

@pytest.mark.parametrize("text, port", [
    ("Error starting userland proxy: listen tcp4 127.0.0.1:18777: bind: address already in use", 18777),
    ("Bind for 0.0.0.0:8080 failed: port is already allocated", 8080),
    ("Error: listen EADDRINUSE: address already in use :::3000", None),
    ("2024-01-01 LOG:  could not bind IPv4 address \"0.0.0.0\": Address already in use", None),
])
def test_bind_errors_are_recognised_with_their_port(text, port):
    found = logscan.bind_error([text])
    assert found is not None and found[1] == port


def test_start_errors_are_classified_for_the_specific_rule():
    assert logscan.start_error_kind("network 4f28 not found") == "network"
    assert logscan.start_error_kind("Bind for 0.0.0.0:80 failed: port is already allocated") == "port"
    assert logscan.start_error_kind("error while mounting volume '/x': no such file") == "mount"
    assert logscan.start_error_kind("exec: \"nope\": executable file not found") is None
    assert logscan.start_error_kind("") is None


def test_config_errors_keep_one_per_cause_and_know_the_newest():
    lines = ['[1] FATAL:  invalid value for parameter "shared_buffers": "x"',
             '[1] FATAL:  invalid value for parameter "shared_buffers": "x"',
             '[9] ERROR:  invalid value for parameter "work_mem": "y"']
    found = logscan.config_errors(lines)
    assert [e.cause for e in found] == ["PostgreSQL setting shared_buffers has an invalid value"]
    assert not found[0].newest
    assert logscan.config_errors(lines[:2])[0].newest


# -- /proc/net parsing ---------------------------------------------------------------------

PROC_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:4959 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0 100 0 0 10 0
   1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 100 0 0 10 0
   2: 0100007F:4959 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 999 1 0 20 4 30 10 -1
"""
PROC_TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 555 1 0 100 0 0 10 0
"""


def test_proc_net_listeners_are_decoded():
    assert procnet.parse_proc_net(PROC_TCP) == [procnet.Listener("127.0.0.1", 18777, 31337),
                                                procnet.Listener("0.0.0.0", 8080, 4242)]
    assert procnet.parse_proc_net(PROC_TCP6) == [procnet.Listener("::1", 80, 555)]


def test_port_holders_are_named_from_a_proc_tree(tmp_path):
    proc = tmp_path / "proc"
    (proc / "net").mkdir(parents=True)
    (proc / "net" / "tcp").write_text(PROC_TCP)
    (proc / "net" / "tcp6").write_text(PROC_TCP6)
    (proc / "77" / "fd").mkdir(parents=True)
    (proc / "77" / "fd" / "3").symlink_to("socket:[31337]")
    (proc / "77" / "cmdline").write_bytes(b"python3\0-m\0http.server\0")
    (proc / "self").mkdir()
    found = procnet.holders([18777, 8080, 5432], proc)
    assert [(h.port, h.pid, h.command) for h in found] == [(8080, None, ""), (18777, 77, "python3 -m http.server")]
    assert "pid 77 (python3 -m http.server)" in found[1].describe()
    assert "pid unknown" in found[0].describe()
    assert procnet.holders([], proc) == []


# -- small parsers ------------------------------------------------------------------------------

def test_mount_probe_output_is_read_in_target_order():
    text = ("reconcile-w 1 /data\nreconcile-w 0 /conf\n"
            "Filesystem     1024-blocks     Used Available Capacity Mounted on\n"
            "tmpfs                 1024     1024         0     100% /data\n"
            "overlay          264212084 27679860  78711052      27% /\n")
    assert parse_mount_probe(text, ["/data", "/conf"]) == {
        "/data": (True, 1024 * 1024, 0), "/conf": (False, 264212084 * 1024, 78711052 * 1024)}
    assert parse_mount_probe("", ["/data"]) == {}


def test_docker_times_with_nanoseconds_and_the_zero_time():
    assert parse_time("0001-01-01T00:00:00Z") is None and parse_time(None) is None
    assert parse_time("2026-11-28T22:19:32.051220824Z").microsecond == 51220
    assert seconds_between("2026-01-05T09:59:55Z", "2026-01-05T10:00:00.5Z") == 5.5


def test_a_docker_proxy_holder_points_at_the_other_container():
    from reconciler.operate.facts import PortHolder

    text = PortHolder(8080, "0.0.0.0", 99, "/usr/bin/docker-proxy -proto tcp -host-port 8080").describe()
    assert "pid 99" in text and "docker ps --filter publish=8080" in text


def test_restart_counts_are_remembered_per_service_across_partial_runs(tmp_path):
    from reconciler.operate import diagnose
    from reconciler.operate.facts import ContainerFacts, ServiceFacts

    def facts(now, **counts):
        return Facts("shop", now, services=tuple(
            ServiceFacts(n, "generic", f"shop-{n}", "x", container=ContainerFacts(f"id-{n}", f"shop-{n}", "running",
                                                                                   restart_count=c))
            for n, c in counts.items()))

    diagnose.save_memory(tmp_path, facts("2026-01-05T09:00:00Z", api=1, worker=4))
    diagnose.save_memory(tmp_path, facts("2026-01-05T10:00:00Z", api=3))
    memory = diagnose.load_memory(tmp_path)["services"]
    assert memory["api"] == {"id": "id-api", "restart_count": 3, "at": "2026-01-05T10:00:00Z"}
    assert memory["worker"]["restart_count"] == 4 and memory["worker"]["at"] == "2026-01-05T09:00:00Z"
    assert [p.name for p in (tmp_path / "diagnose").iterdir()] == ["last.json"]
    assert diagnose.load_memory(tmp_path / "nowhere") == {}
