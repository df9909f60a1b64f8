"""Smoke test of ``bench/load_bench.py``: a tiny burst on SQLite, every run accounted for.

The script itself exits 1 when a run is missing or failed or memory passes its bound;
here it runs at a tenth of ``--quick`` so the suite stays fast. The figures are not
checked (the README records a full run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.process]

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.timeout(120)
def test_a_small_burst_completes_every_run() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEPLINE_", "INNGEST_"))}
    args = ["--stores", "sqlite", "--events", "120", "--concurrent", "20", "--json"]
    done = subprocess.run(
        [sys.executable, str(BENCH / "load_bench.py"), *args],
        capture_output=True,
        text=True,
        timeout=110,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    data = json.loads(done.stdout)
    [result] = data["results"]
    assert result["statuses"] == {"Completed": 100}
    assert result["finished_events"] == 100
    assert result["peak_in_flight"] == 20
    assert 0 < max(result["peak_rss_mb"]) < 1024
