"""Smoke test of ``bench/growth_bench.py`` and its plots: both stores, least sizes, end to end.

As the other bench smoke tests, no figure is checked: the script runs as a subprocess and
must print the JSON ``bench/all.py`` turns into its rows and ``growth_plots.py`` into PNGs,
every sleeping run woken, every part there for each store. Without Postgres the test
skips, and fails under CI (``CI=true``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.test_bench_smoke import bench_module, require_postgres, rows, run_json

pytestmark = [pytest.mark.process, pytest.mark.postgres]


@pytest.fixture(autouse=True)
def postgres() -> None:
    require_postgres()


@pytest.mark.timeout(240)
def test_growth_on_both_stores_and_its_plots(tmp_path: Path) -> None:
    data = run_json("growth_bench.py", "--smoke", timeout=220)
    assert sorted(data["stores"]) == ["postgres", "sqlite"]
    sizes = data["sizes"]
    for store in data["stores"].values():
        (sleep,) = store["sleep"]
        assert sleep["sleepers"] == sizes["sleepers"][0]
        assert sleep["fill"]["counts"]["wake_jobs"] == sleep["sleepers"]
        assert sleep["db_bytes"] > 0
        assert sleep["rss_kib_asleep"] > 0
        assert sleep["late_p99_s"] >= sleep["late_p50_s"]
        assert [x["runs"] for x in store["active"]] == sizes["active"]
        assert all(x["steps_per_s"] > 0 for x in store["active"])
        assert [x["width"] for x in store["fanout"]] == sizes["widths"]
        assert [x["mode"] for x in store["long"]] == ["step-by-step", "checkpointed"]
        assert all(len(x["per_step_ms"]) >= 99 for x in store["long"])
    table = rows("growth", data)
    assert any(r[0].startswith("growth postgres") for r in table)
    plots = bench_module("growth_plots")
    written = plots.plot(data, tmp_path)
    assert sorted(p.name for p in written) == [
        "growth_active.png",
        "growth_fanout.png",
        "growth_long.png",
        "growth_sleep.png",
    ]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in written)
