"""Run queries: ``GET /v1/runs?query=...`` latency on 10,000 and 100,000 runs, per store.

For each store (a SQLite file on disk; Postgres in a fresh schema on
``STEPLINE_BENCH_POSTGRES_URL``, else ``STEPLINE_TEST_POSTGRES_URL``, else
``postgresql://postgres@127.0.0.1:5432/test``, skipped with a message when none answers)
and each ``--runs`` size, ``_bulk_fill`` writes that many ended runs (5 functions over 30
days, each with its event and ~3 steps; 5% failed, 3% cancelled) and every run gets a
``tenant`` attribute (32 values). Then each query of ``QUERIES`` is asked through the
engine's REST API in process (``build_app`` over ``httpx.ASGITransport``: no network), 50
runs a page: ``--repeat`` times after 3 warm-ups, p50 and p95 in milliseconds. The
queries are the kinds the docs describe: all SQL (status, function, a time range, an
attribute, a version nobody has), narrowed by a column and checked in Python (a payload
path after ``status``, a duration), a payload path alone (a scan, at most 5,000 runs), and
a second page by cursor.

Not part of ``all.py``: filling 100,000 runs per store and asking takes a few minutes.

Run: ``.venv/bin/python bench/run_query_bench.py [--runs 10000 --runs 100000]
[--store sqlite|postgres] [--repeat 40] [--quick] [--json]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _bulk_fill
import _servers
import httpx

import stepline
from stepline.engine import Engine, EngineSettings
from stepline.engine._http.api import build_app
from stepline.engine._store import store_for

#: label -> query; each asked for a page of 50 runs
QUERIES: dict[str, str] = {
    "status (SQL)": 'status == "Failed"',
    "function and status (SQL)": 'function_id == "history-orders" && status == "Failed"',
    "last 24 h, not completed (SQL)": 'created > now - duration("24h") && status != "Completed"',
    "attribute (SQL)": 'attributes.tenant == "tenant-Z"',
    "version none has (SQL)": 'version == "v2"',
    "status, then event data (narrowed)": 'status == "Failed" && event.data.amount > 9000',
    "duration (narrowed)": 'duration > duration("2s")',
    "event data alone (scan, 5,000 max)": 'event.data.customer == "c-42"',
}
SECOND_PAGE = "status (SQL), page 2"
ATTRIBUTES = (
    "INSERT INTO run_attributes (run_id, name, value) "
    "SELECT run_id, 'tenant', 'tenant-' || substr(run_id, 26, 1) FROM runs"
)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def prepare(db: str, runs: int, label: str) -> dict[str, Any]:
    """The schema, the app, ``runs`` ended runs and their attributes."""

    async def schema() -> None:
        store = store_for(EngineSettings(database_url=db))
        await store.open()
        app, fns = _bulk_fill.app_records(time.time())
        await store.atomic(lambda tx: tx.apps.put_app(app, fns))
        await store.close()

    asyncio.run(schema())
    filled = _bulk_fill.fill(db, runs, time.time(), 30 * 86_400, label)
    write(db, ATTRIBUTES)
    return filled


def write(db: str, sql: str) -> None:
    """One statement on a SQLite file or a Postgres URL, committed."""
    if db.startswith(("postgres://", "postgresql://")):
        import psycopg

        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute(sql)
            conn.execute("ANALYZE run_attributes")
    else:
        with contextlib.closing(sqlite3.connect(db)) as lite, lite:
            lite.execute(sql)
            lite.execute("ANALYZE")


async def ask(db: str, repeat: int) -> dict[str, dict[str, float]]:
    """Each query's latency through the REST API: p50, p95, and the runs on its page."""
    engine = Engine(EngineSettings(database_url=db))
    await engine.start(worker=False, sync=False)
    results: dict[str, dict[str, float]] = {}
    try:
        transport = httpx.ASGITransport(app=build_app(engine))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:

            async def timed(params: dict[str, Any]) -> tuple[float, dict[str, Any]]:
                began = time.perf_counter()
                answer = await http.get("/v1/runs", params=params)
                elapsed = (time.perf_counter() - began) * 1000
                if answer.status_code != 200:
                    raise SystemExit(f"run_query_bench: {params}: {answer.text}")
                return elapsed, answer.json()

            for label, text in QUERIES.items():
                params = {"query": text, "limit": 50}
                samples: list[float] = []
                page: dict[str, Any] = {}
                for n in range(repeat + 3):
                    elapsed, page = await timed(params)
                    if n >= 3:
                        samples.append(elapsed)
                meta = page["metadata"]
                results[label] = {
                    "p50_ms": statistics.median(samples),
                    "p95_ms": pct(samples, 0.95),
                    "found": len(page["data"]),
                    "exact": bool(meta.get("exact")),
                    "scanned": meta.get("scanned", 0),
                }
                if label == "status (SQL)":
                    cursor = meta["next_cursor"]
                    samples = []
                    for n in range(repeat + 3):
                        elapsed, page = await timed({**params, "cursor": cursor})
                        if n >= 3:
                            samples.append(elapsed)
                    results[SECOND_PAGE] = {
                        "p50_ms": statistics.median(samples),
                        "p95_ms": pct(samples, 0.95),
                        "found": len(page["data"]),
                        "exact": True,
                        "scanned": 0,
                    }
                print(
                    f"  {label}: p95 {results[label]['p95_ms']:.1f} ms",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        await engine.stop()
    return results


@contextlib.contextmanager
def database(store: str, tmp: Path, name: str) -> Iterator[str]:
    with _servers.database(store == "postgres", tmp, name) as db:
        yield db


def report(data: dict[str, Any]) -> str:
    lines = [
        f"run queries, python {data['versions']['python']}, {data['cpus']} CPUs, "
        f"load average {data['loadavg']} at start; {data['repeat']} requests each, p50 / p95 ms",
    ]
    for store, sizes in data["stores"].items():
        if "skipped" in sizes:
            lines.append(f"{store}: skipped, {sizes['skipped']}")
            continue
        counts = list(sizes)
        header = f"{store:<10}{'query':<40}" + "".join(f"{c + ' runs':>22}" for c in counts)
        lines += ["", header]
        for label in [*QUERIES, SECOND_PAGE]:
            cells = []
            for count in counts:
                got = sizes[count]["queries"][label]
                cells.append(f"{got['p50_ms']:>9.1f} / {got['p95_ms']:>8.1f}")
            lines.append(f"{'':<10}{label:<40}" + "".join(f"{c:>22}" for c in cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, action="append", help="(default 10000 and 100000)")
    parser.add_argument(
        "--store", choices=("sqlite", "postgres"), action="append", help="(default both)"
    )
    parser.add_argument("--repeat", type=int, default=40, help="requests per query (40)")
    parser.add_argument("--quick", action="store_true", help="2,000 runs, 5 requests each")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args(argv)
    counts = args.runs or ([2_000] if args.quick else [10_000, 100_000])
    repeat = 5 if args.quick else args.repeat
    data: dict[str, Any] = {
        "benchmark": "run queries: GET /v1/runs?query= latency",
        "repeat": repeat,
        "cpus": os.cpu_count(),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "versions": {"python": platform.python_version(), "stepline": stepline.__version__},
        "stores": {},
    }
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="run-query-") as tmp:
        for store in args.store or ["sqlite", "postgres"]:
            problem = _servers.postgres_problem() if store == "postgres" else None
            if problem:
                print(f"run_query_bench: postgres skipped, {problem}", file=sys.stderr)
                data["stores"][store] = {"skipped": problem}
                continue
            data["stores"][store] = {}
            for count in counts:
                with database(store, Path(tmp), f"query_{count}") as db:
                    filled = prepare(db, count, f"{store} fill {count:,}")
                    print(f"{store}, {count:,} runs:", file=sys.stderr, flush=True)
                    queries = asyncio.run(ask(db, repeat))
                    data["stores"][store][f"{count:,}"] = {
                        "fill_seconds": filled["seconds"],
                        "queries": queries,
                    }
    data["seconds"] = time.monotonic() - began
    print(json.dumps(data, indent=2) if args.json else report(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
