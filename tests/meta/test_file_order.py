"""The order test files go out to xdist's workers (tests/_support/file_order.py)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from tests._support import file_order

ROOT = Path(__file__).parents[2]


def items(*nodeids: str) -> list[pytest.Item]:
    return [cast(pytest.Item, SimpleNamespace(nodeid=nodeid)) for nodeid in nodeids]


def test_the_longest_file_goes_first_and_each_file_keeps_its_own_order() -> None:
    collected = items(
        "tests/a/test_short.py::test_1",
        "tests/a/test_short.py::test_2",
        "tests/b/test_long.py::test_2",
        "tests/b/test_long.py::test_1",
        "tests/c/test_middle.py::test_1",
    )
    seconds = {
        "tests/a/test_short.py": 1.0,
        "tests/b/test_long.py": 80.0,
        "tests/c/test_middle.py": 9.0,
    }
    assert [item.nodeid for item in file_order.ordered(collected, seconds)] == [
        "tests/b/test_long.py::test_2",
        "tests/b/test_long.py::test_1",
        "tests/c/test_middle.py::test_1",
        "tests/a/test_short.py::test_1",
        "tests/a/test_short.py::test_2",
    ]


def test_a_file_the_table_does_not_know_goes_before_the_short_ones() -> None:
    collected = items("tests/a/test_known.py::test_1", "tests/z/test_unknown.py::test_1")
    ordered = file_order.ordered(collected, {"tests/a/test_known.py": 2.0})
    assert [item.nodeid for item in ordered] == [
        "tests/z/test_unknown.py::test_1",
        "tests/a/test_known.py::test_1",
    ]


def test_the_committed_table_knows_most_test_files() -> None:
    # a stale table costs time, not tests: this says when to record it again
    table: dict[str, Any] = json.loads(file_order.TABLE.read_text())
    assert all(isinstance(seconds, (int, float)) and seconds >= 0 for seconds in table.values())
    files = [str(path.relative_to(ROOT)) for path in (ROOT / "tests").rglob("test_*.py")]
    unknown = sorted(set(files) - set(table))
    assert len(unknown) <= len(files) // 4, (
        f"{len(unknown)} of {len(files)} test files are not in {file_order.TABLE.name}: "
        "record it with `make test PYTEST_ARGS=--record-file-seconds`"
    )
