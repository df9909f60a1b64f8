"""A bounded burst against the engine: every run accounted for, memory bounded.

One measurement per store: one engine node on SQLite, then two nodes sharing one
Postgres schema. Each node is a whole engine process (``Engine`` + its API under
uvicorn, worker, heartbeat) serving its own in-process copy of the app, as in
``engine_nodes.py``. The burst (defaults):

* 10,000 events in all, sent in batches of ``--batch`` over the nodes' event APIs:
* 1,000 ``load/start`` events, each starting a ``patient`` run: a step, a 1 s sleep,
  then a wait for its own ``load/release`` event (matched on ``data.i``), then a step.
  All 1,000 are in flight at once: the burst waits until every one of them waits;
* 8,000 ``load/tick`` events, each starting a ``quick`` run (two steps), sent meanwhile;
* 1,000 ``load/release`` events, sent once every patient run waits.

It ends when all 9,000 runs are Completed (counted in the database: none missing, none
failed, none twice, one ``inngest/function.finished`` each), and reports the duration,
runs/s, the moments the phases ended and each node's peak RSS (``VmHWM``). It exits 1 if
a run is missing or failed, or a node's peak RSS is above ``--max-rss-mb``.

Run: ``.venv/bin/python bench/load_bench.py [--quick] [--stores sqlite,postgres] [--json]``
(``--quick``: 1,000 events, 100 concurrent waiting runs). Postgres from
``STEPLINE_BENCH_POSTGRES_URL``, else ``STEPLINE_TEST_POSTGRES_URL``, else
``postgresql://postgres@127.0.0.1:5432/test``; without one the Postgres measurement is
skipped and says why.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import _servers
import httpx

import stepline

POSTGRES_URL = _servers.POSTGRES_URL
APP_ID = "load"
SLEEP = "1s"


# -- a node (this file, run with --node) ---------------------------------------------------


def build_app() -> tuple[stepline.Client, list[stepline.Function]]:
    client = stepline.Client(app_id=APP_ID, is_production=False)

    @client.function(id="quick", trigger=stepline.TriggerEvent(event="load/tick"))
    async def quick(ctx: stepline.Context) -> int:
        i = int(ctx.event.data["i"])
        doubled = await ctx.step.run("double", lambda: i * 2)
        return int(await ctx.step.run("plus", lambda: doubled + 1))

    @client.function(id="patient", trigger=stepline.TriggerEvent(event="load/start"))
    async def patient(ctx: stepline.Context) -> int:
        i = int(ctx.event.data["i"])
        await ctx.step.run("before", lambda: i)
        await ctx.step.sleep("nap", SLEEP)
        released = await ctx.step.wait_for_event(
            "release", event="load/release", timeout="10m", if_exp="async.data.i == event.data.i"
        )
        if released is None:
            raise RuntimeError(f"run {i} was never released")
        return int(await ctx.step.run("after", lambda: i + int(released.data["by"])))

    return client, [quick, patient]


def serve_node(port: int, db: str) -> None:
    _servers.serve_node(port, db, build_app)


# -- the driver ----------------------------------------------------------------------------


@contextlib.contextmanager
def nodes(count: int, db: str, logdir: Path) -> Iterator[list[tuple[str, int]]]:
    """``count`` node processes on ``db``; yields (base URL, pid) once all answer."""
    procs: list[subprocess.Popen[bytes]] = []
    env = _servers.child_env()
    try:
        for index in range(count):
            port = _servers.free_port()
            with (logdir / f"node{index + 1}.log").open("ab") as out:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, __file__, "--node", str(port), db],
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        env=env,
                    )
                )
            _healthy(f"http://127.0.0.1:{port}", procs[-1], logdir / f"node{index + 1}.log")
        yield [(_base(p), p.pid) for p in procs]
    finally:
        _servers.stop_processes(procs, timeout=30)


def _base(proc: subprocess.Popen[bytes]) -> str:
    return f"http://127.0.0.1:{proc.args[3]}"  # type: ignore[index]


def _healthy(base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    _servers.wait_healthy(base, proc, log, who="load_bench", timeout=60)


def peak_rss_mb(pid: int) -> float:
    """The peak resident set size of a live process (Linux ``VmHWM``), in MiB."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Counter:
    """Counts rows in the store the nodes share (SQLite file or Postgres schema)."""

    def __init__(self, db: str) -> None:
        self.db = db
        if db.startswith("postgres"):
            import psycopg

            self._pg: Any = psycopg.connect(db, autocommit=True)
        else:
            self._sqlite = sqlite3.connect(db, timeout=30)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        if self.db.startswith("postgres"):
            return list(self._pg.execute(sql).fetchall())
        return list(self._sqlite.execute(sql).fetchall())

    def statuses(self) -> dict[str, int]:
        return {
            str(s): int(n) for s, n in self.query("SELECT status, COUNT(*) FROM runs GROUP BY 1")
        }

    def waiting(self) -> int:
        rows = self.query("SELECT COUNT(*) FROM pauses WHERE kind = 'wait'")
        return int(rows[0][0])

    def close(self) -> None:
        (self._pg if self.db.startswith("postgres") else self._sqlite).close()


def _until(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``check`` every 50 ms; returns when it held (perf_counter)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            sys.exit(f"load_bench: timed out waiting for {what}")
        time.sleep(0.05)
    return time.perf_counter()


@dataclass
class Result:
    store: str
    nodes: int
    events: int
    runs: int
    concurrent: int
    seconds: float
    runs_per_s: float
    events_per_s_sent: float
    all_waiting_at: float
    released_at: float
    peak_in_flight: int
    statuses: dict[str, int]
    finished_events: int
    peak_rss_mb: list[float] = field(default_factory=list)


def _send(client: httpx.Client, bases: list[str], events: list[dict[str, Any]], batch: int) -> None:
    for index, start in enumerate(range(0, len(events), batch)):
        base = bases[index % len(bases)]
        answer = client.post(f"{base}/e/load", json=events[start : start + batch], timeout=120)
        if answer.status_code != 200:
            sys.exit(f"load_bench: sending failed: {answer.status_code} {answer.text[:300]}")


def measure(store: str, db: str, count: int, total: int, concurrent: int, batch: int) -> Result:
    ticks = total - 2 * concurrent
    runs = ticks + concurrent
    with tempfile.TemporaryDirectory(prefix="load-") as tmp, nodes(count, db, Path(tmp)) as members:
        bases = [b for b, _ in members]
        counter = Counter(db)
        try:
            starts = [{"name": "load/start", "data": {"i": i}} for i in range(concurrent)]
            quick = [{"name": "load/tick", "data": {"i": i}} for i in range(ticks)]
            # the patient runs first, then the ticks mixed with nothing else
            with httpx.Client() as client:
                began = time.perf_counter()
                _send(client, bases, starts + quick, batch)
                sent = time.perf_counter()
                peak = 0

                def all_waiting() -> bool:
                    nonlocal peak
                    peak = max(peak, counter.waiting())
                    return peak >= concurrent

                waiting_at = _until(all_waiting, 1800, f"{concurrent} runs to wait")
                releases = [
                    {"name": "load/release", "data": {"i": i, "by": 1}} for i in range(concurrent)
                ]
                _send(client, bases, releases, batch)
                released = time.perf_counter()

                def done() -> bool:
                    states = counter.statuses()
                    if states.get("Failed") or states.get("Cancelled"):
                        sys.exit(f"load_bench: runs ended badly: {states}")
                    return states.get("Completed", 0) >= runs

                ended = _until(done, 1800, f"{runs} runs to complete")
            rss = [round(peak_rss_mb(pid), 1) for _, pid in members]
            statuses = counter.statuses()
            finished = counter.query(
                "SELECT COUNT(*) FROM events WHERE name = 'inngest/function.finished'"
            )[0][0]
            outcome = counter.query("SELECT function_id, COUNT(*) FROM runs GROUP BY 1")
        finally:
            counter.close()
    per_function = {str(f): int(n) for f, n in outcome}
    expected = {f"{APP_ID}-quick": ticks, f"{APP_ID}-patient": concurrent}
    if statuses != {"Completed": runs} or per_function != expected or int(finished) != runs:
        sys.exit(
            f"load_bench: runs not accounted for: {statuses}, {per_function}, "
            f"{finished} finished events (want {runs})"
        )
    seconds = ended - began
    return Result(
        store=store,
        nodes=count,
        events=total,
        runs=runs,
        concurrent=concurrent,
        seconds=round(seconds, 2),
        runs_per_s=round(runs / seconds, 1),
        events_per_s_sent=round((concurrent + ticks) / (sent - began), 1),
        all_waiting_at=round(waiting_at - began, 2),
        released_at=round(released - began, 2),
        peak_in_flight=peak,
        statuses=statuses,
        finished_events=int(finished),
        peak_rss_mb=rss,
    )


def fresh_schema() -> contextlib.AbstractContextManager[str]:
    return _servers.fresh_schema("load")


def report(results: list[Result], skipped: dict[str, str], meta: dict[str, Any]) -> str:
    lines = [
        f"load: {meta['events']:,} events, {meta['concurrent']:,} runs waiting at once "
        f"(step, {SLEEP} sleep, wait for an event, step) and "
        f"{meta['events'] - 2 * meta['concurrent']:,} quick runs (two steps); "
        f"{meta['cpus']} CPUs, python {meta['python']}, stepline {meta['stepline']}, "
        f"load average {' '.join(map(str, meta['load_average_at_end']))} at the end",
        f"{'store':<10}{'nodes':>6}{'runs':>8}{'seconds':>9}{'runs/s':>9}{'sent ev/s':>11}"
        f"{'all waiting':>13}{'peak RSS MiB':>16}",
    ]
    for r in results:
        lines.append(
            f"{r.store:<10}{r.nodes:>6}{r.runs:>8,}{r.seconds:>9.1f}{r.runs_per_s:>9.1f}"
            f"{r.events_per_s_sent:>11,.0f}{f'{r.all_waiting_at:.1f} s':>13}"
            f"{' / '.join(f'{m:.0f}' for m in r.peak_rss_mb):>16}"
        )
    for store, why in skipped.items():
        lines.append(f"{store:<10}skipped: {why}")
    lines.append(
        "every run completed once (counted in the store, one function.finished each); "
        "seconds: first event sent to last run completed."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["--node"]:
        serve_node(int(args_in[1]), args_in[2])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000, help="events in all")
    parser.add_argument("--concurrent", type=int, default=1_000, help="runs waiting at once")
    parser.add_argument("--batch", type=int, default=200, help="events per request")
    parser.add_argument("--stores", default="sqlite,postgres", help="sqlite, postgres or both")
    parser.add_argument("--pg-nodes", type=int, default=2, help="engine nodes on Postgres")
    parser.add_argument("--max-rss-mb", type=float, default=1024.0, help="fail above this")
    parser.add_argument("--quick", action="store_true", help="1,000 events, 100 waiting")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args(args_in)
    if args.quick:
        args.events, args.concurrent = 1_000, 100
    if args.concurrent < 1 or args.events < 2 * args.concurrent:
        parser.error("want --concurrent >= 1 and --events >= 2 x --concurrent")
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    results: list[Result] = []
    skipped: dict[str, str] = {}
    for store in stores:
        print(f"load_bench: {store}...", file=sys.stderr, flush=True)
        if store == "sqlite":
            with tempfile.TemporaryDirectory(prefix="load-db-") as tmp:
                db = str(Path(tmp) / "engine.db")
                results.append(measure(store, db, 1, args.events, args.concurrent, args.batch))
        elif store == "postgres":
            try:
                schema = fresh_schema()
                db = schema.__enter__()
            except Exception as exc:  # no server: say so and go on
                skipped[store] = f"no Postgres at {POSTGRES_URL}: {exc}"
                continue
            try:
                results.append(
                    measure(store, db, args.pg_nodes, args.events, args.concurrent, args.batch)
                )
            finally:
                schema.__exit__(None, None, None)
        else:
            parser.error(f"unknown store {store!r}")
        print(f"load_bench: {store}: {asdict(results[-1])}", file=sys.stderr, flush=True)
    meta: dict[str, Any] = {
        "benchmark": "load burst",
        "events": args.events,
        "concurrent": args.concurrent,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "stepline": stepline.__version__,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    if args.json:
        print(json.dumps({**meta, "results": [asdict(r) for r in results], "skipped": skipped}))
    else:
        print(report(results, skipped, meta))
    heavy = [r for r in results if max(r.peak_rss_mb, default=0.0) > args.max_rss_mb]
    if heavy:
        print(f"load_bench: peak RSS above {args.max_rss_mb} MiB: {heavy}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
