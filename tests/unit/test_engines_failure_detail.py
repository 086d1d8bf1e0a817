"""What a failed pg_dump or psql is said to have done, when it said nothing itself."""

from __future__ import annotations

import pytest

from reconciler.engines.base import failure_detail


@pytest.mark.parametrize(("exit_code", "stderr", "detail"), [
    (137, "", "killed by signal 9 (SIGKILL)"),              # 128 + 9: OOM killer, docker kill
    (143, "\n", "killed by signal 15 (SIGTERM)"),
    (-9, "", "killed by signal 9 (SIGKILL)"),               # Python's convention
    (137, "pg_dump: error: x\n", "killed by signal 9 (SIGKILL); pg_dump: error: x"),
    (1, "pg_dump: error: connection failed\n  detail\n", "pg_dump: error: connection failed | detail"),
    (1, "", "no error output"),
    (255, "", "no error output"),
    (-1, "", "no error output"),                            # dockerio: code never reported
    (128 + 40, "", "killed by signal 40"),                  # a real-time signal: no name
])
def test_failure_detail(exit_code, stderr, detail):
    assert failure_detail(exit_code, stderr) == detail
