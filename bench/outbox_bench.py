"""The transactional outbox: rows relayed per second, and commit-to-first-step latency.

The engine is the real command line (``python -m stepline.engine dev``, SQLite on disk); the
app is served by uvicorn on a thread of the bench process, so its first step and the writer
read the same clock. The relay is the real ``stepline relay`` process, reading the APP's
database, which is a SQLite file or a Postgres schema (skipped, and said so, without one).

Two measures per database:

* ``throughput``: ``--rows`` event rows (an event no function listens to: the relay and the
  event API alone) committed while no relay runs; then the relay is started and the time
  from its first delivered row to an empty backlog gives rows/s.
* ``latency``: with the relay running, one ``stepline.outbox.start`` at a time is committed
  and the clock read right after the commit; the function's first step reads it again.
  On SQLite the relay polls (``--poll-interval``, 0.05 s here); on Postgres the writer's
  NOTIFY wakes it (its poll is left at 1 s).

Run: ``.venv/bin/python bench/outbox_bench.py [--rows 2000] [--samples 100] [--quick] [--json]``
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import platform
import random
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import _servers

import stepline
import stepline.asgi
import stepline.outbox

APP_ID = "bench-outbox"
FUNCTION = "first"
NOBODY = "bench/outbox.nobody"  # no function listens: relay + event API alone
SQLITE_POLL = "0.05"


class Marks:
    """Sample number -> ``perf_counter_ns`` at its first step's start."""

    def __init__(self) -> None:
        self.times: dict[int, int] = {}
        self.events: dict[int, threading.Event] = {}
        self.lock = threading.Lock()

    def expect(self, seq: int) -> threading.Event:
        with self.lock:
            event = self.events[seq] = threading.Event()
        return event

    def mark(self, seq: int, now: int) -> None:
        with self.lock:
            if seq in self.times:
                return
            self.times[seq] = now
            event = self.events.get(seq)
        if event is not None:
            event.set()


def probe_function(client: stepline.Client, marks: Marks) -> stepline.Function:
    """The started function: its first step reads the clock."""

    @client.function(id=FUNCTION, trigger=stepline.TriggerEvent(event="bench/outbox.never"))
    async def first(ctx: stepline.Context) -> int:
        seq = int(ctx.event.data["seq"])

        def started() -> int:
            marks.mark(seq, time.perf_counter_ns())
            return seq

        await ctx.step.run("first", started)
        return seq

    return first


def probe_app(engine_url: str, marks: Marks) -> tuple[stepline.Client, Any]:
    client = stepline.Client(
        APP_ID,
        is_production=False,
        api_base_url=engine_url,
        event_api_base_url=engine_url,
        environ={},
    )
    return client, stepline.asgi.serve(client, [probe_function(client, marks)])


@contextlib.contextmanager
def embedded(db: AppDb, marks: Marks, tmp: Path) -> Iterator[None]:
    """An embedded engine relaying ``db``'s outbox itself (``relay_outbox``), no HTTP hop."""
    from stepline.embedded import EmbeddedEngine

    client = stepline.Client(f"{APP_ID}-embedded", is_production=False, environ={})
    poll = float(SQLITE_POLL) if db.dialect == "sqlite" else 1.0
    engine = EmbeddedEngine(
        client,
        [probe_function(client, marks)],
        database=str(tmp / f"embedded-{db.dialect}.db"),
        relay_outbox=db.url,
        poll_interval=poll,
    )
    engine.start()
    try:
        yield
    finally:
        engine.stop()
        client.close()


# -- the app's database ------------------------------------------------------------------------


class AppDb:
    def __init__(self, dialect: str, url: str) -> None:
        self.dialect, self.url = dialect, url

    def connect(self) -> Any:
        if self.dialect == "sqlite":
            return sqlite3.connect(self.url, timeout=30)
        import psycopg

        return psycopg.connect(self.url)

    def create(self) -> None:
        with contextlib.closing(self.connect()) as conn:
            for statement in stepline.outbox.ddl(self.dialect):
                conn.execute(statement)
            if self.dialect == "sqlite":
                conn.execute("PRAGMA journal_mode=WAL")
            conn.commit()

    def last_id(self) -> int:
        with contextlib.closing(self.connect()) as conn:
            row = conn.execute("SELECT COALESCE(MAX(id), 0) FROM stepline_outbox").fetchone()
            conn.rollback()
        return int(row[0])

    def delivered_at(self, after: int) -> list[float]:
        mark = "?" if self.dialect == "sqlite" else "%s"
        with contextlib.closing(self.connect()) as conn:
            rows = conn.execute(
                "SELECT delivered_at FROM stepline_outbox WHERE delivered_at IS NOT NULL "
                f"AND id > {mark} ORDER BY delivered_at",
                (after,),
            ).fetchall()
            conn.rollback()
        return [float(r[0]) for r in rows]

    def pending(self) -> int:
        with contextlib.closing(self.connect()) as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM stepline_outbox WHERE delivered_at IS NULL"
            ).fetchone()
            conn.rollback()
        return int(row[0])


@contextlib.contextmanager
def app_databases(tmp: Path, postgres: bool) -> Iterator[list[AppDb]]:
    dbs = [AppDb("sqlite", str(tmp / "app.db"))]
    with contextlib.ExitStack() as stack:
        if postgres:
            dbs.append(AppDb("postgresql", stack.enter_context(_servers.fresh_schema("outbox"))))
        yield dbs


# -- the measures --------------------------------------------------------------------------------


def relay(db: AppDb, engine_url: str) -> tuple[str, list[str], str]:
    """The ``stepline relay`` process, healthy once its ``/metrics`` answers."""
    poll = SQLITE_POLL if db.dialect == "sqlite" else "1"
    port = _servers.free_port()
    argv = [
        sys.executable, "-m", "stepline.engine", "relay", "--db", db.url, "--engine", engine_url,
        "--poll-interval", poll, "--metrics-port", str(port),
    ]  # fmt: skip
    return "relay", argv, f"http://127.0.0.1:{port}/metrics"


Relaying = Callable[[], contextlib.AbstractContextManager[Any]]


def throughput(db: AppDb, client: stepline.Client, relaying: Relaying, rows: int) -> float:
    after = db.last_id()
    with contextlib.closing(db.connect()) as conn:
        for n in range(rows):
            stepline.outbox.send(conn, client, stepline.Event(name=NOBODY, data={"n": n}))
            if n % 100 == 99:
                conn.commit()
        conn.commit()
    with relaying():
        deadline = time.monotonic() + 600
        while db.pending() and time.monotonic() < deadline:
            time.sleep(0.05)
    if db.pending():
        sys.exit(f"outbox_bench: rows left undelivered on {db.dialect}")
    # each batch is marked with one delivered_at: from the first batch's mark to the last's
    marks = db.delivered_at(after)
    first = marks.count(marks[0])
    return (len(marks) - first) / (marks[-1] - marks[0]) if marks[-1] > marks[0] else math.inf


def latency(
    db: AppDb, client: stepline.Client, marks: Marks, relaying: Relaying, samples: int
) -> list[float]:
    found: list[float] = []
    seq0 = 1_000_000 * (1 + len(marks.events))
    with relaying():
        time.sleep(0.5)  # the relay's LISTEN connection opens as it starts
        with contextlib.closing(db.connect()) as conn:
            for i in range(samples):
                seq = seq0 + i
                arrived = marks.expect(seq)
                stepline.outbox.start(conn, client, FUNCTION, {"seq": seq})
                conn.commit()
                committed = time.perf_counter_ns()
                if not arrived.wait(30):
                    sys.exit(f"outbox_bench: sample {seq} never reached its first step")
                found.append((marks.times[seq] - committed) / 1e6)
                time.sleep(random.uniform(0.01, 0.03))
    return found


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def run(rows: int, samples: int, postgres: bool) -> dict[str, Any]:
    marks = Marks()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="outbox-bench-") as name:
        tmp = Path(name)
        port = _servers.free_port()
        engine_url = f"http://127.0.0.1:{port}"
        command = _servers.cli_engine_command(port, str(tmp / "engine.db"))
        client, app = probe_app(engine_url, marks)
        # writes starts of the embedded engine's app (a writer needs only the app id)
        own_writer = stepline.Client(f"{APP_ID}-embedded", is_production=False, environ={})
        with (
            _servers.processes([("engine", command, f"{engine_url}/health")], tmp),
            _servers.ServerThread(app, "outbox-app") as served,
            app_databases(tmp, postgres) as dbs,
        ):
            _servers.register(served.url + _servers.SERVE_PATH)
            for db in dbs:
                db.create()
                process = functools.partial(_servers.processes, [relay(db, engine_url)], tmp)
                in_engine = functools.partial(embedded, db, marks, tmp)
                setups = (("process", process, client), ("embedded", in_engine, own_writer))
                for how, relaying, writer in setups:
                    rate = throughput(db, writer, relaying, rows)
                    lat = latency(db, writer, marks, relaying, samples)
                    p50, p99 = percentile(lat, 50), percentile(lat, 99)
                    print(
                        f"{db.dialect} {how}: {rate:,.0f} rows/s, p50 {p50:.1f} ms, "
                        f"p99 {p99:.1f} ms",
                        file=sys.stderr,
                        flush=True,
                    )
                    results[f"{db.dialect}/{how}"] = {
                        "rows_per_s": rate,
                        "p50_ms": p50,
                        "p99_ms": p99,
                        "latencies_ms": [round(x, 2) for x in lat],
                    }
    return results


def table_rows(results: dict[str, Any]) -> list[list[str]]:
    how = {
        "sqlite": f"SQLite ({float(SQLITE_POLL) * 1000:.0f} ms poll)",
        "postgresql": "Postgres (NOTIFY)",
        "process": "relay process",
        "embedded": "embedded engine",
    }
    out = []
    for key, r in results.items():
        dialect, setup = key.split("/")
        where = f"{how[setup]}, {how[dialect]}"
        out.append([f"outbox rows/s, {where}", f"{r['rows_per_s']:,.0f}", "", "", ""])
        latency = f"{r['p50_ms']:.1f} / {r['p99_ms']:.1f}"
        out.append([f"outbox commit->first step p50 / p99 ms, {where}", latency, "", "", ""])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000, help="rows in the backlog (2000)")
    parser.add_argument("--samples", type=int, default=100, help="latency samples (100)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    rows, samples = (300, 10) if args.quick else (args.rows, args.samples)
    problem = _servers.postgres_problem()
    if problem is not None:
        print(f"outbox_bench: Postgres skipped: {problem}", file=sys.stderr)
    results = run(rows, samples, postgres=problem is None)
    meta = {"python": platform.python_version(), "rows": rows, "samples": samples}
    table = table_rows(results)
    if args.json:
        print(json.dumps({**meta, "results": results, "rows_table": table}, indent=2))
    else:
        for label, value, *_ in table:
            print(f"{label:<60}  {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
