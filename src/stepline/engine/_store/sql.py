"""The store's SQL, written once for SQLite and Postgres.

Both speak the same subset here: ``?`` placeholders (translated for Postgres),
``INSERT ... ON CONFLICT`` upserts, ``DELETE/UPDATE ... RETURNING``. Engine logic runs
as plain functions over a ``Tx`` inside one transaction; this class is that ``Tx``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from stepline._json import dumps, loads
from stepline._status import RunStatus
from stepline.engine._model import (
    AppRecord,
    EventRecord,
    EventRunLink,
    FunctionRecord,
    Job,
    JobKind,
    Pause,
    Run,
    StepRecord,
)
from stepline.engine._store import EventFilter, RunFilter, filters
from stepline.engine._store.rows import (
    APP_COLUMNS,
    EVENT_COLUMNS,
    FUNCTION_COLUMNS,
    JOB_COLUMNS,
    PAUSE_COLUMNS,
    RUN_COLUMNS,
    STEP_COLUMNS,
    insert,
    job_values,
    json_or_null,
    pause_values,
    read_event,
    read_job,
    read_pause,
    read_run,
    read_step,
    run_values,
    step_values,
    upsert,
)
from stepline.engine._trust.apps import FunctionTakenError

_INSERT_RUN = insert("runs", RUN_COLUMNS, on_conflict="DO NOTHING")
_UPSERT_RUN = upsert("runs", RUN_COLUMNS, "run_id")
_UPSERT_STEP = upsert("steps", STEP_COLUMNS, "run_id, step_id")
#: a job's ``queued_at`` is its first ``available_at`` (the order parked calls wake in)
_INSERT_JOB = insert("jobs", f"{JOB_COLUMNS}, queued_at", on_conflict="DO NOTHING")
_UPSERT_PAUSE = upsert("pauses", PAUSE_COLUMNS, "pause_id")
_INSERT_EVENT = insert(
    "events", "internal_id, id, name, payload, received_at", on_conflict="DO NOTHING"
)
_INSERT_LINK = insert("event_runs", "event_id, function_id, run_id, reason, at")
_INSERT_KEY = insert("idempotency", "scope, key, expires_at", on_conflict="DO NOTHING")
_UPSERT_LIMIT = upsert("limits", "scope, key, value, expires_at", "scope, key")
_UPSERT_SINGLETON = upsert("singletons", "function_id, key, run_id", "function_id, key")
_UPSERT_BUCKET = upsert("buckets", "function_id, key, run_id, deadline", "function_id, key")
_UPSERT_SLOT = upsert("slots", "key, job_id, expires_at", "key, job_id")
_UPSERT_APP = upsert("apps", APP_COLUMNS, "app_id")
_UPSERT_FUNCTION = upsert("functions", FUNCTION_COLUMNS, "function_id")
_ENDED = tuple(status.value for status in RunStatus if status.terminal)
_ENDED_MARKS = ",".join("?" * len(_ENDED))


class SqlTx:
    """``Tx`` over one DB-API connection with a transaction open.

    The SQL is written once, in the dialect SQLite and Postgres share (``?`` placeholders,
    ``ON CONFLICT`` upserts, ``RETURNING``); subclasses set the few differences: the
    placeholder, row locks for read-modify-write, and advisory locks on flow-control keys.
    """

    #: appended to the lease query's inner SELECT (``FOR UPDATE SKIP LOCKED`` on Postgres)
    skip_locked = ""

    def __init__(self, conn: Any, *, write: bool = True) -> None:
        self._c = conn
        self._write = write
        #: jobs this transaction queued or made due again ("*": some unparked job)
        self.queued: list[str] = []

    def _x(self, sql: str, args: Sequence[Any] = ()) -> Any:
        return self._c.execute(sql, args)

    def _many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._c.executemany(sql, rows)

    def _lock(self, name: str) -> None:
        """Serialise writers on ``name`` until the transaction ends.

        A no-op on SQLite, where one writer at a time holds the whole database.
        """

    def _row_lock(self) -> str:
        """The clause a locking read in a write transaction ends with (where needed)."""
        return ""

    # runs and steps ---------------------------------------------------------------
    def get_run(self, run_id: str) -> Run | None:
        row = self._x(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?{self._row_lock()}", (run_id,)
        ).fetchone()
        return None if row is None else read_run(row)

    def ended(self, run_ids: Sequence[str]) -> list[str]:
        """Which of ``run_ids`` have ended (a cheap check for callers waiting on them)."""
        if not run_ids:
            return []
        marks = ",".join("?" * len(run_ids))
        rows = self._x(
            f"SELECT run_id FROM runs WHERE run_id IN ({marks}) AND status IN ({_ENDED_MARKS})",
            (*run_ids, *_ENDED),
        )
        return [str(row[0]) for row in rows]

    def insert_run(self, run: Run) -> bool:
        cur = self._x(_INSERT_RUN, run_values(run))
        return bool(cur.rowcount == 1)

    def update_run(self, run: Run) -> None:
        self._x(_UPSERT_RUN, run_values(run))

    def list_runs(self, where: RunFilter) -> list[Run]:
        sql, args = filters.runs_query(where)
        return [read_run(r) for r in self._x(sql, args)]

    def get_steps(self, run_id: str) -> list[StepRecord]:
        rows = self._x(
            f"SELECT {STEP_COLUMNS} FROM steps WHERE run_id = ? "
            "ORDER BY seq IS NULL, seq, started_at",
            (run_id,),
        )
        return [read_step(r) for r in rows]

    def put_step(self, step: StepRecord) -> None:
        self._x(_UPSERT_STEP, step_values(step))

    # queue --------------------------------------------------------------------------
    def enqueue(self, job: Job) -> bool:
        cur = self._x(_INSERT_JOB, (*job_values(job), job.available_at))
        inserted = bool(cur.rowcount == 1)
        if inserted:
            self.queued.append(job.job_id)
        return inserted

    def get_job(self, job_id: str, *, lock: bool = False) -> Job | None:
        suffix = self._row_lock() if lock else ""
        row = self._x(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE job_id = ?{suffix}", (job_id,)
        ).fetchone()
        return None if row is None else read_job(row)

    def update_job(self, job: Job) -> None:
        self.queued.append(job.job_id)
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
        self._x("DELETE FROM jobs WHERE job_id = ?", (job_id,))

    def delete_run_jobs(self, run_id: str) -> None:
        self._x("DELETE FROM jobs WHERE run_id = ?", (run_id,))

    def lease_jobs(self, owner: str, now: float, until: float, limit: int) -> list[Job]:
        # A leased job's available_at moves to its lease expiry: if the owner dies the
        # job simply becomes due again, so one index answers "what is due". A parked job
        # leased at its recheck is no longer parked: an unpark must not make it due again
        # while it runs (admit parks it anew if it does not fit). Admission goes oldest
        # first (queued_at, as parked calls wake): Postgres' RETURNING has no order.
        rows = self._x(
            "UPDATE jobs SET lease_owner = ?, lease_expires = ?, available_at = ?, "
            "parked_on = NULL WHERE job_id IN (SELECT job_id FROM jobs WHERE available_at <= ? "
            f"ORDER BY available_at LIMIT ?{self.skip_locked}) RETURNING {JOB_COLUMNS}, queued_at",
            (owner, until, until, now, limit),
        ).fetchall()
        return [read_job(r) for r in sorted(rows, key=lambda r: r[-1] or 0.0)]

    def lease_run_call(self, run_id: str, owner: str, now: float, until: float) -> Job | None:
        """Lease a run's next due call, unless it is bound by concurrency limits.

        The worker that recorded a call's answer takes the run's next call in the same
        transaction (run affinity): no trip through the queue between two steps. Calls
        with concurrency keys always queue, so a run never jumps ahead of parked calls.
        """
        row = self._x(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE run_id = ? AND kind = ? "
            f"AND available_at <= ? AND parked_on IS NULL "
            f"ORDER BY available_at LIMIT 1{self.skip_locked}",
            (run_id, JobKind.EXECUTE.value, now),
        ).fetchone()
        if row is None:
            return None
        job = read_job(row)
        if job.payload.get("keys"):
            return None
        self._x(
            "UPDATE jobs SET lease_owner = ?, lease_expires = ?, available_at = ? WHERE job_id = ?",
            (owner, until, until, job.job_id),
        )
        job.lease_owner, job.lease_expires = owner, until
        return job

    def lease_job(self, job_id: str, owner: str, now: float, until: float) -> Job | None:
        """Lease one job by id if it is due (and not parked); None if it is not."""
        row = self._x(
            "UPDATE jobs SET lease_owner = ?, lease_expires = ?, available_at = ? "
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
            f"SELECT job_id FROM jobs WHERE job_id = ? AND lease_owner = ?{self.skip_locked})",
            [(until, until, job_id, owner) for job_id in job_ids],
        )
        self._many(
            "UPDATE slots SET expires_at = ? WHERE (key, job_id) IN ("
            f"SELECT key, job_id FROM slots WHERE job_id = ?{self.skip_locked})",
            [(until, job_id) for job_id in job_ids],
        )

    def next_job_at(self) -> float | None:
        row = self._x("SELECT MIN(available_at) FROM jobs").fetchone()
        return None if row is None else row[0]

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

    # pauses -------------------------------------------------------------------------
    def insert_pause(self, pause: Pause) -> None:
        self._x(_UPSERT_PAUSE, pause_values(pause))

    def get_pause(self, pause_id: str) -> Pause | None:
        row = self._x(
            f"SELECT {PAUSE_COLUMNS} FROM pauses WHERE pause_id = ?", (pause_id,)
        ).fetchone()
        return None if row is None else read_pause(row)

    def delete_pause(self, pause_id: str) -> bool:
        return bool(self._x("DELETE FROM pauses WHERE pause_id = ?", (pause_id,)).rowcount == 1)

    def pauses_for_event(self, event_name: str) -> list[Pause]:
        rows = self._x(
            f"SELECT {PAUSE_COLUMNS} FROM pauses WHERE event_name = ? AND correlation_id IS NULL",
            (event_name,),
        )
        return [read_pause(r) for r in rows]

    def pauses_for_correlation(self, correlation_id: str) -> list[Pause]:
        rows = self._x(
            f"SELECT {PAUSE_COLUMNS} FROM pauses WHERE correlation_id = ?", (correlation_id,)
        )
        return [read_pause(r) for r in rows]

    def run_pauses(self, run_id: str) -> list[Pause]:
        rows = self._x(f"SELECT {PAUSE_COLUMNS} FROM pauses WHERE run_id = ?", (run_id,))
        return [read_pause(r) for r in rows]

    def delete_run_pauses(self, run_id: str) -> None:
        self._x("DELETE FROM pauses WHERE run_id = ?", (run_id,))

    # events -------------------------------------------------------------------------
    def insert_event(self, event: EventRecord) -> bool:
        cur = self._x(
            _INSERT_EVENT,
            (event.internal_id, event.id, event.name, dumps(event.payload), event.received_at),
        )
        return bool(cur.rowcount == 1)

    def get_event(self, event_id: str) -> EventRecord | None:
        row = self._x(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE internal_id = ?",
            (event_id,),
        ).fetchone()
        if row is None:
            row = self._x(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE id = ? "
                "ORDER BY internal_id DESC LIMIT 1",
                (event_id,),
            ).fetchone()
        return None if row is None else read_event(row)

    def list_events(self, where: EventFilter) -> list[EventRecord]:
        sql, args = filters.events_query(where)
        return [read_event(r) for r in self._x(sql, args)]

    def link_event(self, link: EventRunLink) -> None:
        self._x(
            _INSERT_LINK,
            (link.event_id, link.function_id, link.run_id, link.reason, link.at),
        )

    def run_for_event_id(self, function_id: str, event_id: str) -> str | None:
        row = self._x(
            "SELECT l.run_id FROM events e JOIN event_runs l ON l.event_id = e.internal_id "
            "WHERE e.id = ? AND l.function_id = ? AND l.run_id IS NOT NULL "
            "ORDER BY e.internal_id DESC LIMIT 1",
            (event_id, function_id),
        ).fetchone()
        return None if row is None else str(row[0])

    def event_links(self, internal_id: str) -> list[EventRunLink]:
        rows = self._x(
            "SELECT event_id, function_id, run_id, reason, at FROM event_runs "
            "WHERE event_id = ? ORDER BY at",
            (internal_id,),
        )
        return [EventRunLink(*r) for r in rows]

    def update_link(self, event_id: str, run_id: str, reason: str | None) -> None:
        self._x(
            "UPDATE event_runs SET reason = ? WHERE event_id = ? AND run_id = ?",
            (reason, event_id, run_id),
        )

    def claim_key(self, scope: str, key: str, expires_at: float, now: float) -> bool:
        self._x(
            "DELETE FROM idempotency WHERE scope = ? AND key = ? AND expires_at <= ?",
            (scope, key, now),
        )
        cur = self._x(_INSERT_KEY, (scope, key, expires_at))
        return bool(cur.rowcount == 1)

    # flow control ---------------------------------------------------------------------
    def get_limit(self, scope: str, key: str) -> float | None:
        self._lock(f"limit:{scope}:{key}")
        row = self._x(
            "SELECT value FROM limits WHERE scope = ? AND key = ?", (scope, key)
        ).fetchone()
        return None if row is None else float(row[0])

    def set_limit(self, scope: str, key: str, value: float, expires_at: float) -> None:
        self._x(_UPSERT_LIMIT, (scope, key, value, expires_at))

    def singleton_run(self, function_id: str, key: str) -> str | None:
        self._lock(f"singleton:{function_id}:{key}")
        row = self._x(
            "SELECT run_id FROM singletons WHERE function_id = ? AND key = ?", (function_id, key)
        ).fetchone()
        return None if row is None else str(row[0])

    def set_singleton(self, function_id: str, key: str, run_id: str) -> None:
        self._x(_UPSERT_SINGLETON, (function_id, key, run_id))

    def get_bucket(self, function_id: str, key: str) -> tuple[str, float] | None:
        self._lock(f"bucket:{function_id}:{key}")
        row = self._x(
            "SELECT run_id, deadline FROM buckets WHERE function_id = ? AND key = ?",
            (function_id, key),
        ).fetchone()
        return None if row is None else (str(row[0]), float(row[1]))

    def set_bucket(self, function_id: str, key: str, run_id: str, deadline: float) -> None:
        self._x(_UPSERT_BUCKET, (function_id, key, run_id, deadline))

    def release_claims(self, run_id: str) -> None:
        self._x("DELETE FROM singletons WHERE run_id = ?", (run_id,))
        self._x("DELETE FROM buckets WHERE run_id = ?", (run_id,))

    def set_waiting(self, run_id: str, waiting: dict[str, Any] | None) -> None:
        self._x("UPDATE runs SET waiting = ? WHERE run_id = ?", (json_or_null(waiting), run_id))

    # concurrency slots ------------------------------------------------------------------
    def acquire_slots(
        self, job_id: str, keys: Sequence[tuple[str, int]], now: float, until: float
    ) -> str | None:
        for key in sorted(k for k, _ in keys):  # one order everywhere: no lock cycles
            self._lock(f"slots:{key}")
        for key, limit in keys:
            (held,) = self._x(
                "SELECT COUNT(*) FROM slots WHERE key = ? AND expires_at > ? AND job_id != ?",
                (key, now, job_id),
            ).fetchone()
            if held >= limit:
                return key
        self._many(
            _UPSERT_SLOT,
            [(key, job_id, until) for key, _ in keys],
        )
        return None

    def release_slots(self, job_id: str) -> list[str]:
        rows = self._x("DELETE FROM slots WHERE job_id = ? RETURNING key", (job_id,))
        return [str(r[0]) for r in rows.fetchall()]

    def count_slots(self, key: str, now: float) -> int:
        (held,) = self._x(
            "SELECT COUNT(*) FROM slots WHERE key = ? AND expires_at > ?", (key, now)
        ).fetchone()
        return int(held)

    def expire_slots(self, now: float) -> dict[str, int]:
        # Expired slots another lease is deleting right now are left to it (it wakes
        # their keys): every node's lease used to queue up behind the same rows.
        rows = self._x(
            "DELETE FROM slots WHERE (key, job_id) IN (SELECT key, job_id FROM slots "
            f"WHERE expires_at <= ?{self.skip_locked}) AND expires_at <= ? RETURNING key",
            (now, now),
        ).fetchall()
        freed: dict[str, int] = {}
        for (key,) in rows:
            freed[key] = freed.get(key, 0) + 1
        return freed

    def park_job(self, job_id: str, key: str, recheck_at: float) -> None:
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
            self.queued.append("*")
        return [str(r[0]) for r in rows if r[0] is not None]

    # apps and functions ---------------------------------------------------------------
    def put_app(self, app: AppRecord, functions: Sequence[FunctionRecord]) -> bool:
        # a function id belongs to the app that registered it first; the lock holds the
        # check true until commit (two apps racing for one id: the second is refused)
        self._lock("functions:owners")
        wanted = {f.function_id for f in functions}
        others = self._x(
            "SELECT function_id, app_id FROM functions WHERE app_id <> ?", (app.app_id,)
        )
        taken = {str(r[0]): str(r[1]) for r in others if r[0] in wanted}
        if taken:
            raise FunctionTakenError(app.app_id, taken)
        old = self.get_app(app.app_id)
        modified = old is None or old.checksum != app.checksum or old.url != app.url
        self._x(_UPSERT_APP, dataclasses.astuple(app))
        self._x("DELETE FROM functions WHERE app_id = ?", (app.app_id,))
        self._many(
            _UPSERT_FUNCTION,
            [(f.function_id, f.app_id, f.name, dumps(f.config), f.updated_at) for f in functions],
        )
        return modified

    def get_app(self, app_id: str) -> AppRecord | None:
        row = self._x(
            f"SELECT {APP_COLUMNS} FROM apps WHERE app_id = ?",
            (app_id,),
        ).fetchone()
        return None if row is None else AppRecord(*row)

    def list_apps(self) -> list[AppRecord]:
        rows = self._x(f"SELECT {APP_COLUMNS} FROM apps ORDER BY app_id")
        return [AppRecord(*r) for r in rows]

    def list_functions(self) -> list[FunctionRecord]:
        rows = self._x(f"SELECT {FUNCTION_COLUMNS} FROM functions ORDER BY function_id")
        return [FunctionRecord(r[0], r[1], r[2], loads(r[3]), r[4]) for r in rows]

    def set_app_error(self, url: str, error: str | None, now: float) -> None:
        self._x("UPDATE apps SET error = ?, synced_at = ? WHERE url = ?", (error, now, url))
