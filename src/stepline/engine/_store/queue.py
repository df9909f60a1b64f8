"""The SQL of the job queue (``tx.queue``): enqueue, lease, extend, park and unpark calls.

A part of each store's transaction (``part``). One table, ``jobs``, holds
every kind of job; a job is due when ``available_at <= now``, and leasing moves
``available_at`` to the lease's expiry, so one index answers "what is due" and a job
whose owner died simply becomes due again. Jobs parked on a concurrency key or a paused
function wait with ``parked_on`` set until a slot frees or the function resumes.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from stepline._json import dumps
from stepline.engine._model import Job, JobKind
from stepline.engine._store.part import Part, TxSql
from stepline.engine._store.rows import JOB_COLUMNS, insert, job_values, read_job

#: a job's ``queued_at`` is its first ``available_at`` (the order parked calls wake in)
_INSERT_JOB = insert("jobs", f"{JOB_COLUMNS}, queued_at", on_conflict="DO NOTHING")
#: ``QueueSql.replace_sql`` where a ``WITH`` may delete (Postgres); the ids differ, so the
#: insert's conflict check never meets the row deleted beside it
REPLACE_JOB = f"WITH gone AS (DELETE FROM jobs WHERE job_id = ?) {_INSERT_JOB}"
#: ``QueueSql.move_sql`` where a row's key may change in place, a conflict skipping it
#: (SQLite): the old job's row becomes the new job's, every column set as the insert sets
#: it (``parked_on`` back to its default) but those the row must share with it already
#: (``kind``, ``run_id``: left out of the ``SET``, their index is not rewritten; a row
#: that differs is not moved); parameters: the insert's, then the id replaced, put in the
#: statement's order by ``move_args`` (plain ``?``: numbered ``?N`` with a sequence of
#: values is deprecated from Python 3.12 and an error from 3.14)
_MOVED = f"{JOB_COLUMNS}, queued_at".split(", ")  # the insert's parameters, in order
_SHARED = ("kind", "run_id")
_SET = [column for column in _MOVED if column not in _SHARED]
MOVE_JOB = (
    "UPDATE OR IGNORE jobs SET "
    + ", ".join(f"{column} = ?" for column in _SET)
    + ", parked_on = NULL WHERE job_id = ? AND "
    + " AND ".join(f"{column} IS ?" for column in _SHARED)
)
#: for each ``?`` of ``MOVE_JOB``, its value's index in (the insert's parameters, the id)
_MOVE_ORDER = (
    *(_MOVED.index(column) for column in _SET),
    len(_MOVED),
    *(_MOVED.index(column) for column in _SHARED),
)
#: picks ``_MOVE_ORDER``'s values in one C call (a generator is a Python call per value)
_PICK_MOVED: Callable[[Sequence[object]], tuple[object, ...]] = operator.itemgetter(*_MOVE_ORDER)


#: the moved job's row (``JOB_COLUMNS``) from ``MOVE_JOB``'s parameters
MOVED_ROW: Callable[[Sequence[object]], tuple[object, ...]] = operator.itemgetter(
    *(_MOVE_ORDER.index(_MOVED.index(column)) for column in JOB_COLUMNS.split(", "))
)


def move_args(params: Sequence[object]) -> tuple[object, ...]:
    """``MOVE_JOB``'s parameters from the insert's followed by the id replaced."""
    return _PICK_MOVED(params)


class QueueSql(Part):
    """``Tx.queue``: the methods over ``jobs``."""

    __slots__ = ("_leasing", "_preleased", "calls")

    #: a job's delete and another's insert as one statement (Postgres: a ``DELETE`` in a
    #: ``WITH``), parameters: the id deleted, then the insert's; empty: two statements
    replace_sql = ""
    #: else, the old job's row rewritten as the new one's, one statement when the old
    #: job is there and the new one is not (SQLite: ``MOVE_JOB``); empty: two statements
    move_sql = ""

    def __init__(self, tx: TxSql) -> None:
        super().__init__(tx)
        #: the calls this transaction queued, by run (``lease_run_call`` takes one by id)
        self.calls: dict[str, Job] = {}
        #: ``(run id or None for any, owner, now, until)``: see ``lease_calls``
        self._leasing: tuple[str | None, str, float, float] | None = None
        #: calls inserted already leased, by run, until ``lease_run_call`` takes them
        self._preleased: dict[str, Job] = {}

    def lease_calls(self, run_id: str | None, owner: str, now: float, until: float) -> None:
        """Insert the next call this transaction queues for ``run_id`` (None: the first
        call of each run it creates) already leased by ``owner`` when it is due at ``now``
        and bound by no concurrency key: ``lease_run_call`` then takes it with no
        statement of its own. Calls it does not take go back to the queue with
        ``unlease_calls``."""
        self._leasing = (run_id, owner, now, until)

    def unlease_calls(self) -> None:
        """Stop leasing calls as they are queued; those no one took become due again."""
        self._leasing = None
        for job in self._preleased.values():
            self._x(
                "UPDATE jobs SET lease_owner = NULL, lease_expires = NULL, available_at = "
                "queued_at WHERE job_id = ? AND lease_owner = ?",
                (job.job_id, job.lease_owner),
            )
        self._preleased = {}

    def _lease_as_queued(self, job: Job) -> Job | None:
        """``job`` leased, if ``lease_calls`` asked for it."""
        leasing, run_id = self._leasing, job.run_id
        if leasing is None or job.kind is not JobKind.EXECUTE or run_id is None:
            return None
        wanted, owner, now, until = leasing
        if run_id != wanted and (wanted is not None or not self._tx.is_new(run_id)):
            return None  # any run's: the first call of a run this transaction created
        if run_id in self._preleased:
            return None
        if job.available_at > now or job.payload.get("keys"):
            return None
        leased = job.copy()
        leased.available_at, leased.lease_owner, leased.lease_expires = until, owner, until
        leased.lease_epoch = 1  # the row's first lease (an id queued again starts afresh)
        return leased

    def enqueue(self, job: Job, *, replacing: str | None = None) -> bool:
        """Queue ``job`` unless its id is queued already (False); ``replacing``: a job
        deleted first, in the same statement where the store can (``replace_sql``)."""
        leased = self._lease_as_queued(job)
        row = job if leased is None else leased
        values = (*job_values(row), job.available_at)
        if replacing is not None and replacing != job.job_id and self.replace_sql:
            self._drop_preleased(job_id=replacing)
            cur = self._x(self.replace_sql, (replacing, *values))
        elif replacing is not None and replacing != job.job_id and self.move_sql:
            self._drop_preleased(job_id=replacing)
            cur = self._x(self.move_sql, move_args((*values, replacing)))
            if cur.rowcount != 1:  # no old job (of this run and kind), or the new one is queued
                self.delete_job(replacing)
                cur = self._x(_INSERT_JOB, values)
        else:
            if replacing is not None:
                self.delete_job(replacing)
            cur = self._x(_INSERT_JOB, values)
        inserted = bool(cur.rowcount == 1)
        if inserted:
            self._tx.queued.append(job.job_id)
            if job.kind is JobKind.EXECUTE and job.run_id is not None:
                self.calls[job.run_id] = job
                if leased is not None:
                    self._preleased[job.run_id] = leased
        return inserted

    def _drop_preleased(self, *, job_id: str | None = None, run_id: str | None = None) -> None:
        """A call leased as it was queued changed since: ``lease_run_call`` must not take it."""
        if self._preleased:
            for key, job in list(self._preleased.items()):
                if job.job_id == job_id or key == run_id:
                    del self._preleased[key]

    def get_job(self, job_id: str, *, lock: bool = False) -> Job | None:
        suffix = self._row_lock() if lock else ""
        row = self._x(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE job_id = ?{suffix}", (job_id,)
        ).fetchone()
        return None if row is None else read_job(row)

    def update_job(self, job: Job) -> None:
        self._drop_preleased(job_id=job.job_id)
        self._tx.queued.append(job.job_id)
        self._x(
            "UPDATE jobs SET available_at = ?, attempt = ?, payload = ?, lease_owner = ?, "
            "lease_expires = ? WHERE job_id = ?",
            (
                job.available_at,
                job.attempt,
                dumps(job.payload),
                job.lease_owner,
                job.lease_expires,
                job.job_id,
            ),
        )

    def delete_job(self, job_id: str) -> None:
        self._drop_preleased(job_id=job_id)
        self._x("DELETE FROM jobs WHERE job_id = ?", (job_id,))

    def delete_run_jobs(self, run_id: str) -> None:
        self.forget_run_jobs(run_id)
        self._x("DELETE FROM jobs WHERE run_id = ?", (run_id,))

    def forget_run_jobs(self, run_id: str) -> None:
        """The run's jobs are being deleted in another statement (``Tx.close_run``)."""
        self._drop_preleased(run_id=run_id)

    def lease_jobs(self, owner: str, now: float, until: float, limit: int) -> list[Job]:
        # A leased job's available_at moves to its lease expiry: if the owner dies the
        # job simply becomes due again, so one index answers "what is due". A parked job
        # leased at its recheck is no longer parked: an unpark must not make it due again
        # while it runs (admit parks it anew if it does not fit). Admission goes oldest
        # first (queued_at, as parked calls wake): Postgres' RETURNING has no order.
        rows = self._x(
            "UPDATE jobs SET lease_owner = ?, lease_expires = ?, available_at = ?, "
            "lease_epoch = lease_epoch + 1, parked_on = NULL "
            "WHERE job_id IN (SELECT job_id FROM jobs WHERE available_at <= ? "
            f"ORDER BY available_at LIMIT ?{self._tx.skip_locked}) "
            f"RETURNING {JOB_COLUMNS}, queued_at",
            (owner, until, until, now, limit),
        ).fetchall()
        return [read_job(r) for r in sorted(rows, key=lambda r: r[-1] or 0.0)]

    def lease_run_call(self, run_id: str, owner: str, now: float, until: float) -> Job | None:
        """Lease a run's next due call, unless it is bound by concurrency limits.

        The worker that recorded a call's answer takes the run's next call in the same
        transaction (run affinity): no trip through the queue between two steps. Calls
        with concurrency keys always queue, so a run never jumps ahead of parked calls.
        A call this transaction queued is leased by its id, with no read first.
        """
        preleased = self._preleased.get(run_id)
        if preleased is not None and preleased.lease_owner == owner:
            del self._preleased[run_id]
            return preleased  # nothing else holds it (``calls`` holds the job as queued)
        queued = self.calls.get(run_id)
        if queued is not None and not queued.payload.get("keys"):
            leased = self.lease_job(queued.job_id, owner, now, until)
            if leased is not None:
                return leased
        row = self._x(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE run_id = ? AND kind = ? "
            f"AND available_at <= ? AND parked_on IS NULL "
            f"ORDER BY available_at LIMIT 1{self._tx.skip_locked}",
            (run_id, JobKind.EXECUTE.value, now),
        ).fetchone()
        if row is None:
            return None
        job = read_job(row)
        if job.payload.get("keys"):
            return None
        self._x(
            "UPDATE jobs SET lease_owner = ?, lease_expires = ?, available_at = ?, "
            "lease_epoch = lease_epoch + 1 WHERE job_id = ?",
            (owner, until, until, job.job_id),
        )
        # the row is locked (or the store serialises writes): nothing leased it between
        job.lease_owner, job.lease_expires, job.lease_epoch = owner, until, job.lease_epoch + 1
        return job

    def lease_job(self, job_id: str, owner: str, now: float, until: float) -> Job | None:
        """Lease one job by id if it is due (and not parked); None if it is not."""
        row = self._x(
            "UPDATE jobs SET lease_owner = ?, lease_expires = ?, available_at = ?, "
            "lease_epoch = lease_epoch + 1 "
            "WHERE job_id = ? AND available_at <= ? AND parked_on IS NULL "
            f"RETURNING {JOB_COLUMNS}",
            (owner, until, until, job_id, now),
        ).fetchone()
        return None if row is None else read_job(row)

    def extend_leases(self, owner: str, job_ids: Sequence[str], until: float) -> None:
        # Rows locked by another transaction are skipped, not waited for: the job's own
        # answer is being recorded (no need to extend), or another worker is taking over
        # a lapsed lease. Waiting here held up every lease of this node (and deadlocked
        # with the apply, which locks slots before the job).
        self._many(
            "UPDATE jobs SET lease_expires = ?, available_at = ? WHERE job_id IN ("
            f"SELECT job_id FROM jobs WHERE job_id = ? AND lease_owner = ?{self._tx.skip_locked})",
            [(until, until, job_id, owner) for job_id in job_ids],
        )
        self._many(
            "UPDATE slots SET expires_at = ? WHERE (key, job_id) IN ("
            f"SELECT key, job_id FROM slots WHERE job_id = ?{self._tx.skip_locked})",
            [(until, job_id) for job_id in job_ids],
        )

    def extend_held(self, job: Job, until: float) -> None:
        """Extend the lease on ``job``, which this transaction read locked and found its
        owner holding: one statement, with no subquery that skips locked rows (the row is
        this transaction's already); a second only for a call with concurrency keys (a
        call without them holds no slot)."""
        self._x(
            "UPDATE jobs SET lease_expires = ?, available_at = ? WHERE job_id = ? "
            "AND lease_owner = ?",
            (until, until, job.job_id, job.lease_owner),
        )
        if job.payload.get("keys"):
            self._x(
                "UPDATE slots SET expires_at = ? WHERE (key, job_id) IN ("
                f"SELECT key, job_id FROM slots WHERE job_id = ?{self._tx.skip_locked})",
                (until, job.job_id),
            )

    def next_job_at(self) -> float | None:
        row = self._x("SELECT MIN(available_at) FROM jobs").fetchone()
        due: float | None = None if row is None else row[0]
        # a call leased as it was queued is due as queued, until someone takes it
        for run_id in self._preleased:
            queued = self.calls[run_id].available_at
            due = queued if due is None else min(due, queued)
        return due

    def queue_summary(self, now: float) -> dict[str, tuple[int, float | None]]:
        # a scrape, not the hot path: one scan of the queue
        rows = self._x(
            "SELECT CASE WHEN parked_on IS NOT NULL THEN 'parked' "
            "WHEN available_at <= ? THEN 'due' "
            "WHEN lease_owner IS NOT NULL THEN 'running' ELSE 'scheduled' END AS state, "
            "COUNT(*), MIN(available_at) FROM jobs GROUP BY state",
            (now,),
        ).fetchall()
        return {str(r[0]): (int(r[1]), r[2]) for r in rows}

    def park_job(self, job_id: str, key: str, recheck_at: float) -> None:
        self._drop_preleased(job_id=job_id)
        self._x(
            "UPDATE jobs SET parked_on = ?, available_at = ?, lease_owner = NULL, "
            "lease_expires = NULL WHERE job_id = ?",
            (key, recheck_at, job_id),
        )

    def unpark_jobs(self, key: str, count: int) -> list[str]:
        if count <= 0:
            return []
        rows = self._x(
            "UPDATE jobs SET parked_on = NULL, available_at = "
            "CASE WHEN queued_at < available_at THEN queued_at ELSE available_at END "
            # parked_on is checked again on the row itself: on Postgres a row that a
            # concurrent lease took (and unparked) meanwhile is re-read and skipped
            "WHERE parked_on = ? AND job_id IN (SELECT job_id FROM jobs WHERE parked_on = ? "
            "ORDER BY queued_at LIMIT ?) RETURNING run_id",
            (key, key, count),
        ).fetchall()
        if rows:
            self._tx.queued.append("*")
        return [str(r[0]) for r in rows if r[0] is not None]


class JobsTx(TxSql, Protocol):
    """A transaction that sends its queue's statements through methods of its own
    (``SqliteTx``: it keeps what they wrote to ``jobs``)."""

    def execute_jobs(self, sql: str, args: Sequence[Any] = ()) -> Any: ...
    def execute_many_jobs(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...


class SqliteQueueSql(QueueSql):
    """SQLite's queue: a replaced job's row is rewritten as the new one's (``MOVE_JOB``).

    Its statements go through its transaction's ``execute_jobs``, which keeps whether
    they wrote ``jobs`` and the row of the job last moved: what ``sqlite_fence`` may keep
    of a call."""

    __slots__ = ()

    move_sql = MOVE_JOB

    def __init__(self, tx: JobsTx) -> None:
        super().__init__(tx)
        # the transaction's methods, never this part's: a part refers to nothing that
        # refers back to it, so it is freed without the cycle collector
        self._x, self._many = tx.execute_jobs, tx.execute_many_jobs


class PostgresQueueSql(QueueSql):
    """Postgres' queue: a replaced job goes in the insert's statement, and an unpark
    takes the key's lock and skips the rows a lease holds."""

    __slots__ = ()

    replace_sql = REPLACE_JOB

    def extend_leases(self, owner: str, job_ids: Sequence[str], until: float) -> None:
        # One statement a table, never psycopg's executemany: that is a pipeline whose
        # Sync goes in a write of its own, and a client cut off between the two leaves a
        # backend that executed the UPDATE (the row locked) waiting for the Sync, which
        # idle_in_transaction_session_timeout does not end (it arms only after a Sync):
        # the other nodes' leases would skip the call for good.
        if not job_ids:
            return
        ids = list(job_ids)
        self._x(
            "UPDATE jobs SET lease_expires = ?, available_at = ? WHERE job_id IN ("
            "SELECT job_id FROM jobs WHERE job_id = ANY(?) AND lease_owner = ?"
            f"{self._tx.skip_locked})",
            (until, until, ids, owner),
        )
        self._x(
            "UPDATE slots SET expires_at = ? WHERE (key, job_id) IN ("
            f"SELECT key, job_id FROM slots WHERE job_id = ANY(?){self._tx.skip_locked})",
            (until, ids),
        )

    def unpark_jobs(self, key: str, count: int) -> list[str]:
        self._lock(f"slots:{key}")
        if count <= 0:
            return []
        # SKIP LOCKED: a parked job whose row another transaction holds is being leased
        # at its recheck (that lease admits or re-parks it once this commits). Waiting
        # for it while holding slots:key deadlocked with that lease, which takes the row
        # first and slots:key second. MATERIALIZED keeps LIMIT applied exactly once.
        rows = self._x(
            "WITH picked AS MATERIALIZED (SELECT job_id FROM jobs WHERE parked_on = ? "
            "ORDER BY queued_at LIMIT ? FOR UPDATE SKIP LOCKED) "
            "UPDATE jobs SET parked_on = NULL, available_at = "
            "CASE WHEN queued_at < available_at THEN queued_at ELSE available_at END "
            "FROM picked WHERE jobs.job_id = picked.job_id RETURNING run_id",
            (key, count),
        ).fetchall()
        woken = [str(r[0]) for r in rows if r[0] is not None]
        if rows:
            self._tx.queued.append("*")
        return woken
