"""The test tree itself: pytest imports test files by basename (no packages under tests/), so
two files of one name in different folders make it refuse both with "import file mismatch",
and their tests never run. It happened twice; this catches a third time."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_no_two_test_files_share_a_basename() -> None:
    names = Counter(path.name for path in TESTS.rglob("test_*.py"))
    assert not [name for name, count in names.items() if count > 1]
