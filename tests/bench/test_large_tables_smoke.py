"""Smoke test of ``bench/large_tables.py``: both stores, a tiny history, end to end.

As in ``test_pg_bench_smoke.py``, no figure is checked: the script runs as a subprocess
and must print the JSON ``bench/all.py`` turns into its table, with the fill's rows all
there and a plan for every query. Without Postgres the test skips, and fails under CI
(``CI=true``).
"""

from __future__ import annotations

import pytest

from tests.bench.test_bench_smoke import bench_module, require_postgres, rows, run_json

pytestmark = [pytest.mark.process, pytest.mark.postgres]

RUNS = 2000


@pytest.fixture(autouse=True)
def postgres() -> None:
    require_postgres()


@pytest.mark.timeout(90)
def test_large_tables_on_both_stores() -> None:
    data = run_json("large_tables.py", "--runs", str(RUNS), "--quick", timeout=80)
    assert data["runs"] == RUNS
    assert data["checks"] == []
    assert sorted(data["stores"]) == ["postgres", "sqlite"]
    for store in data["stores"].values():
        counts = store["fill"]["counts"]
        assert counts["runs"] == counts["events"] == counts["event_runs"] == RUNS
        assert 2 * RUNS <= counts["steps"] <= 3 * RUNS
        assert counts["jobs"] == 0
        assert store["empty"].keys() == store["filled"].keys()
        assert all(v > 0 for v in store["filled"].values())
        assert {"steps/s, checkpointed, seq", "lease: no job due, p50 ms"} <= store["empty"].keys()
        queries = {p["query"] for p in store["plans"]}
        assert {"lease_jobs", "lease_run_call", "next_job_at", "runs, newest 50"} <= queries
        assert all(p["plan"] for p in store["plans"])
    assert data["findings"] == [
        x for s in data["stores"].values() for x in s["findings"]
    ]  # the report's findings are the stores'
    table = rows("large", data)
    assert any(r[0].startswith("large postgres steps/s") for r in table)
    assert all(r[2].endswith(" empty") for r in table if not r[0].startswith("large finding"))


def test_history_rows_are_the_engines_records() -> None:
    fill, model = bench_module("_bulk_fill"), bench_module("stepline.engine._store.rows")
    batches = list(fill.history(250, now=1_000_000.0, span=3600.0))
    runs = [model.read_run(r) for b in batches for r in b.runs]
    assert len(runs) == 250
    assert all(r.ended_at is not None and r.status.terminal for r in runs)
    assert [r.run_id for r in runs] == sorted(r.run_id for r in runs)  # oldest first
    assert {r.function_id for r in runs} == set(fill.FUNCTIONS)
    steps = [model.read_step(s) for b in batches for s in b.steps]
    assert {s.run_id for s in steps} == {r.run_id for r in runs}
