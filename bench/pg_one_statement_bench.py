"""What a step-by-step step costs the database on Postgres, without the engine's Python:
today's transaction against the same writes as one fenced statement.

A middle step of a step-by-step run writes two rows: the step (its upsert; a trigger
counts it in ``runs.steps_rev``) and the call's job, moved to the run's next call and
leased. Today that is one transaction of five round trips:

* ``BEGIN``;
* the call's job joined with its run, locked (``SqlTx.get_call``: the lease's fence, and
  the run the answer is applied to);
* the job moved (``REPLACE_JOB``), the step upserted (``UPSERT_STEP``);
* ``COMMIT``.

The alternative measured here is one statement in autocommit: the writes as
data-modifying ``WITH`` clauses that each take their rows from a fence, the job joined
with its run, locked, and found unchanged since the transaction that last wrote them.
That transaction is the fence's own: a row's ``xmin`` names the transaction that wrote
its current version, so "the job and the run both last written by the transaction this
node committed for the previous step" says nobody (a cancel, a wait's end, another
node taking the lease over) has written either since, and the node may apply the answer
to the run as it left it, without reading it. No function may be paused, as the read
checks today. The statement answers whether the fence held (else: the transaction, as
today) and its own transaction's id, the next step's fence.

Both shapes run alternately (``--rounds``) on one connection of the bench's process,
against a schema the engine created; each round reports, per step, the wall time, this
process's CPU (psycopg and libpq) and the backend's (``/proc``: the server must be
local).

Run: ``.venv/bin/python bench/pg_one_statement_bench.py [--steps 2000] [--rounds 2] [--json]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import _servers
import psycopg

import stepline
from stepline.embedded import EmbeddedEngine
from stepline.engine._store import queue as queue_sql
from stepline.engine._store import sql as store_sql


def _pg(text: str) -> str:
    return text.replace("?", "%s")


READ = _pg(f"{store_sql.CALL_SQL} FOR UPDATE")
MOVE = _pg(queue_sql.REPLACE_JOB)
STEP = _pg(store_sql.UPSERT_STEP)
_STEP_COLUMNS = "run_id, step_id, name, op, status, mode, memo, attempts, started_at, " + (
    "ended_at, seq, error, wait"
)
_JOB_COLUMNS = "job_id, kind, available_at, run_id, step_id, attempt, payload, " + (
    "lease_owner, lease_expires, lease_epoch, queued_at"
)
_STEP_SET = STEP.split("DO UPDATE SET", 1)[1]
ONE = (
    "WITH f AS (SELECT j.run_id FROM jobs j JOIN runs r ON r.run_id = j.run_id "
    "WHERE j.job_id = %s AND j.xmin::text = %s AND r.xmin::text = %s AND NOT EXISTS "
    "(SELECT 1 FROM function_controls WHERE paused_at IS NOT NULL) FOR UPDATE), "
    f"s AS (INSERT INTO steps ({_STEP_COLUMNS}) SELECT %s, %s, %s, %s, %s, %s, %s, %s, "
    "%s, %s, %s, %s::text, %s::text FROM f "
    f"ON CONFLICT (run_id, step_id) DO UPDATE SET{_STEP_SET}), "
    "gone AS (DELETE FROM jobs WHERE job_id = %s AND EXISTS (SELECT 1 FROM f)), "
    f"moved AS (INSERT INTO jobs ({_JOB_COLUMNS}) SELECT %s, %s, %s, %s, %s, %s, %s, %s, "
    "%s, %s, %s FROM f ON CONFLICT DO NOTHING) "
    "SELECT (SELECT count(*) FROM f), pg_current_xact_id()::text"
)
RUN = "R"


def backend_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a local process."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def step_args(i: int) -> tuple[Any, ...]:
    memo = '{"data":{"i":1}}'
    return (RUN, f"s{i:08d}", f"s{i}", "StepRun", "Completed", "wait", memo, 1, 1.0, 1.0, i)


def move_args(i: int) -> tuple[Any, ...]:
    """The call ``i``'s job replaced by the call ``i + 1``'s, leased (``REPLACE_JOB``)."""
    nxt = (f"{RUN}:{i + 1}", "execute", 2.0, RUN, "step", 0, "{}", "me", 2.0, 1, 1.0)
    return (f"{RUN}:{i}", *nxt)


class Shapes:
    """The two ways to write step ``i``, on one autocommit connection."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        #: the transaction that last wrote the job and the run (its 32-bit ``xmin``)
        self.xmin = ""

    def read_fence(self, i: int) -> None:
        """Take the fence from the rows (after a round of transactions)."""
        row = self.conn.execute(
            "SELECT j.xmin::text, r.xmin::text FROM jobs j JOIN runs r ON r.run_id = j.run_id "
            "WHERE j.job_id = %s",
            (f"{RUN}:{i}",),
        ).fetchone()
        if row is None or row[0] != row[1]:
            raise SystemExit(f"pg_one_statement_bench: the call and its run read {row}")
        self.xmin = str(row[0])

    def transaction(self, i: int) -> None:
        conn = self.conn
        with conn.transaction():
            if conn.execute(READ, (f"{RUN}:{i}",)).fetchone() is None:
                raise SystemExit(f"pg_one_statement_bench: the call {RUN}:{i} is gone")
            conn.execute(MOVE, move_args(i))
            conn.execute(STEP, (*step_args(i), None, None))

    def one_statement(self, i: int) -> None:
        xmin, moved = self.xmin, move_args(i)
        args = (f"{RUN}:{i}", xmin, xmin, *step_args(i), None, None, moved[0], *moved[1:])
        row = self.conn.execute(ONE, args).fetchone()
        if row is None or row[0] != 1:
            raise SystemExit("pg_one_statement_bench: the fence refused its own last write")
        self.xmin = str(int(row[1]) & 0xFFFFFFFF)  # xid8 to the xid a row's xmin holds


def seed(url: str) -> None:
    """The engine's schema in ``url`` (one run through an embedded engine), and a run
    with its first call leased."""
    client = stepline.Client(_servers.APP_ID, is_production=False, environ={})
    fn = _servers.ten_steps(client)
    engine = EmbeddedEngine(client, [fn], database=url, checkpointing=False)
    engine.start()
    try:
        client.execute_sync(fn, {"k": 1}, timeout=60)
    finally:
        engine.stop()
        client.close()
    with psycopg.connect(url) as conn:  # one transaction: the fence's first xmin
        conn.execute(
            "INSERT INTO runs (run_id, function_id, app_id, status, events, event_ids, "
            "created_at, stack, force_plan, request_version) VALUES "
            "(%s, 'bench-ten', 'bench', 'Running', '[]', '[]', 0, '[]', 0, 2)",
            (RUN,),
        )
        conn.execute(
            f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES (%s, 'execute', 0, %s, 'step', 0, "
            "'{}', 'me', 0, 1, 0)",
            (f"{RUN}:0", RUN),
        )


def measure(steps: int, rounds: int) -> dict[str, list[dict[str, float]]]:
    results: dict[str, list[dict[str, float]]] = {}
    with _servers.fresh_schema("pgone") as url:
        seed(url)
        with psycopg.connect(url, autocommit=True) as conn:
            shapes = Shapes(conn)
            pid = conn.info.backend_pid
            plan: list[tuple[str, Callable[[int], None]]] = [
                ("transaction, 5 round trips", shapes.transaction),
                ("one statement, fenced", shapes.one_statement),
            ]
            i = 0
            for _ in range(rounds):
                for name, write in plan:
                    shapes.read_fence(i)
                    for _ in range(steps // 10):  # warm-up: plans prepared
                        write(i)
                        i += 1
                    cpu, backend, began = time.process_time(), backend_cpu(pid), time.perf_counter()
                    for _ in range(steps):
                        write(i)
                        i += 1
                    wall = time.perf_counter() - began
                    sample = {
                        "wall_ms": wall / steps * 1e3,
                        "client_cpu_ms": (time.process_time() - cpu) / steps * 1e3,
                        "backend_cpu_ms": (backend_cpu(pid) - backend) / steps * 1e3,
                    }
                    results.setdefault(name, []).append(sample)
            # every step written, each exactly once
            row = conn.execute("SELECT count(*) FROM steps WHERE run_id = %s", (RUN,)).fetchone()
            if row is None or row[0] != i:
                raise SystemExit(f"pg_one_statement_bench: {row} steps, want {i}")
    return results


def report(results: dict[str, list[dict[str, float]]]) -> str:
    lines = [
        f"{'per step (median of rounds)':32s} {'wall ms':>8s} {'client CPU':>11s} "
        f"{'backend CPU':>12s} {'CPU':>7s}"
    ]
    for name, samples in results.items():
        m = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
        cpu = m["client_cpu_ms"] + m["backend_cpu_ms"]
        lines.append(
            f"{name:32s} {m['wall_ms']:8.3f} {m['client_cpu_ms']:11.3f} "
            f"{m['backend_cpu_ms']:12.3f} {cpu:7.3f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--steps", type=int, default=2000, help="steps a round, each shape")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = measure(args.steps, args.rounds)
    print(json.dumps(results, indent=1) if args.json else report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
