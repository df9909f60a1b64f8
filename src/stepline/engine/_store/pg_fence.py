"""A call's answer on Postgres in one statement, fenced by its rows' ``xmin``.

A step-by-step run's middle step writes two rows: the step, and the call's job moved to
the run's next call, leased. In a transaction that is five round trips (``BEGIN``, the
call read locked with its run, the two writes, ``COMMIT``); one statement in autocommit
does the same writes in one (``bench/pg_one_statement_bench.py``: 1.6 -> 0.65 ms of wall
time a step, 1.3 -> 0.5 ms of CPU).

What lets the read go: a row's ``xmin`` names the transaction that wrote its current
version. After a transaction of one unit of work that read a call with its run and
moved the call to the run's next one, this node knows both rows as that transaction
left them (``Fence``). The next answer's unit runs on a ``FencedTx``: its ``get_call``
answers from the fence, its two writes are kept rather than sent, and anything else it
would send refuses the fast path (``Refused``). The writes then go as data-modifying
``WITH`` clauses that each take their rows from the fence, the job joined with its run,
locked, and still last written by that transaction, no function paused (as the read
checks). A fence that holds means nobody wrote either row since: no cancel, no wait's
end, no heartbeat, no other node taking the lease over. A fence that does not hold
writes nothing; the unit then runs again in a transaction, as it always did.

Only after a transaction of one unit: the group commit (``pg_writers``) runs several
units in one transaction, and another unit's write to the same run would carry the same
``xmin`` with a state this unit never saw.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg

from stepline.engine._model import Job
from stepline.engine._store.pg_tx import PostgresTx, Rows
from stepline.engine._store.queue import REPLACE_JOB
from stepline.engine._store.rows import read_job
from stepline.engine._store.sql import UPSERT_STEP, run_in

T = TypeVar("T")
logger = logging.getLogger("stepline.engine")
#: fences kept at most (each a call in flight, or one whose run ended): the oldest go
LIMIT = 4096
#: a row's ``xmin`` is the low 32 bits of the ``xid8`` that ``pg_current_xact_id`` gives
_XID = 0xFFFFFFFF
_INSERT = re.compile(r"INSERT INTO (\w+) \(([^)]*)\) VALUES \(([?,]*)\)(.*)", re.S)
_GONE = "WITH gone AS (DELETE FROM jobs WHERE job_id = ?) "


class Refused(BaseException):
    """The unit does something the fast path does not: it runs in a transaction.

    A ``BaseException``: the unit's own ``except Exception`` must not take it for a
    database error it knows how to handle."""


@dataclasses.dataclass(frozen=True, slots=True)
class Fence:
    """A call and its run as the transaction ``xmin`` left them.

    Attributes:
        xmin: the transaction that last wrote both rows (its 32-bit id, as text).
        job: the job's row (``JOB_COLUMNS``).
        run: the run's row (``RUN_COLUMNS``), as ``PostgresTx`` keeps it.
        revision: the run's steps revision (``runs.steps_rev``).
    """

    xmin: str
    job: Sequence[Any]
    run: Sequence[Any]
    revision: int


class Fences:
    """The fences this store holds, by call, and the one-statement writes they allow."""

    def __init__(self, limit: int = LIMIT) -> None:
        self._by_job: dict[str, Fence] = {}
        self._lock = threading.Lock()
        self._limit = limit
        #: each table's column types (``format_type``), read once: a value taken from
        #: a ``SELECT`` list has no column to take its type from
        self._types: dict[str, dict[str, str]] = {}
        self._statement: str | None = None

    def __bool__(self) -> bool:
        return bool(self._by_job)

    def get(self, job_id: str) -> Fence | None:
        return self._by_job.get(job_id)

    def keep(self, job_id: str, fence: Fence) -> None:
        with self._lock:
            self._by_job[job_id] = fence
            if len(self._by_job) > self._limit:
                del self._by_job[next(iter(self._by_job))]

    def drop(self, job_id: str) -> None:
        with self._lock:
            self._by_job.pop(job_id, None)

    def after(self, tx: PostgresTx) -> None:
        """Keep the fence a committed transaction of one unit leaves, if any: it read a
        call with its run and moved the call to the run's next one."""
        if tx.called is not None:
            self.drop(tx.called)
        self._keep_left_by(tx, tx.xid)

    def answer(self, conn: psycopg.Connection[Any], work: Callable[[PostgresTx], T]) -> T:
        """``work`` in one statement, on ``conn`` in autocommit.

        Raises:
            Refused: it reads or writes more than the fast path knows, or its fence no
                longer holds; nothing was written.
        """
        tx = FencedTx(conn, self)
        try:
            result = run_in(tx, work)
        except Exception as exc:  # on a view not yet checked: the transaction's is the answer
            raise Refused from exc
        statement, args = self._statement_for(conn, tx)
        try:
            row = conn.execute(statement, args).fetchone()
        except psycopg.Error as exc:
            if conn.broken:  # sent: whether it committed is unknown
                raise
            logger.debug("a fenced answer fell back to a transaction: %s", exc)
            raise Refused from None
        assert tx.called is not None
        self.drop(tx.called)  # written, or stale
        if row is None or row[0] is None:
            raise Refused
        self._keep_left_by(tx, str(row[0]))
        return result

    def _keep_left_by(self, tx: PostgresTx, xid: str | None) -> None:
        """Keep the fence for the call ``tx`` moved its job to, committed as ``xid``."""
        moved = tx.moved
        if xid is None or moved is None:
            return
        run = tx.run_row(moved[4])
        revision = tx.steps_revision(moved[4])
        if run is not None and revision is not None:
            job = tuple(moved[1:11])
            self.keep(str(job[0]), Fence(str(int(xid) & _XID), job, run, revision))

    def _statement_for(self, conn: psycopg.Connection[Any], tx: FencedTx) -> tuple[str, list[Any]]:
        """The fenced statement of ``tx``'s two writes, and its parameters."""
        moves = [args for sql, args in tx.writes if sql is REPLACE_JOB]
        steps = [args for sql, args in tx.writes if sql is UPSERT_STEP]
        fence = tx.fence
        if fence is None or len(moves) != 1 or len(steps) != 1 or len(tx.writes) != 2:
            raise Refused
        (move,), (step,) = moves, steps
        run_id = fence.job[3]
        if move[0] != tx.called or move[4] != run_id or step[0] != run_id:
            raise Refused  # not this call's own move, or another run's rows
        if tx.ended_runs or tx.streamed or tx.apps_changed:
            raise Refused
        if any(job_id not in tx.claimed for job_id in tx.queued):
            raise Refused  # other nodes would have to be told (``NOTIFY``)
        if self._statement is None:
            self._statement = self._compose(conn)
        return self._statement, [tx.called, fence.xmin, fence.xmin, *move, *step]

    def _compose(self, conn: psycopg.Connection[Any]) -> str:
        types = self._types_of(conn)
        replace = _conditional(REPLACE_JOB.removeprefix(_GONE), "moved", types)
        upsert = _conditional(UPSERT_STEP, "step", types)
        return (
            "WITH f AS (SELECT j.run_id FROM jobs j JOIN runs r ON r.run_id = j.run_id "
            "WHERE j.job_id = %s AND j.xmin::text = %s AND r.xmin::text = %s AND NOT EXISTS "
            "(SELECT 1 FROM function_controls WHERE paused_at IS NOT NULL) FOR UPDATE), "
            "gone AS (DELETE FROM jobs WHERE job_id = %s AND EXISTS (SELECT 1 FROM f)), "
            f"{replace}, {upsert} "
            # the next call's row must be inserted, as the unit counted on: else an error
            # undoes the whole statement (a division by zero, evaluated only then)
            "SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM f) THEN NULL "
            "WHEN (SELECT count(*) FROM moved) = 1 THEN pg_current_xact_id()::text "
            "ELSE (1 / (SELECT count(*) FROM moved)::int)::text END"
        )

    def _types_of(self, conn: psycopg.Connection[Any]) -> dict[str, dict[str, str]]:
        if not self._types:
            rows = conn.execute(
                "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) "
                "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                "WHERE c.oid IN ('jobs'::regclass, 'steps'::regclass) "
                "AND a.attnum > 0 AND NOT a.attisdropped"
            ).fetchall()
            for table, column, kind in rows:
                self._types.setdefault(str(table), {})[str(column)] = str(kind)
        return self._types


class FencedTx(PostgresTx):
    """A ``PostgresTx`` that sends nothing: ``get_call`` answers from a fence, the job's
    move and the step's upsert are kept (``writes``), anything else is ``Refused``: so is
    a unit that has not said it may run on kept rows (``may_answer_from_kept_rows``),
    before it does anything outside the transaction (a log line, say) it would then do
    twice."""

    def __init__(self, conn: psycopg.Connection[Any], fences: Fences) -> None:
        super().__init__(conn)
        self._fences = fences
        self.fence: Fence | None = None
        self.writes: list[tuple[str, Sequence[Any]]] = []
        self._allowed = False

    def may_answer_from_kept_rows(self) -> None:
        self._allowed = True

    def get_call(self, job_id: str) -> Job | None:
        fence = self._fences.get(job_id)
        if fence is None or self.called is not None or not self._allowed:
            raise Refused
        self.fence, self.called = fence, job_id
        run_id = fence.job[3]
        self._run_rows[run_id] = fence.run
        self._revisions[run_id] = fence.revision
        self.controls.none_paused()
        return read_job(fence.job)

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Rows:
        if self.fence is None or (sql is not REPLACE_JOB and sql is not UPSERT_STEP):
            raise Refused
        if sql is REPLACE_JOB:
            self.moved = args
        self.writes.append((sql, args))
        return Rows([], 1)

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if len(rows) != 1:
            raise Refused
        self.execute(sql, rows[0])

    def lock(self, name: str) -> None:
        raise Refused


def _conditional(insert: str, name: str, types: dict[str, dict[str, str]]) -> str:
    """``insert`` (``rows.insert``'s shape) as a ``WITH`` clause ``name`` whose row is
    taken from the fence ``f``: no row when it does not hold."""
    found = _INSERT.fullmatch(insert)
    if found is None:
        raise AssertionError(f"not an insert of one row: {insert}")
    table, columns, _, tail = found.groups()
    names = [c.strip() for c in columns.split(",")]
    values = ", ".join(f"%s::{types[table][c]}" for c in names)
    returning = " RETURNING 1" if name == "moved" else ""
    return f"{name} AS (INSERT INTO {table} ({columns}) SELECT {values} FROM f{tail}{returning})"
