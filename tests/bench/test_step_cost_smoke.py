"""Smoke test of ``bench/step_cost.py``: the step cost breakdown runs end to end, tiny.

No figure is judged (the benchmark is for a quiet machine): the parts must be there, be
non-negative, and the timers must have seen the engine's own functions (a part that reads
zero means a timer no longer wraps what it names).
"""

from __future__ import annotations

import pytest

from tests.bench.test_bench_smoke import run_json

pytestmark = [pytest.mark.process]

PARTS = ("serialise", "sdk", "step code", "store work", "commit", "hand-offs", "rest")


@pytest.mark.timeout(120)
def test_step_cost_on_sqlite() -> None:
    data = run_json("step_cost.py", "--runs", "3", "--warmup", "1", "--store", "sqlite")
    cost = data["sqlite"]
    assert cost["inflight"] == 1
    assert cost["step"] > 0
    for part in PARTS:
        assert cost[part] >= 0, part
    for part in ("serialise", "sdk", "step code", "store work", "commit"):
        assert cost[part] > 0, f"{part}: its timer saw nothing"
    assert cost["overlap"] >= 0
    # what the parts timed, less what was timed twice (two threads at once), is the step
    assert sum(cost[p] for p in PARTS) - cost["overlap"] == pytest.approx(cost["step"], rel=0.01)


@pytest.mark.timeout(120)
def test_step_cost_with_per_step_checkpoints() -> None:
    """The same parts when each step is committed from the function's thread."""
    data = run_json(
        "step_cost.py", "--runs", "3", "--warmup", "1", "--store", "sqlite", "--mode", "perstep"
    )
    cost = data["sqlite"]
    for part in PARTS:
        assert cost[part] >= 0, part
    for part in ("serialise", "step code", "store work", "commit"):
        assert cost[part] > 0, f"{part}: its timer saw nothing"
    assert cost["overlap"] >= 0
    # what the parts timed, less what was timed twice (two threads at once), is the step
    assert sum(cost[p] for p in PARTS) - cost["overlap"] == pytest.approx(cost["step"], rel=0.01)
