"""Large tables: the engine's benchmarks on an empty database and on one with 1M ended runs.

As after months of use, before retention removes them. For each store (a
SQLite file on disk; Postgres in a fresh schema on ``STEPLINE_BENCH_POSTGRES_URL``, else
``STEPLINE_TEST_POSTGRES_URL``, else ``postgresql://postgres@127.0.0.1:5432/test``,
skipped with a message when none answers) the same measurements run twice, by the same
code: on an empty database, then on one ``_bulk_fill`` filled with ``--runs`` ended runs
(default 1,000,000: 5 functions, 90 days, each with its event, link and ~3 steps):

* steps/s of ``steps_bench.py``'s 10-step runs (``EmbeddedEngine``, step-by-step and
  checkpointed, sequential and 8 in flight);
* fan-out: an event that starts 3 functions, from ``send`` to each run's first step (p50
  of every run, and of the last of the 3);
* the dashboard's lists through the engine's REST API (``wsgi_app``, in process): runs
  newest first, by a busy function, by status, the next page by cursor, the last hour,
  by event id; events newest first and by name; a run's page (run + steps); p50 and p95;
* leasing, straight on the store with the engine stopped: the lease transaction with no
  job due and with 5 due, a run's next call (``lease_run_call``), ``next_job_at``;
* on the filled database, the plans (SQLite ``EXPLAIN QUERY PLAN``, Postgres ``EXPLAIN
  (ANALYZE, BUFFERS)`` rolled back) of the store's own SQL for those reads, recorded from
  its ``Tx``: a full scan of runs, steps, events or event_runs is a finding.

The report shows both figures and filled/empty for each; it exits 1 when a check fails
(rows missing after the fill, a run not completed, the API not listing the history).

Run: ``.venv/bin/python bench/large_tables.py [--runs 1000000] [--store sqlite|postgres]
[--quick] [--json]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _bulk_fill
import _explain
import _servers
import httpx
import steps_bench

import stepline
from stepline.embedded import EmbeddedEngine
from stepline.engine import EngineSettings
from stepline.engine._ids import ulid
from stepline.engine._model import Job, JobKind
from stepline.engine._store import store_for

SPAN = 90 * 86_400.0
#: longer than the history's span: the runs are measured before retention removes them
#: (with the default 7 days, the sweeper would be deleting most of them during the runs)
RETENTION = "120d"
FAN_EVENT = "bench/fan"
FANS = ("fan-a", "fan-b", "fan-c")
BUSY = _bulk_fill.FUNCTIONS[0]  # a function with a fifth of the history's runs


@dataclass(frozen=True)
class Sizes:
    steps_runs: int  # timed 10-step runs per steps/s cell
    fan_events: int  # events sent, each starting len(FANS) runs
    requests: int  # GETs per dashboard list
    leases: int  # lease transactions per case


FULL, QUICK = Sizes(100, 30, 50, 200), Sizes(8, 4, 8, 20)


class Fired:
    """When each fan-out run's first step ran (``perf_counter``), by (event k, function)."""

    def __init__(self) -> None:
        self.at: dict[tuple[int, str], float] = {}
        self.cond = threading.Condition()

    def mark(self, k: int, fn: str) -> bool:
        with self.cond:
            self.at.setdefault((k, fn), time.perf_counter())
            self.cond.notify_all()
        return True

    def wait(self, k: int, timeout: float = 60) -> list[float]:
        with self.cond:
            if not self.cond.wait_for(lambda: all((k, f) in self.at for f in FANS), timeout):
                sys.exit(f"large_tables: event {k} did not start its {len(FANS)} runs")
            return [self.at[(k, f)] for f in FANS]


def functions(client: stepline.Client, fired: Fired) -> list[stepline.Function]:
    def fan(fid: str) -> stepline.Function:
        @client.function(id=fid, trigger=stepline.TriggerEvent(event=FAN_EVENT), retries=0)
        def run(ctx: stepline.SyncContext) -> object:
            k = int(ctx.event.data["k"])
            ctx.step.run("first", lambda: fired.mark(k, fid))
            return k

        return run

    return [_servers.ten_steps(client), *(fan(f) for f in FANS)]


@contextlib.contextmanager
def engine(
    db: str, checkpointing: bool, fired: Fired
) -> Iterator[tuple[stepline.Client, EmbeddedEngine]]:
    client = stepline.Client(
        _servers.APP_ID, is_production=False, checkpointing=checkpointing, environ={}
    )
    embedded = EmbeddedEngine(  # the history is kept: inside retention, as after months
        client,
        functions(client, fired),
        database=db,
        checkpointing=checkpointing,
        retention=RETENTION,
    )
    embedded.start()
    try:
        yield client, embedded
    finally:
        embedded.stop()
        client.close()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


# -- the measurements --------------------------------------------------------------------------


def steps(client: stepline.Client, mode: str, sizes: Sizes, out: dict[str, float]) -> None:
    def start(k: int) -> object:
        return client.execute_sync("ten", {"k": k}, timeout=steps_bench.RESULT_TIMEOUT)

    steps_bench.drive(start, 0, 3, 1)  # warm-up
    for inflight in (1, steps_bench.INFLIGHT):
        seconds, _ = steps_bench.drive(start, 0, sizes.steps_runs, inflight)
        where = "seq" if inflight == 1 else f"{inflight} in flight"
        out[f"steps/s, {steps_bench.MODES[mode]}, {where}"] = (
            sizes.steps_runs * _servers.STEPS / seconds
        )


def fanout(client: stepline.Client, fired: Fired, sizes: Sizes, out: dict[str, float]) -> None:
    firsts, lasts = [], []
    for k in range(-2, sizes.fan_events):  # two warm-up events
        began = time.perf_counter()
        client.send_sync(stepline.Event(name=FAN_EVENT, data={"k": k}))
        at = [(t - began) * 1000 for t in fired.wait(k)]
        if k >= 0:
            firsts += at
            lasts.append(max(at))
    out["fan-out: event to a run's first step, p50 ms"] = statistics.median(firsts)
    out[f"fan-out: event to all {len(FANS)} first steps, p50 ms"] = statistics.median(lasts)


def lists(
    embedded: EmbeddedEngine, sizes: Sizes, out: dict[str, float], checks: list[str]
) -> dict[str, Any]:
    """Time the dashboard's lists; returns a run of the history as the API shows it (or {})."""
    app = embedded.wsgi_app()
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://127.0.0.1") as http:

        def get(path: str) -> Any:
            answer = http.get(path)
            if answer.status_code != 200:
                sys.exit(f"large_tables: GET {path}: {answer.status_code} {answer.text[:300]}")
            return answer.json()

        page = get("/v1/runs?limit=50")
        newest, cursor = page["data"][0], page["metadata"]["next_cursor"]
        history = get(f"/v1/runs?limit=50&function_id={BUSY}")["data"]
        hour = time.time() - 3600
        cases = {
            "runs, newest 50": ["/v1/runs?limit=50"],
            "runs, one busy function": [f"/v1/runs?limit=50&function_id={BUSY}"],
            "runs, failed only": ["/v1/runs?limit=50&status=Failed"],
            "runs, next page by cursor": [f"/v1/runs?limit=50&cursor={cursor}"],
            "runs, last hour": [f"/v1/runs?limit=50&since={hour}"],
            "runs, by event id": [f"/v1/runs?event_id={newest['event_ids'][0]}"],
            "events, newest 50": ["/v1/events?limit=50"],
            "events, one name": [f"/v1/events?limit=50&name={FAN_EVENT}"],
            "run page (run + steps)": [
                f"/v1/runs/{newest['run_id']}",
                f"/v1/runs/{newest['run_id']}/steps",
            ],
        }
        for name, paths in cases.items():
            times = []
            for i in range(sizes.requests + 2):
                began = time.perf_counter()
                for path in paths:
                    get(path)
                if i >= 2:  # two warm-up rounds
                    times.append((time.perf_counter() - began) * 1000)
            out[f"list: {name}, p50 ms"] = statistics.median(times)
            out[f"list: {name}, p95 ms"] = pct(times, 0.95)
        if history:
            run = get(f"/v1/runs/{history[-1]['run_id']}")["data"]
            if run["status"] not in ("Completed", "Failed", "Cancelled") or not run.get("ended_at"):
                checks.append(f"history run {run['run_id']} reads as {run['status']}, not ended")
            return dict(history[-1])
        return {}


async def leases(db: str, sizes: Sizes, out: dict[str, float]) -> None:
    store = store_for(EngineSettings(database_url=db))
    await store.open()
    ghost = ulid(int(time.time() * 1000))  # a run with no jobs
    times: dict[str, list[float]] = {}
    try:
        for _ in range(sizes.leases):
            for name, ms in (await lease_round(store, ghost, time.time())).items():
                times.setdefault(name, []).append(ms)
    finally:
        await store.close()
    for name, values in times.items():
        out[f"{name}, p50 ms"] = statistics.median(values)


async def lease_round(store: Any, ghost: str, now: float) -> dict[str, float]:
    """One of each lease transaction (ms); 5 jobs are queued for, and deleted after, one."""

    async def timed(work: Callable[[Any], object], write: bool = True) -> float:
        began = time.perf_counter()
        await (store.atomic(work) if write else store.read(work))
        return (time.perf_counter() - began) * 1000

    out = {
        "lease: no job due": await timed(
            lambda tx: tx.queue.lease_jobs("bench", now, now + 30, 16)
        ),
        "lease: a run's next call": await timed(
            lambda tx: tx.queue.lease_run_call(ghost, "bench", now, now + 30)
        ),
        "next_job_at": await timed(lambda tx: tx.queue.next_job_at(), write=False),
    }
    jobs = [Job(ulid(int(now * 1000)), JobKind.WAKE, now - 1, ghost) for _ in range(5)]
    await store.atomic(lambda tx: [tx.queue.enqueue(j) for j in jobs])
    out["lease: 5 jobs due"] = await timed(
        lambda tx: tx.queue.lease_jobs("bench", now, now + 30, 16)
    )
    await store.atomic(lambda tx: [tx.queue.delete_job(j.job_id) for j in jobs])
    return out


def measure(
    db: str, sizes: Sizes, checks: list[str], label: str
) -> tuple[dict[str, float], dict[str, Any]]:
    """Every measurement on ``db``; the figures, and a run of the history (or {})."""
    out: dict[str, float] = {}
    fired = Fired()
    for mode in steps_bench.MODES:
        with engine(db, mode == "checkpoint", fired) as (client, embedded):
            print(f"{label}: steps, {steps_bench.MODES[mode]}", file=sys.stderr, flush=True)
            steps(client, mode, sizes, out)
            if mode != "checkpoint":
                continue
            print(f"{label}: fan-out, dashboard lists", file=sys.stderr, flush=True)
            fanout(client, fired, sizes, out)
            history = lists(embedded, sizes, out, checks)
    print(f"{label}: leasing", file=sys.stderr, flush=True)
    asyncio.run(leases(db, sizes, out))
    return out, history


# -- one store --------------------------------------------------------------------------------


def prepare(db: str) -> None:
    """Create the schema as the engine does, and register the history's app."""

    async def run() -> None:
        store = store_for(EngineSettings(database_url=db))
        await store.open()
        app, fns = _bulk_fill.app_records(time.time())
        await store.atomic(lambda tx: tx.apps.put_app(app, fns))
        await store.close()

    asyncio.run(run())


@contextlib.contextmanager
def database(store: str, tmp: Path, name: str) -> Iterator[str]:
    with _servers.database(store == "postgres", tmp, name) as db:
        prepare(db)
        yield db


def one_store(store: str, runs: int, sizes: Sizes, tmp: Path) -> dict[str, Any]:
    checks: list[str] = []
    with database(store, tmp, "large_empty") as db:
        empty, _ = measure(db, sizes, checks, f"{store} empty")
    with database(store, tmp, "large_filled") as db:
        fill = _bulk_fill.fill(db, runs, time.time(), SPAN, f"{store} fill")
        got = fill["counts"]
        want = {"runs": runs, "events": runs, "event_runs": runs, "jobs": 0}
        if any(got[k] != v for k, v in want.items()) or not 2 * runs <= got["steps"] <= 3 * runs:
            checks.append(f"after the fill: {got}, want {want} and 2-3 steps a run")
        filled, history = measure(db, sizes, checks, f"{store} filled")
        if not history:
            checks.append(f"GET /v1/runs?function_id={BUSY} lists none of the history's runs")
        print(f"{store}: EXPLAIN", file=sys.stderr, flush=True)
        ghost = ulid(int(time.time() * 1000))
        run_id, event_id = history.get("run_id", ghost), (history.get("event_ids") or [ghost])[0]
        plans = _explain.explain(db, run_id, event_id, BUSY, FAN_EVENT)
    findings = [
        f"{store}: {p['query']} scans {', '.join(p['full_scans'])} in full"
        for p in plans
        if p["full_scans"]
    ]
    return {
        "fill": fill,
        "empty": empty,
        "filled": filled,
        "plans": plans,
        "findings": findings,
        "checks": checks,
    }


# -- report -----------------------------------------------------------------------------------


def report(data: dict[str, Any]) -> str:
    size = f"{data['runs'] / 1e6:g}M" if data["runs"] >= 100_000 else f"{data['runs']:,}"
    lines = [
        f"large tables: the engine's benchmarks on an empty database and with {data['runs']:,} "
        f"ended runs ({', '.join(_bulk_fill.FUNCTIONS)}; 90 days; event, link, ~3 steps each)",
        f"{data['cpus']} CPUs, load average {data['loadavg']} at start, {data['loadavg_end']} "
        f"at the end (python {data['versions']['python']}, stepline "
        f"{data['versions']['stepline']})" + (" QUICK: smoke sizes" if data["quick"] else ""),
    ]
    stores = data["stores"]
    for name, s in stores.items():
        if "skipped" in s:
            lines.append(f"{name}: skipped, {s['skipped']}")
        else:
            f = s["fill"]
            lines.append(
                f"{name} fill: {f['rows']:,} rows in {f['seconds']:.0f} s "
                f"({f['rows_per_s']:,.0f} rows/s); {f['counts']}"
            )
    ran = [n for n, s in stores.items() if "skipped" not in s]
    head = f"{'measure':<52}" + "".join(
        f"{n + ' empty':>16}{f'{n} {size}':>16}{'ratio':>8}" for n in ran
    )
    lines.append(head)
    names = list(dict.fromkeys(k for n in ran for k in stores[n]["empty"]))
    for key in names:
        row = f"{key:<52}"
        for n in ran:
            e, f = stores[n]["empty"].get(key), stores[n]["filled"].get(key)
            fmt = "{:,.0f}" if key.startswith("steps/s") else "{:.2f}"
            row += f"{fmt.format(e) if e is not None else '-':>16}"
            row += f"{fmt.format(f) if f is not None else '-':>16}"
            row += f"{f'{f / e:.2f}x' if e and f is not None else '-':>8}"
        lines.append(row)
    lines.append("ratio = filled / empty (steps/s: below 1 is slower; ms: above 1 is slower)")
    for n in ran:
        lines.append(f"-- {n} plans on the filled database:")
        for p in stores[n]["plans"]:
            flag = f"  FULL SCAN of {', '.join(p['full_scans'])}" if p["full_scans"] else ""
            plan = p["plan"].replace("\n", "\n      ")
            lines.append(f"  {p['query']}:{flag}\n      {plan}")
    findings = data["findings"]
    lines.append(
        "findings: " + ("none (no full scan of runs, steps or events)" if not findings else "")
    )
    lines += [f"  {x}" for x in findings]
    if data["checks"]:
        lines.append("CHECKS FAILED:")
        lines += [f"  {x}" for x in data["checks"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, help="ended runs to fill (default 1,000,000)")
    parser.add_argument(
        "--store", choices=("sqlite", "postgres"), action="append", help="(default both)"
    )
    parser.add_argument("--quick", action="store_true", help="20,000 runs, small samples")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args(argv)
    runs = args.runs or (20_000 if args.quick else 1_000_000)
    if runs < 100:
        parser.error("--runs must be >= 100")
    sizes = QUICK if args.quick else FULL
    data: dict[str, Any] = {
        "benchmark": "large: the benchmarks with many ended runs in the database",
        "runs": runs,
        "quick": args.quick,
        "sizes": sizes.__dict__,
        "cpus": os.cpu_count(),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "versions": {"python": platform.python_version(), "stepline": stepline.__version__},
        "stores": {},
    }
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="large-tables-") as tmp:
        for store in args.store or ["sqlite", "postgres"]:
            problem = _servers.postgres_problem() if store == "postgres" else None
            if problem:
                print(f"large_tables: postgres skipped, {problem}", file=sys.stderr, flush=True)
                data["stores"][store] = {"skipped": problem}
                continue
            data["stores"][store] = one_store(store, runs, sizes, Path(tmp))
    data["seconds"] = time.monotonic() - began
    data["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    ran = [s for s in data["stores"].values() if "skipped" not in s]
    data["findings"] = [x for s in ran for x in s["findings"]]
    data["checks"] = [x for s in ran for x in s["checks"]]
    print(json.dumps(data, indent=2) if args.json else report(data))
    return 1 if data["checks"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
