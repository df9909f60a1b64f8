"""The store's SQL, written once for SQLite and Postgres.

Both speak the same subset here: ``?`` placeholders (translated for Postgres),
``INSERT ... ON CONFLICT`` upserts, ``DELETE/UPDATE ... RETURNING``. Engine logic runs
as plain functions over a ``Tx`` inside one transaction; this class is that ``Tx``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stepline._json import dumps as _dumps
from stepline._json import loads as _loads
from stepline._status import RunStatus
from stepline.engine._model import (
    AppRecord,
    EventRecord,
    EventRunLink,
    FunctionRecord,
    Job,
    JobKind,
    Pause,
    PauseKind,
    Run,
    StepRecord,
    StepStatus,
)
from stepline.engine._store import EventFilter, RunFilter


def _json(value: Any) -> str | None:
    return None if value is None else _dumps(value)


def _unjson(text: str | None) -> Any:
    return None if text is None else _loads(text)


def upsert(table: str, columns: str, keys: str) -> str:
    """``INSERT ... ON CONFLICT (keys) DO UPDATE`` of every other column (both dialects)."""
    names = [c.strip() for c in columns.split(",")]
    key_names = {k.strip() for k in keys.split(",")}
    sets = ", ".join(f"{n} = excluded.{n}" for n in names if n not in key_names)
    marks = ",".join("?" * len(names))
    return (
        f"INSERT INTO {table} ({columns}) VALUES ({marks}) "
        f"ON CONFLICT ({keys}) DO UPDATE SET {sets}"
    )


_RUN_COLUMNS = (
    "run_id, function_id, app_id, status, events, event_ids, created_at, started_at, "
    "ended_at, output, stack, force_plan, request_version, correlation_id, parent_run_id, "
    "cancel_reason, origin, waiting, flow"
)
_STEP_COLUMNS = (
    "run_id, step_id, name, op, status, mode, memo, attempts, started_at, ended_at, seq, "
    "error, wait"
)
_JOB_COLUMNS = (
    "job_id, kind, available_at, run_id, step_id, attempt, payload, lease_owner, lease_expires"
)
_PAUSE_COLUMNS = (
    "pause_id, run_id, kind, event_name, expires_at, step_id, expression, correlation_id, "
    "trigger_event_id, context"
)
_UPSERT_RUN = upsert("runs", _RUN_COLUMNS, "run_id")
_UPSERT_STEP = upsert("steps", _STEP_COLUMNS, "run_id, step_id")
_UPSERT_PAUSE = upsert("pauses", _PAUSE_COLUMNS, "pause_id")
_UPSERT_LIMIT = upsert("limits", "scope, key, value, expires_at", "scope, key")
_UPSERT_SINGLETON = upsert("singletons", "function_id, key, run_id", "function_id, key")
_UPSERT_BUCKET = upsert("buckets", "function_id, key, run_id, deadline", "function_id, key")
_UPSERT_SLOT = upsert("slots", "key, job_id, expires_at", "key, job_id")
_APP_COLUMNS = "app_id, url, sdk, framework, synced_at, checksum, error, mode"
_UPSERT_APP = upsert("apps", _APP_COLUMNS, "app_id")
_UPSERT_FUNCTION = upsert(
    "functions", "function_id, app_id, name, config, updated_at", "function_id"
)


def _run(row: Sequence[Any]) -> Run:
    return Run(
        run_id=row[0],
        function_id=row[1],
        app_id=row[2],
        status=RunStatus(row[3]),
        events=_loads(row[4]),
        event_ids=_loads(row[5]),
        created_at=row[6],
        started_at=row[7],
        ended_at=row[8],
        output=row[9],
        stack=_loads(row[10]),
        force_plan=bool(row[11]),
        request_version=row[12],
        correlation_id=row[13],
        parent_run_id=row[14],
        cancel_reason=row[15],
        origin=row[16],
        waiting=_unjson(row[17]),
        flow=_unjson(row[18]),
    )


def _run_values(run: Run) -> Sequence[Any]:
    return (
        run.run_id,
        run.function_id,
        run.app_id,
        run.status.value,
        _dumps(run.events),
        _dumps(run.event_ids),
        run.created_at,
        run.started_at,
        run.ended_at,
        run.output,
        _dumps(run.stack),
        int(run.force_plan),
        run.request_version,
        run.correlation_id,
        run.parent_run_id,
        run.cancel_reason,
        run.origin,
        _json(run.waiting),
        _json(run.flow),
    )


_ENDED = tuple(status.value for status in RunStatus if status.terminal)


def _step(row: Sequence[Any]) -> StepRecord:
    return StepRecord(
        run_id=row[0],
        step_id=row[1],
        name=row[2],
        op=row[3],
        status=StepStatus(row[4]),
        mode=row[5],
        memo=_unjson(row[6]),
        attempts=row[7],
        started_at=row[8],
        ended_at=row[9],
        seq=row[10],
        error=_unjson(row[11]),
        wait=_unjson(row[12]),
    )


def _job(row: Sequence[Any]) -> Job:
    return Job(
        job_id=row[0],
        kind=JobKind(row[1]),
        available_at=row[2],
        run_id=row[3],
        step_id=row[4],
        attempt=row[5],
        payload=_loads(row[6]),
        lease_owner=row[7],
        lease_expires=row[8],
    )


def _pause(row: Sequence[Any]) -> Pause:
    return Pause(
        pause_id=row[0],
        run_id=row[1],
        kind=PauseKind(row[2]),
        event_name=row[3],
        expires_at=row[4],
        step_id=row[5],
        expression=row[6],
        correlation_id=row[7],
        trigger_event_id=row[8],
        context=_unjson(row[9]),
    )


def _event(row: Sequence[Any]) -> EventRecord:
    return EventRecord(internal_id=row[0], name=row[1], payload=_loads(row[2]), received_at=row[3])


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
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?{self._row_lock()}", (run_id,)
        ).fetchone()
        return None if row is None else _run(row)

    def ended(self, run_ids: Sequence[str]) -> list[str]:
        """Which of ``run_ids`` have ended (a cheap check for callers waiting on them)."""
        if not run_ids:
            return []
        marks = ",".join("?" * len(run_ids))
        rows = self._x(
            f"SELECT run_id FROM runs WHERE run_id IN ({marks}) AND status IN (?,?,?)",
            (*run_ids, *_ENDED),
        )
        return [str(row[0]) for row in rows]

    def insert_run(self, run: Run) -> bool:
        cur = self._x(
            f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES "
            "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
            _run_values(run),
        )
        return bool(cur.rowcount == 1)

    def update_run(self, run: Run) -> None:
        self._x(
            _UPSERT_RUN,
            _run_values(run),
        )

    def list_runs(self, where: RunFilter) -> list[Run]:
        clauses: list[str] = []
        args: list[Any] = []
        if where.function_id is not None:
            clauses.append("function_id = ?")
            args.append(where.function_id)
        if where.status:
            clauses.append(f"status IN ({','.join('?' * len(where.status))})")
            args.extend(s.value for s in where.status)
        if where.since is not None:
            clauses.append("created_at >= ?")
            args.append(where.since)
        if where.until is not None:
            clauses.append("created_at < ?")
            args.append(where.until)
        if where.event_id is not None:
            clauses.append(
                "run_id IN (SELECT l.run_id FROM event_runs l JOIN events e "
                "ON e.internal_id = l.event_id WHERE e.internal_id = ? OR e.id = ?)"
            )
            args.extend((where.event_id, where.event_id))
        if where.cursor is not None:
            clauses.append("run_id < ?")
            args.append(where.cursor)
        sql = f"SELECT {_RUN_COLUMNS} FROM runs"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY run_id DESC LIMIT ?"
        args.append(where.limit)
        return [_run(r) for r in self._x(sql, args)]

    def get_steps(self, run_id: str) -> list[StepRecord]:
        rows = self._x(
            f"SELECT {_STEP_COLUMNS} FROM steps WHERE run_id = ? "
            "ORDER BY seq IS NULL, seq, started_at",
            (run_id,),
        )
        return [_step(r) for r in rows]

    def put_step(self, step: StepRecord) -> None:
        self._x(
            _UPSERT_STEP,
            (
                step.run_id,
                step.step_id,
                step.name,
                step.op,
                step.status.value,
                step.mode,
                _json(step.memo) if step.status.done else None,
                step.attempts,
                step.started_at,
                step.ended_at,
                step.seq,
                _json(step.error),
                _json(step.wait),
            ),
        )

    # queue --------------------------------------------------------------------------
    def enqueue(self, job: Job) -> bool:
        cur = self._x(
            f"INSERT INTO jobs ({_JOB_COLUMNS}, queued_at) VALUES (?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT DO NOTHING",
            (
                job.job_id,
                job.kind.value,
                job.available_at,
                job.run_id,
                job.step_id,
                job.attempt,
                _dumps(job.payload),
                job.lease_owner,
                job.lease_expires,
                job.available_at,
            ),
        )
        inserted = bool(cur.rowcount == 1)
        if inserted:
            self.queued.append(job.job_id)
        return inserted

    def get_job(self, job_id: str, *, lock: bool = False) -> Job | None:
        suffix = self._row_lock() if lock else ""
        row = self._x(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE job_id = ?{suffix}", (job_id,)
        ).fetchone()
        return None if row is None else _job(row)

    def update_job(self, job: Job) -> None:
        self.queued.append(job.job_id)
        self._x(
            "UPDATE jobs SET available_at = ?, attempt = ?, payload = ?, lease_owner = ?, "
            "lease_expires = ? WHERE job_id = ?",
            (
                job.available_at,
                job.attempt,
                _dumps(job.payload),
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
        # while it runs (admit parks it anew if it still does not fit).
        rows = self._x(
            "UPDATE jobs SET lease_owner = ?, lease_expires = ?, available_at = ?, "
            "parked_on = NULL "
            "WHERE job_id IN (SELECT job_id FROM jobs WHERE available_at <= ? "
            f"ORDER BY available_at LIMIT ?{self.skip_locked}) "
            f"RETURNING {_JOB_COLUMNS}",
            (owner, until, until, now, limit),
        ).fetchall()
        return [_job(r) for r in rows]

    def lease_run_call(self, run_id: str, owner: str, now: float, until: float) -> Job | None:
        """Lease a run's next due call, unless it is bound by concurrency limits.

        The worker that recorded a call's answer takes the run's next call in the same
        transaction (run affinity): no trip through the queue between two steps. Calls
        with concurrency keys always queue, so a run never jumps ahead of parked calls.
        """
        row = self._x(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE run_id = ? AND kind = ? "
            f"AND available_at <= ? AND parked_on IS NULL "
            f"ORDER BY available_at LIMIT 1{self.skip_locked}",
            (run_id, JobKind.EXECUTE.value, now),
        ).fetchone()
        if row is None:
            return None
        job = _job(row)
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
            f"RETURNING {_JOB_COLUMNS}",
            (owner, until, until, job_id, now),
        ).fetchone()
        return None if row is None else _job(row)

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
        self._x(
            _UPSERT_PAUSE,
            (
                pause.pause_id,
                pause.run_id,
                pause.kind.value,
                pause.event_name,
                pause.expires_at,
                pause.step_id,
                pause.expression,
                pause.correlation_id,
                pause.trigger_event_id,
                _json(pause.context),
            ),
        )

    def get_pause(self, pause_id: str) -> Pause | None:
        row = self._x(
            f"SELECT {_PAUSE_COLUMNS} FROM pauses WHERE pause_id = ?", (pause_id,)
        ).fetchone()
        return None if row is None else _pause(row)

    def delete_pause(self, pause_id: str) -> bool:
        return bool(self._x("DELETE FROM pauses WHERE pause_id = ?", (pause_id,)).rowcount == 1)

    def pauses_for_event(self, event_name: str) -> list[Pause]:
        rows = self._x(
            f"SELECT {_PAUSE_COLUMNS} FROM pauses WHERE event_name = ? AND correlation_id IS NULL",
            (event_name,),
        )
        return [_pause(r) for r in rows]

    def pauses_for_correlation(self, correlation_id: str) -> list[Pause]:
        rows = self._x(
            f"SELECT {_PAUSE_COLUMNS} FROM pauses WHERE correlation_id = ?", (correlation_id,)
        )
        return [_pause(r) for r in rows]

    def run_pauses(self, run_id: str) -> list[Pause]:
        rows = self._x(f"SELECT {_PAUSE_COLUMNS} FROM pauses WHERE run_id = ?", (run_id,))
        return [_pause(r) for r in rows]

    def delete_run_pauses(self, run_id: str) -> None:
        self._x("DELETE FROM pauses WHERE run_id = ?", (run_id,))

    # events -------------------------------------------------------------------------
    def insert_event(self, event: EventRecord) -> bool:
        cur = self._x(
            "INSERT INTO events (internal_id, id, name, payload, received_at) "
            "VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING",
            (event.internal_id, event.id, event.name, _dumps(event.payload), event.received_at),
        )
        return bool(cur.rowcount == 1)

    def get_event(self, event_id: str) -> EventRecord | None:
        row = self._x(
            "SELECT internal_id, name, payload, received_at FROM events WHERE internal_id = ?",
            (event_id,),
        ).fetchone()
        if row is None:
            row = self._x(
                "SELECT internal_id, name, payload, received_at FROM events WHERE id = ? "
                "ORDER BY internal_id DESC LIMIT 1",
                (event_id,),
            ).fetchone()
        return None if row is None else _event(row)

    def list_events(self, where: EventFilter) -> list[EventRecord]:
        clauses: list[str] = []
        args: list[Any] = []
        if where.name is not None:
            clauses.append("name = ?")
            args.append(where.name)
        if where.since is not None:
            clauses.append("received_at >= ?")
            args.append(where.since)
        if where.until is not None:
            clauses.append("received_at < ?")
            args.append(where.until)
        if where.cursor is not None:
            clauses.append("internal_id < ?")
            args.append(where.cursor)
        sql = "SELECT internal_id, name, payload, received_at FROM events"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY internal_id DESC LIMIT ?"
        args.append(where.limit)
        return [_event(r) for r in self._x(sql, args)]

    def link_event(self, link: EventRunLink) -> None:
        self._x(
            "INSERT INTO event_runs (event_id, function_id, run_id, reason, at) VALUES (?,?,?,?,?)",
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
        cur = self._x(
            "INSERT INTO idempotency (scope, key, expires_at) VALUES (?,?,?) "
            "ON CONFLICT DO NOTHING",
            (scope, key, expires_at),
        )
        return bool(cur.rowcount == 1)

    # flow control ---------------------------------------------------------------------
    def get_limit(self, scope: str, key: str) -> float | None:
        self._lock(f"limit:{scope}:{key}")
        row = self._x(
            "SELECT value FROM limits WHERE scope = ? AND key = ?", (scope, key)
        ).fetchone()
        return None if row is None else float(row[0])

    def set_limit(self, scope: str, key: str, value: float, expires_at: float) -> None:
        self._x(
            _UPSERT_LIMIT,
            (scope, key, value, expires_at),
        )

    def singleton_run(self, function_id: str, key: str) -> str | None:
        self._lock(f"singleton:{function_id}:{key}")
        row = self._x(
            "SELECT run_id FROM singletons WHERE function_id = ? AND key = ?", (function_id, key)
        ).fetchone()
        return None if row is None else str(row[0])

    def set_singleton(self, function_id: str, key: str, run_id: str) -> None:
        self._x(
            _UPSERT_SINGLETON,
            (function_id, key, run_id),
        )

    def get_bucket(self, function_id: str, key: str) -> tuple[str, float] | None:
        self._lock(f"bucket:{function_id}:{key}")
        row = self._x(
            "SELECT run_id, deadline FROM buckets WHERE function_id = ? AND key = ?",
            (function_id, key),
        ).fetchone()
        return None if row is None else (str(row[0]), float(row[1]))

    def set_bucket(self, function_id: str, key: str, run_id: str, deadline: float) -> None:
        self._x(
            _UPSERT_BUCKET,
            (function_id, key, run_id, deadline),
        )

    def release_claims(self, run_id: str) -> None:
        self._x("DELETE FROM singletons WHERE run_id = ?", (run_id,))
        self._x("DELETE FROM buckets WHERE run_id = ?", (run_id,))

    def set_waiting(self, run_id: str, waiting: dict[str, Any] | None) -> None:
        self._x("UPDATE runs SET waiting = ? WHERE run_id = ?", (_json(waiting), run_id))

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
        old = self.get_app(app.app_id)
        modified = old is None or old.checksum != app.checksum or old.url != app.url
        self._x(
            _UPSERT_APP,
            (
                app.app_id,
                app.url,
                app.sdk,
                app.framework,
                app.synced_at,
                app.checksum,
                app.error,
                app.mode,
            ),
        )
        self._x("DELETE FROM functions WHERE app_id = ?", (app.app_id,))
        self._many(
            _UPSERT_FUNCTION,
            [(f.function_id, f.app_id, f.name, _dumps(f.config), f.updated_at) for f in functions],
        )
        return modified

    def get_app(self, app_id: str) -> AppRecord | None:
        row = self._x(
            "SELECT app_id, url, sdk, framework, synced_at, checksum, error, mode FROM apps "
            "WHERE app_id = ?",
            (app_id,),
        ).fetchone()
        return None if row is None else AppRecord(*row)

    def list_apps(self) -> list[AppRecord]:
        rows = self._x(
            "SELECT app_id, url, sdk, framework, synced_at, checksum, error, mode FROM apps "
            "ORDER BY app_id"
        )
        return [AppRecord(*r) for r in rows]

    def list_functions(self) -> list[FunctionRecord]:
        rows = self._x(
            "SELECT function_id, app_id, name, config, updated_at FROM functions "
            "ORDER BY function_id"
        )
        return [FunctionRecord(r[0], r[1], r[2], _loads(r[3]), r[4]) for r in rows]

    def set_app_error(self, url: str, error: str | None, now: float) -> None:
        self._x("UPDATE apps SET error = ?, synced_at = ? WHERE url = ?", (error, now, url))
