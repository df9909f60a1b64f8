"""DBOS's side of the step-throughput benchmark: one measurement, JSON on stdout.

Runs inside the peers' venv (``bench/.peers-venv``, see ``_peers.py``), never stepline's:
``steps_bench.py`` starts it once per measurement, so every measurement gets a fresh
process and a fresh SQLite file, as the stepline side gets a fresh engine and file.

The workflow is the one stepline runs: ``STEPS`` trivial steps (``@DBOS.step()``), each
returning ``{"i": i}``, in a ``@DBOS.workflow()``. DBOS records each step's output in its
system database before the next step starts, and the workflow's status at its start and
end, which is stepline's step-by-step guarantee.

Concurrency (``--how``):

* ``seq``: call the workflow function directly, one run after another.
* ``threads``: ``--inflight`` threads, each calling the workflow function directly.
* ``start``: ``--inflight`` threads, each ``DBOS.start_workflow(...).get_result()``
  (the workflow runs on DBOS's executor pool, the thread waits for its result).

SQLite (``--journal``): ``default`` is what ``DBOS(config={"system_database_url":
"sqlite:///..."})`` gives you: a rollback journal with ``synchronous=FULL`` (several
fsyncs per commit). ``wal`` matches stepline's engine: ``journal_mode=WAL`` with
``synchronous=NORMAL`` (durable across a process crash; the WAL is fsynced at
checkpoints, not at each commit).

Postgres (``--postgres URL``, from ``pg_steps_bench.py``): the URL is DBOS's system
database (a database of its own, created and dropped by the bench), DBOS's defaults
otherwise (its pool of 20 with ``pool_pre_ping``). The result then also has what
``_pgcount`` counted at the driver in the timed window (statements, round trips, commits,
rows written) and the CPU of DBOS's Postgres backends (``/proc``, the server is local).

Run (normally from ``steps_bench.py``):
``bench/.peers-venv/bin/python bench/dbos_peer.py --db /tmp/x.db --runs 200 --how seq``
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.metadata
import json
import logging
import os
import sqlite3
import sys
import time
from typing import Any

STEPS = 10
HOWS = ("seq", "threads", "start")


def configure_sqlite(path: str, journal: str) -> None:
    """Put the file in WAL mode (persistent) and every connection on synchronous=NORMAL."""
    if journal != "wal":
        return
    import sqlalchemy
    from sqlalchemy import event

    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode = WAL")

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA synchronous = NORMAL")

    # A class-level listener reaches the engine DBOS creates for itself.
    event.listen(sqlalchemy.engine.Engine, "connect", on_connect)


def measure(
    db: str, runs: int, warmup: int, inflight: int, how: str, journal: str, postgres: str = ""
) -> dict[str, Any]:
    if postgres:
        import _pgcount
        import psycopg

        _pgcount.install()
        admin = psycopg.connect(postgres, autocommit=True)
        database = postgres.rsplit("/", 1)[1].split("?", maxsplit=1)[0]
        backends = _pgcount.BackendCpu(admin, datname=database)
    else:
        for suffix in ("", "-wal", "-shm", "-journal"):
            if os.path.exists(db + suffix):
                os.remove(db + suffix)
        configure_sqlite(db, journal)
    logging.getLogger("dbos").setLevel(logging.WARNING)

    from dbos import DBOS

    DBOS(
        config={
            "name": "stepline-bench",
            "system_database_url": postgres or f"sqlite:///{db}",
            "log_level": "WARNING",
        }
    )

    @DBOS.step()
    def step(i: int) -> dict[str, int]:
        return {"i": i}

    @DBOS.workflow()
    def ten(k: int) -> int:
        for i in range(STEPS):
            step(i)
        return k

    DBOS.launch()
    try:
        if how == "start":

            def one(k: int) -> int:
                return DBOS.start_workflow(ten, k).get_result()
        else:
            one = ten

        def drive(first: int, count: int) -> tuple[float, float]:
            keys = range(first, first + count)
            cpu = time.process_time()
            start = time.perf_counter()
            if how == "seq":
                got = [one(k) for k in keys]
            else:
                with concurrent.futures.ThreadPoolExecutor(inflight) as pool:
                    got = list(pool.map(one, keys))
            elapsed = time.perf_counter() - start
            cpu = time.process_time() - cpu
            if got != list(keys):
                sys.exit(f"dbos_peer: wrong results: {got[:5]}...")
            return elapsed, cpu

        drive(0, warmup)
        extra: dict[str, Any] = {}
        if postgres:
            backends.start()
            counted = _pgcount.snapshot()
        seconds, cpu_seconds = drive(warmup, runs)
        if postgres:
            extra["counts"] = _pgcount.delta(counted, _pgcount.snapshot())
            extra["pg_cpu_seconds"] = backends.stop()
    finally:
        DBOS.destroy()
    if postgres:
        with admin:
            row = admin.execute("SELECT COUNT(*) FROM dbos.operation_outputs").fetchone()
        recorded, journal_mode = row[0] if row else 0, "postgres"
    else:
        with sqlite3.connect(db) as conn:
            recorded = conn.execute("SELECT COUNT(*) FROM operation_outputs").fetchone()[0]
            journal_mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    if recorded != (warmup + runs) * STEPS:
        sys.exit(f"dbos_peer: {recorded} step outputs recorded, want {(warmup + runs) * STEPS}")
    return {
        "runs": runs,
        "steps": runs * STEPS,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "runs_per_s": runs / seconds,
        "steps_per_s": runs * STEPS / seconds,
        "inflight": 1 if how == "seq" else inflight,
        "how": how,
        "journal": journal,
        "journal_mode": journal_mode,
        "recorded_steps": recorded,
        "dbos": importlib.metadata.version("dbos"),
        **extra,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="", help="SQLite file (replaced)")
    parser.add_argument("--postgres", default="", help="DBOS's system database URL instead")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs first")
    parser.add_argument("--inflight", type=int, default=8)
    parser.add_argument("--how", choices=HOWS, default="seq")
    parser.add_argument("--journal", choices=("default", "wal"), default="default")
    args = parser.parse_args(argv)
    if not (args.db or args.postgres):
        parser.error("--db or --postgres is required")
    result = measure(
        args.db, args.runs, args.warmup, args.inflight, args.how, args.journal, args.postgres
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
