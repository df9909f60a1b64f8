"""Fill a store with months of ended runs, fast: rows written in bulk, as the engine writes them.

What one ended run leaves behind (``history``): its trigger event (``events``), the link
from the event to the run (``event_runs``), the run (``runs``, ended: ``ended_at`` set)
and its steps (``steps``, ~3 with small JSON memos); no jobs (a run's jobs go when it
ends). Rows come from the engine's own records and encoders (``Run`` and
``rows.run_values``, ``StepRecord`` and ``rows.step_values``), so their columns and JSON
encodings are the engine's; the column lists are ``rows.RUN_COLUMNS`` and
``STEP_COLUMNS``. Runs are spread evenly over ``span`` seconds up to ``now``, their ids
ULIDs of their creation time (the lists' order), across ``FUNCTIONS`` of the app ``APP``;
mostly Completed, some Failed or Cancelled.

The schema must exist (open the engine's store once first). Then ``fill_sqlite`` writes
with ``executemany`` in large transactions, ``synchronous=OFF`` on its own connection only;
``fill_postgres`` with ``COPY``, ``synchronous_commit=off`` for its session only. Both
finish with ``ANALYZE`` (as autovacuum soon would) and report progress as they go.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from stepline._json import dumps
from stepline._status import RunStatus
from stepline.engine._ids import ulid
from stepline.engine._model import AppRecord, FunctionRecord, Run, StepRecord, StepStatus
from stepline.engine._store import rows

APP = "history"
FUNCTIONS = tuple(f"history-{name}" for name in ("orders", "emails", "billing", "sync", "report"))
EVENT_COLUMNS = "internal_id, id, name, payload, received_at"
LINK_COLUMNS = "event_id, function_id, run_id, reason, at"
#: runs per transaction (SQLite) / per COPY round (Postgres)
BATCH = 20_000
_STEPS = ("load", "process", "notify")
_STEP_IDS = tuple(hashlib.sha1(name.encode()).hexdigest() for name in _STEPS)
#: how runs end: mostly well, a few failed or cancelled
_ENDINGS = (
    [RunStatus.COMPLETED] * 92 + [RunStatus.FAILED] * 5 + [RunStatus.CANCELLED] * 3
)  # fmt: skip
_FAILURE = {"name": "ValueError", "message": "the card was declined", "stack": "x" * 120}


@dataclass
class Batch:
    """One batch of rows, each list in its table's column order."""

    runs: list[tuple[Any, ...]]
    steps: list[tuple[Any, ...]]
    events: list[tuple[Any, ...]]
    links: list[tuple[Any, ...]]

    @property
    def size(self) -> int:
        return len(self.runs) + len(self.steps) + len(self.events) + len(self.links)


def app_records(now: float) -> tuple[AppRecord, list[FunctionRecord]]:
    """The app the history's runs belong to, and its functions (as a sync registers them)."""
    app = AppRecord(APP, "http://127.0.0.1:9/api/inngest", "py:stepline", None, now, "history")
    functions = [
        FunctionRecord(
            f,
            APP,
            f,
            {
                "id": f,
                "name": f,
                "triggers": [{"event": f"history/{f}"}],
                "steps": {"step": {"id": "step", "name": "step", "runtime": {"type": "http"}}},
            },
            now,
        )
        for f in FUNCTIONS
    ]
    return app, functions


def history(count: int, now: float, span: float, seed: int = 30) -> Iterator[Batch]:
    """``count`` ended runs over ``span`` s before ``now``, oldest first, in batches."""
    rng = random.Random(seed)
    batch = Batch([], [], [], [])
    for i in range(count):
        at = now - span + span * i / count
        _one(rng, i, at, batch)
        if len(batch.runs) == BATCH:
            yield batch
            batch = Batch([], [], [], [])
    if batch.runs:
        yield batch


def _one(rng: random.Random, i: int, at: float, batch: Batch) -> None:
    ms = int(at * 1000)
    function_id = FUNCTIONS[i % len(FUNCTIONS)]
    event_id, run_id = ulid(ms), ulid(ms)
    payload = {
        "id": event_id,
        "name": f"history/{function_id}",
        "data": {"order": i, "customer": f"c-{i % 9973}", "amount": rng.randrange(10_000)},
        "ts": ms,
        "user": {},
        "v": None,
    }
    status = rng.choice(_ENDINGS)
    steps = 2 if status is RunStatus.CANCELLED else 3
    duration = 0.05 + rng.random() * 2
    records = [
        StepRecord(
            run_id=run_id,
            step_id=_STEP_IDS[k],
            name=_STEPS[k],
            op="StepRun",
            status=StepStatus.FAILED
            if status is RunStatus.FAILED and k == steps - 1
            else StepStatus.COMPLETED,
            memo={"data": {"step": k, "ok": True, "n": i % 1000}},
            attempts=1,
            started_at=at + duration * k / steps,
            ended_at=at + duration * (k + 1) / steps,
            seq=k,
        )
        for k in range(steps)
    ]
    if status is RunStatus.FAILED:
        records[-1].memo = {"error": _FAILURE}
        records[-1].error = _FAILURE
    output = {
        RunStatus.COMPLETED: dumps({"data": {"ok": True, "order": i}}),
        RunStatus.FAILED: dumps({"error": _FAILURE}),
    }.get(status)
    run = Run(
        run_id=run_id,
        function_id=function_id,
        app_id=APP,
        status=status,
        events=[payload],
        event_ids=[event_id],
        created_at=at,
        started_at=at + 0.005,
        ended_at=at + duration,
        output=output,
        stack=[s.step_id for s in records if s.status is StepStatus.COMPLETED],
        request_version=1,
        cancel_reason="api" if status is RunStatus.CANCELLED else None,
    )
    batch.runs.append(tuple(rows.run_values(run)))
    batch.steps.extend(tuple(rows.step_values(s)) for s in records)
    batch.events.append((event_id, event_id, payload["name"], dumps(payload), at))
    batch.links.append((event_id, function_id, run_id, None, at))


class Progress:
    """Progress lines on stderr: runs written, percent, rows/s (at most every 2 s)."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total = label, total
        self.began = self.shown = time.monotonic()
        self.runs = self.rows = 0

    def add(self, batch: Batch) -> None:
        self.runs += len(batch.runs)
        self.rows += batch.size
        now = time.monotonic()
        if now - self.shown >= 2 or self.runs == self.total:
            self.shown = now
            rate = self.rows / max(now - self.began, 1e-9)
            share = 100 * self.runs / self.total
            print(
                f"{self.label}: {self.runs:,}/{self.total:,} runs ({share:.0f}%), "
                f"{self.rows:,} rows, {rate:,.0f} rows/s",
                file=sys.stderr,
                flush=True,
            )

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.began


def _insert(table: str, columns: str) -> str:
    return f"INSERT INTO {table} ({columns}) VALUES ({','.join('?' * len(columns.split(',')))})"


def fill_sqlite(path: str, batches: Iterator[Batch], progress: Progress) -> None:
    """Write the batches to a SQLite file whose schema exists, then ``ANALYZE``."""
    # steps before their runs: the trigger moving a run's steps revision finds no row to
    # update (ended runs' revisions are never read: nothing is lost)
    statements = (
        (_insert("steps", rows.STEP_COLUMNS), "steps"),
        (_insert("runs", rows.RUN_COLUMNS), "runs"),
        (_insert("events", EVENT_COLUMNS), "events"),
        (_insert("event_runs", LINK_COLUMNS), "links"),
    )
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA synchronous = OFF")  # this connection only: the fill
        conn.execute("PRAGMA cache_size = -262144")  # 256 MiB while filling
        for batch in batches:
            conn.execute("BEGIN")
            for sql, name in statements:
                conn.executemany(sql, getattr(batch, name))
            conn.execute("COMMIT")
            progress.add(batch)
        conn.execute("ANALYZE")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def fill_postgres(url: str, batches: Iterator[Batch], progress: Progress) -> None:
    """``COPY`` the batches into the schema ``url`` names, then ``ANALYZE`` and ``VACUUM``."""
    import psycopg

    copies = (
        (f"COPY runs ({rows.RUN_COLUMNS}) FROM STDIN", "runs"),
        (f"COPY steps ({rows.STEP_COLUMNS}) FROM STDIN", "steps"),
        (f"COPY events ({EVENT_COLUMNS}) FROM STDIN", "events"),
        (f"COPY event_runs ({LINK_COLUMNS}) FROM STDIN", "links"),
    )
    with psycopg.connect(url) as conn:
        conn.execute("SET synchronous_commit = off")
        # ended runs' steps revisions are never read: the fill skips the trigger's update
        conn.execute("ALTER TABLE steps DISABLE TRIGGER steps_rev")
        conn.commit()
        for batch in batches:
            with conn.cursor() as cur:
                for sql, name in copies:
                    with cur.copy(sql) as copy:
                        for row in getattr(batch, name):
                            copy.write_row(row)
            conn.commit()
            progress.add(batch)
        conn.execute("ALTER TABLE steps ENABLE TRIGGER steps_rev")
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")  # visibility map and statistics, as autovacuum would


def counts(db: str) -> dict[str, int]:
    """Rows per table of the history, and the queue's jobs (a SQLite path or Postgres URL)."""
    sql = (
        "SELECT (SELECT COUNT(*) FROM runs WHERE ended_at IS NOT NULL AND app_id = ?), "
        "(SELECT COUNT(*) FROM steps), (SELECT COUNT(*) FROM events), "
        "(SELECT COUNT(*) FROM event_runs), (SELECT COUNT(*) FROM jobs)"
    )
    if db.startswith(("postgres://", "postgresql://")):
        import psycopg

        with psycopg.connect(db, autocommit=True) as conn:
            row = conn.execute(sql.replace("?", "%s"), (APP,)).fetchone()
    else:
        with contextlib.closing(sqlite3.connect(db)) as lite:
            row = lite.execute(sql, (APP,)).fetchone()
    assert row is not None
    return dict(zip(("runs", "steps", "events", "event_runs", "jobs"), map(int, row), strict=True))


def fill(db: str, count: int, now: float, span: float, label: str) -> dict[str, Any]:
    """Fill ``db`` with ``count`` ended runs; what was written and how fast."""
    progress = Progress(label, count)
    writer: Callable[[str, Iterator[Batch], Progress], None] = (
        fill_postgres if db.startswith(("postgres://", "postgresql://")) else fill_sqlite
    )
    writer(db, history(count, now, span), progress)
    seconds = progress.seconds
    return {
        "seconds": seconds,
        "rows": progress.rows,
        "rows_per_s": progress.rows / max(seconds, 1e-9),
        "counts": counts(db),
    }
