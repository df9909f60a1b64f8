"""Smoke test of ``bench/deploy_check_bench.py``: the check of live runs, end to end, tiny.

No figure is judged: the script must start its engine, get its runs asleep after their
ten steps, run ``stepline deploy check`` as a child process with every verdict ``ok``
(the script exits otherwise), print the JSON ``bench/all.py`` reads, and ``all.py`` must
turn it into its rows.
"""

from __future__ import annotations

import pytest

from tests.bench.test_bench_smoke import rows, run_json

pytestmark = [pytest.mark.process]


@pytest.mark.timeout(120)
def test_deploy_check_of_live_runs() -> None:
    data = run_json("deploy_check_bench.py", "--runs", "12", "--rounds", "2", timeout=110)
    assert (data["runs"], data["steps_per_run"]) == (12, 10)
    assert len(data["rounds"]) == 2
    for measured in data["rounds"]:
        assert measured["wall_s"] > measured["check_s"] > 0
    assert data["runs_per_s"] == pytest.approx(12 / data["median_wall_s"])
    assert data["met"] is False, "the goal is judged on 1,000 runs only"
    assert data["profile"] is None
    table = rows("deploy-check", data)
    assert table[0][0] == "deploy check 12 live runs of 10 steps, s end to end"
    assert table[0][4] == ""
