"""``bench/goals.py`` reads each goal from the benchmarks' JSON, on made-up figures.

The steps figures go through ``steps_bench``'s own ``ratios`` and ``to_json``, so the
goal reads the JSON ``all.py`` gets; the other benchmarks' shapes are written out.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.bench.test_bench_smoke import bench_module


def steps_json() -> dict[str, Any]:
    steps = bench_module("steps_bench")
    timings = [  # seconds for the round's runs: steps/s = runs x 10 / seconds
        (("stepline", "embedded", "step", 1), 1.0),
        (("stepline", "http", "step", 1), 2.0),
        (("dbos", "default", "-", 1), 8.0),
        (("dbos", "wal", "-", 1), 4.0),
    ]
    results = [
        steps.Result(steps.Cell(*cell), [seconds], [{"bench": seconds / 2}])
        for cell, seconds in timings
    ]
    meta = {"runs": 10, "rounds": 1, "warmup": 0, "cpus": 2, "versions": {}}
    data: dict[str, Any] = json.loads(steps.to_json(results, meta))
    return data


def endpoint_json(added_ms: float, dbos_wal_ms: float) -> dict[str, Any]:
    return {
        "cells": {
            "stepline/NORMAL": {"system": "stepline", "level": "NORMAL", "added_p50_ms": added_ms},
            "dbos/wal": {"system": "dbos", "added_p50_ms": dbos_wal_ms},
        },
        "ratios": [
            {
                "stepline": "stepline/NORMAL",
                "dbos": "dbos/wal",
                "journal": "wal",
                "ratio": dbos_wal_ms / added_ms,
            }
        ],
    }


def test_each_goal_is_read_and_judged_and_a_missing_bench_is_not_measured() -> None:
    goals = bench_module("goals")
    results = {
        "steps": steps_json(),
        "endpoint": endpoint_json(0.8, 4.0),
        "latency": {"summaries": {"idle": {"p50_ms": 2.5}, "load": {"p50_ms": 3.0}}},
    }
    found = {g["measure"]: g for g in goals.evaluate(results)}
    embedded = found["embedded step by step, one at a time, crash durability (vs DBOS WAL)"]
    assert embedded["value"] == 4.0  # 100 steps/s against DBOS WAL's 25
    assert embedded["met"] is False
    assert embedded["today"] == "4.00x (100 / 25)"
    http = found["HTTP step by step, one at a time, crash durability (vs DBOS WAL)"]
    assert (http["value"], http["met"]) == (2.0, True)
    added = found["durable endpoint, 3 steps, NORMAL: added p50"]
    assert (added["value"], added["met"], added["goal"]) == (0.8, True, "< 1 ms")
    ratio = found["durable endpoint, 3 steps, NORMAL: ratio to DBOS WAL"]
    assert ratio["met"] is True
    assert ratio["today"] == "5.00x (DBOS 4.00 ms)"
    sqlite = found["event -> first step p50 idle, SQLite"]
    assert (sqlite["value"], sqlite["met"]) == (2.5, False)
    postgres = found["event -> first step p50 idle, Postgres"]
    assert (postgres["today"], postgres["met"]) == ("not measured", None)
    text = goals.table(results)
    assert re.search(r"4\.00x \(100 / 25\)  >= 5x +NOT met", text)
    assert "| durable endpoint, 3 steps, NORMAL: added p50 | 0.80 ms | < 1 ms | met |" in (
        goals.markdown(results)
    )


def test_postgres_cpu_sums_every_process_and_names_dbos() -> None:
    goals = bench_module("goals")
    cell = {"inflight": 1, "per_step": {"round_trips": 6.0}}
    results = {
        "pg-steps": {
            "cells": {
                "stepline/embedded/step/1": {
                    **cell,
                    "system": "stepline",
                    "transport": "embedded",
                    "mode": "step",
                    "cpu_ms_per_step": {"bench": 0.4, "postgres": 0.25},
                },
                "stepline/embedded/checkpoint/1": {
                    **cell,
                    "system": "stepline",
                    "transport": "embedded",
                    "mode": "checkpoint",
                    "cpu_ms_per_step": {"bench": 0.1, "postgres": 0.05},
                },
                "dbos/postgres/-/1": {
                    **cell,
                    "system": "dbos",
                    "transport": "postgres",
                    "mode": "-",
                    "cpu_ms_per_step": {"dbos": 1.2, "postgres": 0.5},
                },
            },
            "ratios": [],
        }
    }
    found = {g["measure"]: g for g in goals.evaluate(results)}
    cpu = found["Postgres CPU a step-by-step step, all processes"]
    assert cpu["today"] == "0.65 ms (DBOS 1.70)"
    assert cpu["met"] is True
