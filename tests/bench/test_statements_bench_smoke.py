"""Smoke test of ``bench/statements_bench.py``: the statement count runs end to end, tiny.

The count is exact (the same workload sends the same statements), so the figures that
``bench/README.md`` cites are pinned: a change that adds a statement to a step shows here.
"""

from __future__ import annotations

import pytest

from tests.bench.test_bench_smoke import run_json

pytestmark = [pytest.mark.process]


@pytest.mark.timeout(120)
def test_embedded_step_by_step_statements() -> None:
    data = run_json(
        "statements_bench.py", "--modes", "embedded-step", "--runs", "2", "--warmup", "1"
    )
    found = data["embedded-step"]
    # a run of ten steps: 37 statements for its steps and 16 for the run (bench/README.md)
    assert found["per_step"] == pytest.approx(5.3)
    shares = found["statements"]
    assert shares["UPDATE runs SET stack = ? WHERE run_id = ?"] == pytest.approx(0.8)
    assert sum(shares.values()) == pytest.approx(found["per_step"])
