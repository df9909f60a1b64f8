"""Smoke test of ``bench/endpoint_bench.py``: stepline's sides at a tiny size, end to end.

No figure is checked: only that the script serves both stepline apps (SQLite NORMAL and
FULL), checks every answer and the runs in the file, prints the JSON ``bench/all.py``
reads, and that ``all.py`` turns it into its rows. DBOS lives in the peers' venv and is
left to ``bench/all.py --quick``; its side of the report (ratios, goals, the table) runs
here on made-up figures.
"""

from __future__ import annotations

import pytest

from tests.bench.test_bench_smoke import bench_module, rows, run_json

pytestmark = [pytest.mark.process]


@pytest.mark.timeout(120)
def test_stepline_sides() -> None:
    data = run_json(
        "endpoint_bench.py", "--no-dbos", "--requests", "3", "--rounds", "2", "--warmup", "1",
        timeout=110,
    )  # fmt: skip
    assert sorted(data["cells"]) == ["stepline/FULL", "stepline/NORMAL"]
    for cell in data["cells"].values():
        assert cell["samples"] == 6
        assert len(cell["rounds_added_p50_ms"]) == 2
        assert cell["baseline"]["p50_ms"] > 0
        assert cell["durable"]["p50_ms"] > 0
    assert data["ratios"] == []
    assert set(data["goals"]) == {"added_p50_normal"}
    table = rows("endpoint", data)
    assert [r[0] for r in table] == [
        "endpoint +3 steps NORMAL, added p50 / p99 ms",
        "endpoint +3 steps FULL, added p50 / p99 ms",
        "endpoint baseline route (no steps), p50 ms",
    ]


def _cell(system: str, level: str, style: str, plain: float, three: float) -> dict[str, object]:
    return {
        "system": system,
        "level": level,
        "style": style,
        "samples": 10,
        "baseline": {"p50_ms": plain, "p99_ms": plain * 2},
        "durable": {"p50_ms": three, "p99_ms": three * 2},
        "added_p50_ms": three - plain,
        "added_p50_median_ms": three - plain,
        "added_p50_pooled_ms": three - plain,
        "added_p99_ms": (three - plain) * 2,
        "rounds_added_p50_ms": [three - plain],
        "cpu_ms_per_pair": 1.0,
        "seconds": [1.0],
    }


def test_report_with_dbos_figures() -> None:
    """Ratios against the faster DBOS style per journal; like for like by durability."""
    bench = bench_module("endpoint_bench")
    cells = {
        "stepline/NORMAL": _cell("stepline", "NORMAL", "async", 1.0, 3.0),  # +2 ms
        "stepline/FULL": _cell("stepline", "FULL", "async", 1.0, 5.0),  # +4 ms
        "dbos/default/async": _cell("dbos", "default", "async", 1.0, 13.0),  # +12
        "dbos/default/sync": _cell("dbos", "default", "sync", 1.0, 11.0),  # +10: the peer
        "dbos/wal/async": _cell("dbos", "wal", "async", 1.0, 4.0),  # +3: the peer
        "dbos/wal/sync": _cell("dbos", "wal", "sync", 1.0, 6.0),
    }
    ratios = {(r["stepline"], r["journal"]): r for r in bench.ratios(cells)}
    full = ratios["stepline/FULL", "default"]
    assert (full["dbos"], full["ratio"], full["like_for_like"], full["met"]) == (
        "dbos/default/sync", 2.5, True, True,
    )  # fmt: skip
    normal = ratios["stepline/NORMAL", "wal"]
    assert (normal["dbos"], normal["ratio"], normal["like_for_like"], normal["met"]) == (
        "dbos/wal/async", 1.5, True, False,
    )  # fmt: skip
    assert ratios["stepline/NORMAL", "default"]["like_for_like"] is False
    assert ratios["stepline/NORMAL", "default"]["met"] is None
    goals = bench.goals(cells, list(ratios.values()))
    assert goals["added_p50_normal"]["met"] is True
    assert goals["vs_dbos_default"]["met"] is True
    assert goals["vs_dbos_wal"]["met"] is False
    meta = {
        "requests": 10, "rounds": 1, "warmup": 0, "cpus": 2,
        "versions": {"python": "3", "stepline": "0", "dbos": "3.4.0"},
    }  # fmt: skip
    text = bench.report(cells, meta)
    assert "goal: added p50 at NORMAL < 3 ms: 2.00 ms, met" in text
    assert "(stepline/FULL vs dbos/default/sync): 2.50x, met" in text
    assert "(stepline/NORMAL vs dbos/wal/async): 1.50x, NOT met" in text
    data = {"cells": cells, "ratios": list(ratios.values())}
    table = {r[0]: r for r in rows("endpoint", data)}
    normal_row = table["endpoint +3 steps NORMAL, added p50 / p99 ms"]
    assert normal_row[1:] == ("2.00 / 4.00", "10.00 / 3.00", "5.00x / 1.50x*",
                              "<3 ms met; >= 2x NOT met*")  # fmt: skip
    full_row = table["endpoint +3 steps FULL, added p50 / p99 ms"]
    assert full_row[1:] == ("4.00 / 8.00", "10.00 / 3.00", "2.50x* / 0.75x", ">= 2x met*")
