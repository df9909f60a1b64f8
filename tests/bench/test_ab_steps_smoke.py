"""Smoke test of ``bench/ab_steps.py``: both sides run, the setting is applied to each.

No figure is checked (no benchmark runs inside the test suite).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.test_bench_smoke import bench_module

pytestmark = [pytest.mark.process]

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_ab_steps_runs_both_sides_and_prints_json() -> None:
    out = subprocess.run(
        [sys.executable, str(BENCH / "ab_steps.py"), "--blocks", "2", "--per", "2",
         "--warmup", "1", "--json", "--set", "stepline.engine._store.wal:LOG_BYTES=4000000,-"],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    figures = json.loads(out.stdout)
    assert set(figures["steps_per_s"]) == {"A", "B"}
    assert all(value > 0 for value in figures["steps_per_s"].values())
    assert figures["b_over_a_total"] > 0


def test_a_setting_names_a_module_attribute_or_a_class_one() -> None:
    ab = bench_module("ab_steps")
    from stepline.engine._store import queue, wal

    owner, attr, a, b = ab.parse_setting("stepline.engine._store.wal:LOG_BYTES=4000000,-")
    assert (owner, attr, a, b) == (wal, "LOG_BYTES", 4000000, wal.LOG_BYTES)
    setting = "stepline.engine._store.queue:SqliteQueueSql.move_sql='',-"
    owner, attr, a, b = ab.parse_setting(setting)
    moved = queue.SqliteQueueSql
    assert (owner, attr, a, b) == (moved, "move_sql", "", moved.move_sql)
    with pytest.raises(ValueError, match="MODULE:ATTR=A,B"):
        ab.parse_setting("stepline.engine._store.wal:LOG_BYTES")
