"""Retention: the SQL that deletes what the engine no longer needs, in bounded batches.

Written once for SQLite and Postgres, like ``sql``. One call of ``sweep_batch`` is one
transaction's work and removes at most about ``limit`` rows, so a sweep never holds the
writer (SQLite) or many row locks (Postgres) for long; the sweeper calls it until it
reports nothing more to do. What goes, and when:

* ended runs (completed, failed, cancelled) whose end is older than the cutoff, with
  their steps, step attempts, stream messages, attributes, model usage, event links,
  jobs, pauses and flow-control claims;
* events older than the cutoff that no stored run references (through ``event_runs``)
  and whose fan-out is not still queued;
* per-key rows once their own window has passed: idempotency keys and rate-limit /
  throttle cells at ``expires_at`` (a GCRA cell past it decides as an empty one),
  debounce and batch buckets at their deadline (``_open_bucket`` ignores them then),
  singleton claims whose run ended or is gone (``skip_reason`` ignores them then), and
  concurrency slots a while after their lease expired (the worker frees them first);
* bulk actions that ended (completed, cancelled, failed) before the cutoff.

Live runs, their steps and the events they reference are never selected. Each DELETE
re-checks its condition on the row itself, so a row another transaction just renewed
(a singleton moved to a new run, a bucket reopened) is left alone on Postgres too.
"""

from __future__ import annotations

from typing import Any, cast

from stepline._status import RunStatus
from stepline.engine._store import Tx
from stepline.engine._store.sql import SqlTx
from stepline.engine._store.sqlite import SqliteTx

#: rows removed per transaction by default
BATCH = 500
#: seconds an expired concurrency slot is left to the worker, which wakes its key
SLOT_GRACE = 300.0
#: the tables a sweep counts removals of (the metric's label values)
TABLES = (
    "steps",
    "step_attempts",
    "run_messages",
    "run_attributes",
    "model_usage",
    "event_runs",
    "jobs",
    "pauses",
    "runs",
    "events",
    "idempotency",
    "limits",
    "singletons",
    "buckets",
    "slots",
    "bulk_actions",
)

_ENDED = tuple(status.value for status in RunStatus if status.terminal)
_OLD_ENDED = f"status IN ({','.join('?' * len(_ENDED))}) AND ended_at < ?"
_STEPS = (
    "DELETE FROM steps WHERE (run_id, step_id) IN (SELECT s.run_id, s.step_id FROM steps s "
    f"JOIN runs r ON r.run_id = s.run_id WHERE r.{_OLD_ENDED.replace('ended_at', 'r.ended_at')} "
    "LIMIT ?)"
)
_ATTEMPTS = (
    "DELETE FROM step_attempts WHERE (run_id, step_id, attempt) IN (SELECT a.run_id, a.step_id, "
    "a.attempt FROM step_attempts a JOIN runs r ON r.run_id = a.run_id "
    f"WHERE r.{_OLD_ENDED.replace('ended_at', 'r.ended_at')} LIMIT ?)"
)
_MESSAGES = (
    "DELETE FROM run_messages WHERE (run_id, seq) IN (SELECT m.run_id, m.seq "
    "FROM run_messages m JOIN runs r ON r.run_id = m.run_id "
    f"WHERE r.{_OLD_ENDED.replace('ended_at', 'r.ended_at')} LIMIT ?)"
)
_OLD_RUNS = f"SELECT run_id FROM runs WHERE {_OLD_ENDED} ORDER BY run_id LIMIT ?"
_EVENTS = (
    "DELETE FROM events WHERE internal_id IN (SELECT e.internal_id FROM events e "
    "WHERE e.received_at < ? AND NOT EXISTS (SELECT 1 FROM event_runs l "
    "JOIN runs r ON r.run_id = l.run_id WHERE l.event_id = e.internal_id) "
    "AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.job_id = 'fanout:' || e.internal_id) "
    "LIMIT ?) RETURNING internal_id"
)
_EXPIRED = {
    "idempotency": (
        "DELETE FROM idempotency WHERE (scope, key) IN (SELECT scope, key FROM idempotency "
        "WHERE expires_at <= ? LIMIT ?) AND expires_at <= ?"
    ),
    "limits": (
        "DELETE FROM limits WHERE (scope, key) IN (SELECT scope, key FROM limits "
        "WHERE expires_at <= ? LIMIT ?) AND expires_at <= ?"
    ),
    "buckets": (
        "DELETE FROM buckets WHERE (function_id, key) IN (SELECT function_id, key FROM buckets "
        "WHERE deadline <= ? LIMIT ?) AND deadline <= ?"
    ),
}
_SINGLETONS = (
    "DELETE FROM singletons WHERE (function_id, key, run_id) IN ("
    "SELECT s.function_id, s.key, s.run_id FROM singletons s "
    "LEFT JOIN runs r ON r.run_id = s.run_id "
    f"WHERE r.run_id IS NULL OR r.status IN ({','.join('?' * len(_ENDED))}) LIMIT ?)"
)
_SLOTS = (
    "DELETE FROM slots WHERE (key, job_id) IN (SELECT key, job_id FROM slots "
    "WHERE expires_at <= ? LIMIT ?{skip}) AND expires_at <= ?"
)
_BULK = (
    "DELETE FROM bulk_actions WHERE bulk_id IN (SELECT bulk_id FROM bulk_actions "
    "WHERE status IN ('completed', 'cancelled', 'failed') AND updated_at < ? LIMIT ?)"
)
#: Postgres: the one sweeper of all nodes on this schema holds it for its transaction
_PG_LOCK = "SELECT pg_try_advisory_xact_lock(hashtextextended(current_schema() || ':' || ?, 0))"


def sweep_batch(
    tx: Tx, now: float, cutoff: float, limit: int = BATCH
) -> tuple[dict[str, int], bool] | None:
    """Remove up to about ``limit`` rows in this transaction.

    Args:
        tx: the store's ``Tx`` (a ``SqlTx``) with a write transaction open.
        now: the current time (per-key windows are measured against it).
        cutoff: runs ended and events received before it may go (now - retention).
        limit: the row budget of this transaction.

    Returns:
        Rows removed per table and whether more remains; None if another node is
        sweeping (Postgres), in which case this one leaves it the work.
    """
    tx = cast(SqlTx, tx)  # both stores' transactions are SqlTx; its SQL is theirs
    if not isinstance(tx, SqliteTx) and not tx.execute(_PG_LOCK, ("retention",)).fetchone()[0]:
        return None
    removed: dict[str, int] = {}

    def count(table: str, rows: int) -> int:
        if rows > 0:
            removed[table] = removed.get(table, 0) + rows
        return rows

    budget = limit
    budget -= count("steps", tx.execute(_STEPS, (*_ENDED, cutoff, budget)).rowcount)
    if budget > 0:
        budget -= count("step_attempts", tx.execute(_ATTEMPTS, (*_ENDED, cutoff, budget)).rowcount)
    if budget > 0:
        budget -= count("run_messages", tx.execute(_MESSAGES, (*_ENDED, cutoff, budget)).rowcount)
    if budget > 0:
        budget -= _remove_runs(tx, cutoff, max(1, budget // 2), count)
    if budget > 0:
        gone = [str(r[0]) for r in tx.execute(_EVENTS, (cutoff, budget)).fetchall()]
        budget -= count("events", len(gone))
        if gone:
            marks = ",".join("?" * len(gone))
            links = tx.execute(f"DELETE FROM event_runs WHERE event_id IN ({marks})", gone)
            count("event_runs", links.rowcount)
    for table, sql in _EXPIRED.items():
        if budget > 0:
            budget -= count(table, tx.execute(sql, (now, budget, now)).rowcount)
    if budget > 0:
        budget -= count("singletons", tx.execute(_SINGLETONS, (*_ENDED, budget)).rowcount)
    if budget > 0:
        late = now - SLOT_GRACE
        sql = _SLOTS.format(skip=tx.skip_locked)
        budget -= count("slots", tx.execute(sql, (late, budget, late)).rowcount)
    if budget > 0:
        budget -= count("bulk_actions", tx.execute(_BULK, (cutoff, budget)).rowcount)
    return removed, budget <= 0


def _remove_runs(tx: SqlTx, cutoff: float, limit: int, count: Any) -> int:
    """Delete up to ``limit`` old ended runs, with what hangs off them (steps, messages...)."""
    ids = [str(r[0]) for r in tx.execute(_OLD_RUNS, (*_ENDED, cutoff, limit)).fetchall()]
    if not ids:
        return 0
    marks = ",".join("?" * len(ids))
    total = 0
    tables = (
        "event_runs", "jobs", "pauses", "singletons", "buckets", "steps", "run_messages",
        "run_attributes", "step_attempts", "model_usage",
    )  # fmt: skip
    for table in (*tables, "runs"):
        cur = tx.execute(f"DELETE FROM {table} WHERE run_id IN ({marks})", ids)
        total += count(table, cur.rowcount)
    tx.forget_runs()
    return total
