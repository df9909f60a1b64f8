"""The plans of the store's own SQL for the reads ``large_tables.py`` measures.

The statements are recorded from the store's ``Tx`` (a connection that records and returns
no rows), so the plans are of the engine's real queries: SQLite ``EXPLAIN QUERY PLAN``,
Postgres ``EXPLAIN (ANALYZE, BUFFERS)`` in a transaction rolled back (leases write). A
full scan of a table that grows with history (``BIG``) is a finding.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
import types
from collections.abc import Callable, Iterator
from typing import Any

import stepline
from stepline.engine._store import EventFilter, RunFilter

#: the tables that grow with history: a full scan of one is a finding
BIG = {"runs", "steps", "events", "event_runs"}


class Recorder:
    """A DB-API connection that records what a ``Tx`` executes and returns no rows."""

    rowcount = 0

    def __init__(self) -> None:
        self.seen: list[tuple[str, tuple[Any, ...]]] = []
        self._setting = False  # the last statement read or set a setting (not recorded)

    def cursor(self) -> Recorder:
        """The Postgres store sends its statements through one cursor: this one."""
        return self

    def execute(self, sql: str, args: Any = ()) -> Recorder:
        # a query's own limits (the runs list's statement_timeout) are not what is measured
        self._setting = "set_config(" in sql
        if not self._setting:
            self.seen.append((sql, tuple(args)))
        return self

    @property
    def pgresult(self) -> Any:
        """psycopg's answer: rows for a setting's read, else none to read rows from."""
        if not self._setting:
            return None
        from psycopg import pq

        return types.SimpleNamespace(status=pq.ExecStatus.TUPLES_OK)

    def fetchone(self) -> tuple[str, str] | None:
        return ("0", "0") if self._setting else None

    def fetchall(self) -> list[Any]:
        return [("0", "0")] if self._setting else []

    def __iter__(self) -> Iterator[Any]:
        return iter(())


def statements(
    postgres: bool, run_id: str, event_id: str, busy: str, event_name: str
) -> dict[str, tuple[str, tuple[Any, ...]]]:
    """The store's own SQL for the reads measured, by name (recorded from its ``Tx``)."""
    if postgres:
        from stepline.engine._store.pg_tx import PostgresTx as TxClass
    else:
        from stepline.engine._store.sqlite import SqliteTx as TxClass  # type: ignore[assignment]
    now = time.time()
    work: dict[str, Callable[[Any], object]] = {
        "lease_jobs": lambda tx: tx.queue.lease_jobs("o", now, now + 30, 16),
        "lease_run_call": lambda tx: tx.queue.lease_run_call(run_id, "o", now, now + 30),
        "next_job_at": lambda tx: tx.queue.next_job_at(),
        "runs, newest 50": lambda tx: tx.list_runs(RunFilter(limit=51)),
        "runs, one function": lambda tx: tx.list_runs(RunFilter(function_id=busy, limit=51)),
        "runs, failed only": lambda tx: tx.list_runs(
            RunFilter(status=[stepline.RunStatus.FAILED], limit=51)
        ),
        "runs, next page": lambda tx: tx.list_runs(RunFilter(cursor=run_id, limit=51)),
        "runs, last hour": lambda tx: tx.list_runs(RunFilter(since=now - 3600, limit=51)),
        "runs, by event id": lambda tx: tx.list_runs(RunFilter(event_id=event_id, limit=51)),
        "events, newest 50": lambda tx: tx.list_events(EventFilter(limit=51)),
        "events, one name": lambda tx: tx.list_events(EventFilter(name=event_name, limit=51)),
        "run page: run": lambda tx: tx.get_run(run_id),
        "run page: steps": lambda tx: tx.get_steps(run_id),
    }
    out = {}
    for name, call in work.items():
        recorder = Recorder()
        call(TxClass(recorder))
        out[name] = recorder.seen[0]
    return out


def explain(
    db: str, run_id: str, event_id: str, busy: str, event_name: str
) -> list[dict[str, Any]]:
    """Each statement's plan, and whether it scans a whole big table."""
    postgres = db.startswith(("postgres://", "postgresql://"))
    plans = []
    for name, (sql, args) in statements(postgres, run_id, event_id, busy, event_name).items():
        if postgres:
            import psycopg

            with psycopg.connect(db) as conn:  # a transaction, rolled back: leases write
                rows = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", args).fetchall()
                conn.rollback()
            text = "\n".join(str(r[0]) for r in rows)
            scans = re.findall(r"Seq Scan on (\w+)", text)
        else:
            with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as lite:
                rows = lite.execute(f"EXPLAIN QUERY PLAN {sql}", args).fetchall()
            text = "\n".join(str(r[3]) for r in rows)
            scans = [m.group(1) for r in rows if (m := re.fullmatch(r"SCAN (\w+)", str(r[3])))]
        aliases = {"l": "event_runs", "e": "events"}
        full = sorted({aliases.get(t, t) for t in scans} & BIG)
        plans.append({"query": name, "sql": sql, "plan": text, "full_scans": full})
    return plans
