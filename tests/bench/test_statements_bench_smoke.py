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
    # a run of ten steps: 45 statements (bench/README.md: its start looks at the waits
    # and the paused functions at once; each answer takes its call as the transaction
    # before left it, checked by a PRAGMA, and the first reads it, and the PRAGMA to
    # leave it); the run's step order is its steps' seq, so no statement rewrites the
    # run's row for it
    assert found["per_step"] == pytest.approx(4.5)
    shares = found["statements"]
    assert not [sql for sql in shares if "stack" in sql]
    assert sum(shares.values()) == pytest.approx(found["per_step"])
