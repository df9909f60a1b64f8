"""Fill a store with sleeping runs, fast: copies of one run the engine put to sleep itself.

The engine starts one run of the sleeping function and records it as a sleeping run
is recorded: its trigger event (``events``), the link (``event_runs``), the run
(``runs``, Running), its ``Sleep`` step (``steps``, Sleeping, ``wait.until``) and the
``wake`` job due at that time (``jobs``). ``template`` reads those rows back through the
engine's own readers (``rows.read_run``, ``read_step``, ``read_job``) and deletes them;
``fill`` writes ``count`` copies with new ids (ULIDs), each with its own event data
(``{"i": i, "due": due}``) and due time, through the engine's own encoders
(``rows.run_values``, ``step_values``, ``job_values``), so columns and JSON are the
engine's. SQLite is written with ``executemany`` in large transactions
(``synchronous=OFF`` on the fill's connection only), Postgres with ``COPY``
(``synchronous_commit=off`` for its session); both end with ``ANALYZE``.

``shift`` moves the wake jobs' due times after the fill (one ``UPDATE`` of ``jobs``), so
that they come due a chosen time after the engine starts whatever the fill took; the
sleep steps' recorded ``wait.until`` (what the dashboard shows) is left as filled.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import _bulk_fill

from stepline._json import dumps
from stepline.engine._ids import ulid
from stepline.engine._model import Job, Run, StepRecord
from stepline.engine._runs.starts import execute_job_id
from stepline.engine._store import rows

LINK_COLUMNS = _bulk_fill.LINK_COLUMNS
EVENT_COLUMNS = _bulk_fill.EVENT_COLUMNS
JOB_COLUMNS = f"{rows.JOB_COLUMNS}, queued_at"
BATCH = 20_000


def postgres(db: str) -> bool:
    return db.startswith(("postgres://", "postgresql://"))


@dataclass(frozen=True)
class Template:
    """One sleeping run as the engine recorded it."""

    run: Run
    step: StepRecord
    job: Job
    link_reason: str | None


@dataclass
class Batch:
    runs: list[tuple[Any, ...]]
    steps: list[tuple[Any, ...]]
    jobs: list[tuple[Any, ...]]
    events: list[tuple[Any, ...]]
    links: list[tuple[Any, ...]]

    @property
    def size(self) -> int:
        return sum(len(x) for x in (self.runs, self.steps, self.jobs, self.events, self.links))


def query(db: str, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The rows of one statement (``?`` placeholders) on a SQLite path or a Postgres URL."""
    if postgres(db):
        import psycopg

        with psycopg.connect(db, autocommit=True) as conn:
            cur = conn.execute(sql.replace("?", "%s"), args)
            return list(cur.fetchall()) if cur.description else []
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as lite:
        return list(lite.execute(sql, args).fetchall())


def template(db: str) -> Template:
    """Read the sleeping run (the only run in ``db``), then delete its rows."""
    (run_row,) = query(db, f"SELECT {rows.RUN_COLUMNS} FROM runs")
    run = rows.read_run(run_row)
    run_id = run.run_id
    (step_row,) = query(db, f"SELECT {rows.STEP_COLUMNS} FROM steps WHERE run_id = ?", (run_id,))
    (job_row,) = query(db, f"SELECT {rows.JOB_COLUMNS} FROM jobs WHERE run_id = ?", (run_id,))
    (link,) = query(db, "SELECT reason FROM event_runs WHERE run_id = ?", (run_id,))
    for sql in (
        "DELETE FROM jobs WHERE run_id = ?",
        "DELETE FROM steps WHERE run_id = ?",
        "DELETE FROM event_runs WHERE run_id = ?",
        "DELETE FROM events WHERE internal_id = ?",
        "DELETE FROM runs WHERE run_id = ?",
    ):
        query(db, sql, (run.event_ids[0] if "events" in sql else run_id,))
    return Template(run, rows.read_step(step_row), rows.read_job(job_row), link[0])


def copies(t: Template, dues: list[float], now: float) -> Iterator[Batch]:
    """A copy of ``t`` for each due time, created at ``now``, in batches."""
    batch = Batch([], [], [], [], [])
    ms = int(now * 1000)
    for i, due in enumerate(dues):
        event_id, run_id = ulid(ms), ulid(ms)
        payload = {**t.run.events[0], "id": event_id, "data": {"i": i, "due": due}}
        run = dataclasses.replace(
            t.run,
            run_id=run_id,
            events=[payload],
            event_ids=[event_id],
            created_at=now,
            started_at=now,
        )
        step = dataclasses.replace(t.step, run_id=run_id, started_at=now, wait={"until": due})
        job = dataclasses.replace(
            t.job,
            job_id=execute_job_id(run_id, t.step.step_id, "wake"),
            available_at=due,
            run_id=run_id,
        )
        batch.runs.append(tuple(rows.run_values(run)))
        batch.steps.append(tuple(rows.step_values(step)))
        batch.jobs.append((*rows.job_values(job), due))
        batch.events.append((event_id, event_id, payload["name"], dumps(payload), now))
        batch.links.append((event_id, run.function_id, run_id, t.link_reason, now))
        if len(batch.runs) == BATCH:
            yield batch
            batch = Batch([], [], [], [], [])
    if batch.runs:
        yield batch


def _insert(table: str, columns: str) -> str:
    return f"INSERT INTO {table} ({columns}) VALUES ({','.join('?' * len(columns.split(',')))})"


#: steps before their runs: the trigger moving a run's steps revision finds no row to
#: update, and the run is written with the revision the template had
_TABLES = (
    ("steps", rows.STEP_COLUMNS, "steps"),
    ("runs", rows.RUN_COLUMNS, "runs"),
    ("jobs", JOB_COLUMNS, "jobs"),
    ("events", EVENT_COLUMNS, "events"),
    ("event_runs", LINK_COLUMNS, "links"),
)


def _fill_sqlite(path: str, batches: Iterator[Batch], progress: _bulk_fill.Progress) -> None:
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA synchronous = OFF")  # this connection only: the fill
        conn.execute("PRAGMA cache_size = -262144")
        for batch in batches:
            conn.execute("BEGIN")
            for table, columns, name in _TABLES:
                conn.executemany(_insert(table, columns), getattr(batch, name))
            conn.execute("COMMIT")
            progress.add(batch)  # type: ignore[arg-type]  # duck-typed: runs and size
        conn.execute("ANALYZE")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _fill_postgres(url: str, batches: Iterator[Batch], progress: _bulk_fill.Progress) -> None:
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute("ALTER TABLE steps DISABLE TRIGGER steps_rev")
        conn.commit()
        for batch in batches:
            with conn.cursor() as cur:
                for table, columns, name in _TABLES:
                    with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                        for row in getattr(batch, name):
                            copy.write_row(row)
            conn.commit()
            progress.add(batch)  # type: ignore[arg-type]
        conn.execute("ALTER TABLE steps ENABLE TRIGGER steps_rev")
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def fill(db: str, t: Template, dues: list[float], now: float, label: str) -> dict[str, Any]:
    """Write a sleeping copy of ``t`` for each of ``dues``; what was written and how fast."""
    progress = _bulk_fill.Progress(label, len(dues))
    writer: Callable[[str, Iterator[Batch], _bulk_fill.Progress], None] = (
        _fill_postgres if postgres(db) else _fill_sqlite
    )
    writer(db, copies(t, dues, now), progress)
    return {
        "seconds": progress.seconds,
        "rows": progress.rows,
        "rows_per_s": progress.rows / max(progress.seconds, 1e-9),
        "counts": counts(db),
    }


def counts(db: str) -> dict[str, int]:
    """Sleeping runs, sleep steps, wake jobs, all jobs."""
    (row,) = query(
        db,
        "SELECT (SELECT COUNT(*) FROM runs WHERE status = 'Running'), "
        "(SELECT COUNT(*) FROM steps WHERE status = 'Sleeping'), "
        "(SELECT COUNT(*) FROM jobs WHERE kind = 'wake'), (SELECT COUNT(*) FROM jobs)",
    )
    return dict(zip(("running", "sleeping_steps", "wake_jobs", "jobs"), map(int, row), strict=True))


def shift(db: str, by: float, before: float) -> None:
    """Move the wake jobs due before ``before`` by ``by`` seconds (then ``VACUUM ANALYZE``
    on Postgres)."""
    sql = (
        "UPDATE jobs SET available_at = available_at + ?, queued_at = queued_at + ? "
        "WHERE kind = 'wake' AND available_at < ?"
    )
    query(db, sql, (by, by, before))
    if postgres(db):
        query(db, "VACUUM ANALYZE jobs")


def size(db: str) -> int:
    """Bytes the database takes: the SQLite file and its WAL, or every table and index of
    the Postgres schema in the URL's search_path."""
    if postgres(db):
        (row,) = query(
            db,
            "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'm')",
        )
        return int(row[0])
    import os

    return sum(os.path.getsize(db + s) for s in ("", "-wal") if os.path.exists(db + s))
