"""Smoke test of ``bench/ai_bench.py``: stepline's sides at a tiny size, end to end.

No figure is checked: only that the script runs the plain and the durable agent on every
shape (each output checked, a verification run's steps counted), prints the JSON
``bench/all.py`` reads, and that ``all.py`` turns it into its rows. DBOS lives in the
peers' venv and is left to ``bench/all.py --quick``; its side of the report (the solve,
the ratios, the goals, the table) runs here on made-up figures.
"""

from __future__ import annotations

import pytest

from tests.bench.test_bench_smoke import bench_module, rows, run_json

pytestmark = [pytest.mark.process]


@pytest.mark.timeout(120)
def test_stepline_sides() -> None:
    data = run_json(
        "ai_bench.py", "--no-dbos", "--n", "2", "--runs", "2", "--rounds", "1", "--warmup", "1",
        timeout=110,
    )  # fmt: skip
    assert sorted(data["cells"]) == ["stepline/FULL", "stepline/NORMAL", "stepline/NORMAL+stream"]
    for cell in data["cells"].values():
        assert set(cell["durable_ms"]) == {"single", "chain", "fan"}
        assert all(ms > 0 for ms in cell["durable_ms"].values())
        assert set(cell["added"]) == {"run_ms", "request_ms", "tool_ms"}
        assert len(cell["rounds_added"]) == 1
    assert data["ratios"] == []
    table = rows("ai", data)
    assert [r[0] for r in table] == [
        "ai agent added per model request NORMAL, ms",
        "ai agent added per tool call NORMAL, ms",
        "ai agent added per model request FULL, ms",
        "ai agent added per tool call FULL, ms",
        "ai agent added per model request NORMAL, streamed, ms",
        "ai agent added per tool call NORMAL, streamed, ms",
        "ai plain Pydantic AI per model request / tool call, ms",
    ]


def _shapes(run: float, request: float, tool: float, n: int = 10) -> dict[str, float]:
    return {
        "single": run + request,
        "chain": run + (n + 1) * request + n * tool,
        "fan": run + 2 * request + n * tool,
    }


def test_solve_and_the_report_with_dbos_figures() -> None:
    """The three shapes give back the costs they were built from; ratios by durability."""
    run = bench_module("_ai_run")
    assert run.solve(_shapes(5.0, 2.0, 0.5), 10) == pytest.approx(
        {"run_ms": 5.0, "request_ms": 2.0, "tool_ms": 0.5}
    )
    bench = bench_module("ai_bench")
    plain = _shapes(1.0, 1.0, 0.1)

    def side(run_ms: float, request: float, tool: float) -> dict[str, object]:
        durable = _shapes(1.0 + run_ms, 1.0 + request, 0.1 + tool)
        return {"plain": plain, "durable": durable}

    measured = {
        "stepline/NORMAL": [side(2.0, 1.0, 0.5)],
        "stepline/FULL": [side(2.0, 4.0, 1.0)],
        "dbos/default": [side(20.0, 8.0, 20.0)],
        "dbos/wal": [side(5.0, 2.0, 0.25)],
    }
    cells = {key: bench.summary(rounds, 10) for key, rounds in measured.items()}
    assert cells["stepline/FULL"]["added"] == pytest.approx(
        {"run_ms": 2.0, "request_ms": 4.0, "tool_ms": 1.0}
    )
    found = {(r["stepline"], r["dbos"], r["what"]): r for r in bench.ratios(cells)}
    full = found["stepline/FULL", "dbos/default", "request_ms"]
    assert (full["ratio"], full["like_for_like"], full["met"]) == (pytest.approx(2.0), True, True)
    normal_tool = found["stepline/NORMAL", "dbos/wal", "tool_ms"]
    assert (normal_tool["ratio"], normal_tool["met"]) == (pytest.approx(0.5), False)
    assert found["stepline/NORMAL", "dbos/default", "request_ms"]["met"] is None
    meta = {"n": 10, "runs": 1, "rounds": 1, "versions": {"pydantic_ai": "2", "dbos": "3.4.0"}}
    text = bench.report(cells, meta)
    assert "stepline/FULL    vs dbos/default  per model request    2.00x *  met" in text
    assert "stepline/NORMAL  vs dbos/wal      per tool call        0.50x *  NOT met" in text
    table = {r[0]: r for r in rows("ai", {"cells": cells, "ratios": bench.ratios(cells)})}
    assert table["ai agent added per model request FULL, ms"][1:] == (
        "4.00", "8.00 / 2.00", "2.00x* / 0.50x", "< DBOS met*",
    )  # fmt: skip
    assert table["ai agent added per tool call NORMAL, ms"][1:] == (
        "0.50", "20.00 / 0.25", "40.00x / 0.50x*", "< DBOS NOT met*",
    )  # fmt: skip
