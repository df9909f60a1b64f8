"""Smoke test of the Postgres benchmarks: each runs end to end on a tiny size.

As in ``test_bench_smoke.py``, no figure is checked: the scripts run as subprocesses with
this venv's python and must print the JSON ``bench/all.py`` turns into its table. DBOS
(the peers' venv) is left to ``bench/all.py --quick``; its ratio and goal code runs here
on made-up timings. Without Postgres these tests skip, and fail under CI (``CI=true``).
"""

from __future__ import annotations

import concurrent.futures
import json

import pytest

from tests.bench.test_bench_smoke import bench_module, require_postgres, rows, run_json

pytestmark = [pytest.mark.process, pytest.mark.postgres]


@pytest.fixture(autouse=True)
def postgres() -> None:
    require_postgres()


@pytest.mark.timeout(200)
def test_pg_steps() -> None:
    data = run_json(
        "pg_steps_bench.py", "--no-dbos", "--runs", "3", "--warmup", "1", "--rounds", "1",
        timeout=190,
    )  # fmt: skip
    assert len(data["cells"]) == 12
    for key, cell in data["cells"].items():
        assert cell["steps_per_s"]["best"] > 0
        assert cell["cpu_ms_per_step"]["postgres"] >= 0
        # round trips are counted where the engine runs in the bench process
        assert ("per_step" in cell) == key.startswith("stepline/embedded/")
    per = data["cells"]["stepline/embedded/step/1"]["per_step"]
    assert per["commits"] >= 1  # a transaction's COMMIT, or a write in autocommit
    # a run's first and last steps write in a transaction; its one-statement answers'
    # rows are WITH clauses of a SELECT, whose command tag counts none
    assert per["rows"] > 0
    assert per["round_trips"] > per["statements"]
    assert len(rows("pg-steps", data)) == 15  # 12 cells + the 3 sequential embedded costs


def test_pg_steps_ratios_on_made_up_figures() -> None:
    pg = bench_module("pg_steps_bench")
    timings = [
        (("stepline", "embedded", "checkpoint", 1), 1.0),
        (("stepline", "embedded", "step", 8), 2.0),
        (("stepline", "http", "step", 1), 4.0),
        (("dbos", "postgres", "-", 1), 4.0),
        (("dbos", "postgres", "-", 8), 2.5),
    ]
    counts = dict.fromkeys(("statements", "commands", "commits", "round_trips", "rows"), 100)
    results = [
        pg.Result(pg.Cell(*cell), [pg.Sample(seconds, {"bench": 1.0, "postgres": 0.5}, counts)])
        for cell, seconds in timings
    ]
    by = {x["stepline"]: x for x in pg.ratios(results, 10)}
    assert by["stepline/embedded/checkpoint/1"]["ratio_best"] == 4.0
    assert by["stepline/embedded/checkpoint/1"]["met"] is True  # >= 3x
    assert by["stepline/embedded/step/8"]["goal"] == 1.5
    assert by["stepline/embedded/step/8"]["met"] is False  # 1.25x
    assert by["stepline/http/step/1"]["goal"] is None  # no goal sequential step-by-step
    meta = {
        "runs": 10, "rounds": 1, "warmup": 0, "cpus": 2, "loadavg": "0 0 0",
        "postgres": "15", "versions": {"python": "3", "stepline": "0", "dbos": "3.4.0"},
    }  # fmt: skip
    text = pg.report(results, meta)
    assert ">= 3x met" in text
    assert ">= 1.5x NOT met" in text
    assert "15.00 = bench 10.00 + postgres 5.00; 1.00 stmts" in text  # per step of 100
    table = rows("pg-steps", json.loads(pg.to_json(results, meta)))
    assert [r[4] for r in table[:3]] == [">= 3x met", ">= 1.5x NOT met", ""]


# two bench processes, each with its engine, side by side: most of each is its engine's start
@pytest.mark.timeout(180)
def test_pg_latency_and_ingest() -> None:
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        latency = pool.submit(
            run_json, "latency_bench.py", "--postgres", "--samples", "3", "--rounds", "1",
            "--warmup", "1", "--gap", "0.005", "--load-rate", "5",
        )  # fmt: skip
        ingest = pool.submit(
            run_json, "ingest_bench.py", "--postgres", "--seconds", "0.1", "--warmup", "0.05",
            "--rounds", "1", "--clients", "2", "--batch", "5", "--batch-clients", "1",
        )  # fmt: skip
        data = latency.result()
    assert data["database"] == "postgres"
    assert all(r[0].startswith("postgres ") for r in rows("pg-latency", data))
    data = ingest.result()
    for shape in data["shapes"].values():
        assert shape["stored"][0] >= shape["acknowledged"][0] > 0
    assert len(rows("pg-ingest", data)) == 2


def test_the_driver_counts_round_trips_and_rows() -> None:
    servers, pgcount = bench_module("_servers"), bench_module("_pgcount")
    import psycopg

    pgcount.install()
    with servers.fresh_schema("count") as url, psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (k int PRIMARY KEY, v int)")
        before = pgcount.snapshot()
        with conn.transaction():
            conn.execute("INSERT INTO t VALUES (1, 1), (2, 2)")
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO t VALUES (%s, 0)", [(3,), (4,), (5,)])
            conn.execute("UPDATE t SET v = v + 1 WHERE k > 3")
            conn.execute("SELECT * FROM t").fetchall()
        counted = pgcount.delta(before, pgcount.snapshot())
    assert counted == {
        "statements": 6,  # 3 executes + the 3 parameter sets of executemany
        "commands": 2,  # BEGIN, COMMIT
        "commits": 1,
        "round_trips": 6,  # 3 executes, 1 executemany (pipelined), BEGIN, COMMIT
        "rows": 7,  # 2 + 3 inserted, 2 updated
    }
