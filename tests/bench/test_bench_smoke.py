"""Smoke test of the benchmark scripts: each runs end to end on a tiny size.

No figure is checked (no benchmark runs inside the test suite): only that every script
runs, prints the JSON ``bench/all.py`` reads, and that ``all.py`` turns it into its
table. The scripts run as subprocesses, as ``all.py`` runs them, with this venv's python;
DBOS lives in its own venv (``bench/.peers-venv``) and is left to ``bench/all.py
--quick``, so only stepline's sides run here (the report code for the DBOS side is
exercised on synthetic figures).
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests._support.ci import under_ci

pytestmark = [pytest.mark.process, pytest.mark.postgres]

BENCH = Path(__file__).resolve().parents[2] / "bench"


def bench_module(name: str) -> ModuleType:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


def require_postgres() -> None:
    """Skip without Postgres; under CI (``CI=true``) fail instead."""
    problem = bench_module("all").postgres_problem()
    if problem is not None:
        if under_ci():
            pytest.fail(f"Postgres is required under CI: {problem}")
        pytest.skip(problem)


def run_json(script: str, *args: str, timeout: float = 100) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEPLINE_", "INNGEST_"))}
    for name in ("STEPLINE_TEST_POSTGRES_URL", "STEPLINE_BENCH_POSTGRES_URL"):
        if name in os.environ:
            env[name] = os.environ[name]
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    assert done.returncode == 0, f"{script} failed:\n{done.stderr}\n{done.stdout}"
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def rows(name: str, data: dict[str, Any]) -> list[tuple[str, ...]]:
    table: list[tuple[str, ...]] = bench_module("all").ROWS[name](data)
    assert table
    return table


@pytest.mark.timeout(120)
def test_steps_embedded() -> None:
    data = run_json(
        "steps_bench.py", "--transport", "embedded", "--no-dbos", "--runs", "3", "--warmup", "1",
        "--rounds", "1",
    )  # fmt: skip
    assert sorted(data["cells"]) == [
        f"stepline/embedded{sync}/{mode}/{inflight}"
        for sync in ("+full", "")
        for mode in ("checkpoint", "perstep", "step")
        for inflight in (1, 8)
    ]
    assert all(c["steps_per_s"]["best"] > 0 for c in data["cells"].values())
    assert {c["synchronous"] for c in data["cells"].values()} == {"NORMAL", "FULL"}
    table = rows("steps", data)
    assert len(table) == 12
    assert sum("per-step checkpointed" in r[0] for r in table) == 4


@pytest.mark.timeout(180)
def test_steps_http() -> None:
    data = run_json(
        "steps_bench.py", "--transport", "http", "--no-dbos", "--runs", "3", "--warmup", "1",
        "--rounds", "1", "--sqlite-synchronous", "full", timeout=170,
    )  # fmt: skip
    assert len(data["cells"]) == 6
    assert all(c["variant"] == "http+full" for c in data["cells"].values())


def test_steps_report_with_dbos_figures() -> None:
    """The ratio and goal code, on made-up timings (DBOS itself is not run here)."""
    steps = bench_module("steps_bench")
    timings = [
        (("stepline", "embedded", "checkpoint", 1), 1.0, "bench"),
        (("stepline", "embedded", "step", 8), 1.0, "bench"),
        (("stepline", "embedded+full", "checkpoint", 1), 1.5, "bench"),
        (("stepline", "embedded", "perstep", 1), 0.5, "bench"),
        (("dbos", "default", "-", 1), 6.0, "dbos"),
        (("dbos", "wal", "-", 1), 2.0, "dbos"),
        (("dbos", "default", "-", 8), 3.0, "dbos"),
        (("dbos", "wal", "-", 8), 1.5, "dbos"),
    ]
    results = [
        steps.Result(steps.Cell(*cell), [seconds], [{who: seconds / 2}])
        for cell, seconds, who in timings
    ]
    ratios = {(r["stepline"], r["journal"]): r for r in steps.ratios(results, 10)}
    assert ratios["stepline/embedded/checkpoint/1", "default"]["ratio_best"] == 6.0
    assert ratios["stepline/embedded/checkpoint/1", "default"]["met"] is True
    assert ratios["stepline/embedded/checkpoint/1", "wal"]["met"] is False
    assert ratios["stepline/embedded/step/8", "wal"]["goal"] == 2.0
    # per step checkpoints: 3x at either concurrency; 4.0x vs wal here
    assert ratios["stepline/embedded/perstep/1", "wal"]["goal"] == 3.0
    assert ratios["stepline/embedded/perstep/1", "wal"]["met"] is True
    # like for like: NORMAL against DBOS in WAL mode, FULL against DBOS's defaults
    assert ratios["stepline/embedded/checkpoint/1", "wal"]["like_for_like"] is True
    assert ratios["stepline/embedded/checkpoint/1", "default"]["like_for_like"] is False
    assert ratios["stepline/embedded+full/checkpoint/1", "default"]["like_for_like"] is True
    assert ratios["stepline/embedded+full/checkpoint/1", "default"]["ratio_best"] == 4.0
    meta = {
        "runs": 10,
        "rounds": 1,
        "warmup": 0,
        "cpus": 2,
        "versions": {"python": "3", "stepline": "0", "dbos": "3.4.0"},
        "dbos_how": "threads",
        "dbos_probe_steps_per_s": {"threads": 1.0, "start": 0.5},
        "dbos_probe_runs": 10,
    }
    text = steps.report(results, meta)
    assert ">= 5x: met vs default, NOT met vs wal*" in text
    assert ">= 5x: NOT met vs default*, NOT met vs wal" in text  # the +full cell
    assert "30.00 (dbos 30.00)" in text  # 3 CPU seconds over 10 runs x 10 steps
    data = json.loads(steps.to_json(results, meta))
    assert any(r[4] for r in rows("steps", data))


def test_latency() -> None:
    data = run_json(
        "latency_bench.py", "--samples", "3", "--rounds", "1", "--warmup", "1", "--gap", "0.005",
        "--load-rate", "5",
    )  # fmt: skip
    assert set(data["summaries"]) == {"idle", "load"}
    assert all(s["samples"] == 3 for s in data["summaries"].values())
    assert len(rows("latency", data)) == 3


def test_ingest() -> None:
    data = run_json(
        "ingest_bench.py", "--seconds", "0.1", "--warmup", "0.05", "--rounds", "1",
        "--clients", "2", "--batch", "5", "--batch-clients", "1",
    )  # fmt: skip
    for shape in data["shapes"].values():
        assert shape["stored"][0] >= shape["acknowledged"][0] > 0
    assert len(rows("ingest", data)) == 2


def test_handler() -> None:
    data = run_json("handler_bench.py", "--seconds", "0.05", "--rounds", "1", "--warmup", "0")
    assert len(rows("handler", data)) == 2


def test_engine_nodes() -> None:
    require_postgres()
    data = run_json("engine_nodes.py", "--runs", "5", "--rounds", "1", "--nodes", "1")
    assert len(rows("nodes", data)) == 1


def test_stream() -> None:
    data = run_json(
        "stream_bench.py", "--rounds", "1", "--messages", "30", "--batch", "10", "--durable", "5",
        "--samples", "3", "--gap", "0.001",
    )  # fmt: skip
    assert data["publish"]["lightweight"]["best"] > 0
    assert data["publish"]["durable"]["best"] > 0
    assert data["latency"]["samples"] == 3
    assert len(rows("stream", data)) == 3
