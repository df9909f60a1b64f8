"""The store's SQL, written once for SQLite and Postgres.

Both speak the same subset here: ``?`` placeholders (translated for Postgres),
``INSERT ... ON CONFLICT`` upserts, ``DELETE/UPDATE ... RETURNING``. Engine logic runs
as plain functions over a ``Tx`` inside one transaction; this class is that ``Tx``: the
operations on runs, steps, events and pauses here, each other concern's in a part of its
own (``part``), built when first used.
"""

from __future__ import annotations

import functools
import itertools
import operator
from collections.abc import Callable, Collection, Sequence
from typing import Any, TypeVar

from stepline._json import dumps
from stepline._status import RunStatus
from stepline.engine._model import (
    EventRecord,
    EventRunLink,
    Job,
    Pause,
    Run,
    StepRecord,
    StepStatus,
)
from stepline.engine._store import EventFilter, RunFilter, filters
from stepline.engine._store.apps import AppsSql
from stepline.engine._store.attempts import AttemptsSql
from stepline.engine._store.attributes import AttributesSql
from stepline.engine._store.audit import AuditSql
from stepline.engine._store.browsing import BrowsingSql
from stepline.engine._store.bulk import BulkSql
from stepline.engine._store.controls import ControlsSql
from stepline.engine._store.deploy_checks import DeployChecksSql
from stepline.engine._store.flow import FlowSql
from stepline.engine._store.function_metrics import MetricsSql
from stepline.engine._store.live import LiveSql
from stepline.engine._store.messages import MessagesSql
from stepline.engine._store.part import LazyPart
from stepline.engine._store.queue import QueueSql
from stepline.engine._store.rows import (
    EVENT_COLUMNS,
    JOB_COLUMNS,
    PAUSE_COLUMNS,
    RUN_COLUMNS,
    STEP_COLUMNS,
    insert,
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
from stepline.engine._store.saved_views import SavedViewsSql
from stepline.engine._store.seen import Seen
from stepline.engine._store.signals import SignalsSql
from stepline.engine._store.tokens import TokensSql
from stepline.engine._store.versions import VersionsSql

T = TypeVar("T")
TxT = TypeVar("TxT", bound="SqlTx")

_INSERT_RUN = insert("runs", RUN_COLUMNS, on_conflict="DO NOTHING")
_UPSERT_RUN = upsert("runs", RUN_COLUMNS, "run_id")
UPSERT_STEP = upsert("steps", STEP_COLUMNS, "run_id, step_id")
_UPSERT_PAUSE = upsert("pauses", PAUSE_COLUMNS, "pause_id")
_EVENT_INSERT_COLUMNS = "internal_id, id, name, payload, received_at"
_INSERT_EVENT = insert("events", _EVENT_INSERT_COLUMNS, on_conflict="DO NOTHING")
#: rows per multi-row INSERT of a batch of events (SQLite allows 32,766 variables)
_EVENTS_PER_INSERT = 200
#: runs ``lock_runs`` reads per statement (a bounded ``IN`` list)
_AHEAD = 500
_INSERT_LINK = insert("event_runs", "event_id, function_id, run_id, reason, at")
_INSERT_KEY = insert("idempotency", "scope, key, expires_at", on_conflict="DO NOTHING")
_ENDED = tuple(status.value for status in RunStatus if status.terminal)
_ENDED_MARKS = ",".join("?" * len(_ENDED))
_ENDED_STEPS = tuple(status.value for status in StepStatus if status.ended)
#: one row of the run's other steps not ended, if any: the steps' key range, not decoded
_PENDING_STEP = (
    "SELECT 1 FROM steps WHERE run_id = ? AND step_id <> ? "
    f"AND status NOT IN ({','.join('?' * len(_ENDED_STEPS))}) LIMIT 1"
)
#: the run's last done step's ``seq``, and its done steps in order (index ``steps_done``)
_LAST_SEQ = "SELECT seq FROM steps WHERE run_id = ? AND seq IS NOT NULL ORDER BY seq DESC LIMIT 1"
_STACK = "SELECT step_id FROM steps WHERE run_id = ? AND seq IS NOT NULL ORDER BY seq"
_RUN_NAMES = tuple(name.strip() for name in RUN_COLUMNS.split(","))
_JOB_NAMES = tuple(name.strip() for name in JOB_COLUMNS.split(","))
_CALL_COLUMNS = ", ".join([f"j.{c}" for c in _JOB_NAMES] + [f"r.{c}" for c in _RUN_NAMES])
#: a call's job joined with its run's row, its steps revision, and whether any function
#: is paused (``SqlTx.get_call``; a write transaction adds its row lock)
CALL_SQL = (
    f"SELECT {_CALL_COLUMNS}, r.steps_rev, EXISTS (SELECT 1 FROM function_controls "
    "WHERE paused_at IS NOT NULL) FROM jobs j JOIN runs r ON r.run_id = j.run_id "
    "WHERE j.job_id = ?"
)
#: where the run's columns start in ``CALL_SQL``'s row
CALL_WIDTH = len(_JOB_NAMES)


@functools.lru_cache(maxsize=256)
def _update_run(changed: tuple[int, ...]) -> str:
    """``UPDATE runs`` of the columns at ``changed`` (positions in ``RUN_COLUMNS``)."""
    sets = ", ".join(f"{_RUN_NAMES[i]} = ?" for i in changed)
    return f"UPDATE runs SET {sets} WHERE run_id = ?"


@functools.lru_cache(maxsize=256)
def _update_run_with_step(changed: tuple[int, ...]) -> str:
    """``_update_run(changed)`` upserting a step of the run in a ``WITH`` (Postgres)."""
    return f"WITH s AS ({UPSERT_STEP}) {_update_run(changed)}"


class SqlTx:
    """``Tx`` over one DB-API connection with a transaction open.

    The SQL is written once, in the dialect SQLite and Postgres share (``?`` placeholders,
    ``ON CONFLICT`` upserts, ``RETURNING``); subclasses set the few differences: the
    placeholder, row locks for read-modify-write, and advisory locks on flow-control keys.
    The other concerns' SQL is in parts (``part``), each built on first use; a dialect
    subclass names its own part where one differs (``PostgresTx.queue``).
    """

    #: ``update_run`` may upsert a step in its statement (a ``WITH``: Postgres)
    step_with_run = False
    #: ends a locking subquery that skips rows others hold (``FOR UPDATE SKIP LOCKED``
    #: on Postgres): the queue's leases, expired slots, retention
    skip_locked = ""
    #: notes what this transaction does to runs and steps, when an observer asked
    seen: Seen | None = None

    queue = LazyPart(QueueSql)
    flow = LazyPart(FlowSql)
    apps = LazyPart(AppsSql)
    versions = LazyPart(VersionsSql)
    messages = LazyPart(MessagesSql)
    controls = LazyPart(ControlsSql)
    attributes = LazyPart(AttributesSql)
    bulk = LazyPart(BulkSql)
    signals = LazyPart(SignalsSql)
    attempts = LazyPart(AttemptsSql)
    metrics = LazyPart(MetricsSql)
    browsing = LazyPart(BrowsingSql)
    live = LazyPart(LiveSql)
    tokens = LazyPart(TokensSql)
    deploy_checks = LazyPart(DeployChecksSql)
    audit = LazyPart(AuditSql)
    saved_views = LazyPart(SavedViewsSql)

    def __init__(self, conn: Any, *, write: bool = True) -> None:
        self._c = conn
        self._write = write
        self.queued: list[str] = []
        self.claimed: set[str] = set()
        self.ended_runs: list[Run] = []
        #: each run's row as this write transaction read or last wrote it: ``get_run``
        #: reads it again from here, ``update_run`` writes only the columns that changed
        #: (fewer index entries rewritten). Every write to ``runs`` goes through
        #: ``insert_run``/``update_run`` or drops the row here (``forget_runs``).
        self._run_rows: dict[str, Sequence[Any]] = {}
        #: each run's events and event ids as ``get_run`` read them, with their stored
        #: text: ``update_run`` writes that text while the run holds the same lists (a
        #: run's events are never changed in place, ``Run``), with no encoding of them
        self._kept: dict[str, tuple[object, str, object, str]] = {}
        #: runs this transaction created that have no step yet (``get_steps`` reads none)
        self._stepless: set[str] = set()
        #: each run's steps revision as this write transaction read it, plus the steps it
        #: wrote since (a trigger adds one per step row written: ``steps_revision``)
        self._revisions: dict[str, int] = {}
        #: event names checked for waits in this transaction, and those some wait listens for
        self._names_known: set[str] = set()
        self._names_waited: set[str] = set()
        #: each run's steps as ``lock_runs`` read them, with the run's steps revision then:
        #: ``get_steps`` answers from here while the revision is still that
        self._steps_ahead: dict[str, tuple[int, list[StepRecord]]] = {}
        #: runs ``lock_runs`` found with no pause (``delete_run_pauses`` deletes none)
        self._pauseless: set[str] = set()

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        return self._c.execute(sql, args)

    def write(self, sql: str, args: Sequence[Any] = ()) -> None:
        """A write whose answer nobody reads: where a statement is a round trip it may
        go with the transaction's next statement or its commit, and fail there."""
        self.execute(sql, args)

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._c.executemany(sql, rows)

    def lock(self, name: str) -> None:
        """Serialise writers on ``name`` until the transaction ends.

        A no-op on SQLite, where one writer at a time holds the whole database.
        """

    def row_lock(self) -> str:
        """The clause a locking read in a write transaction ends with (where needed)."""
        return ""

    def end(self) -> None:
        """The transaction is over: let go of its parts, so that it is freed as soon as
        its work returns. Each part refers back to it, a cycle only the garbage collector
        would free (with a transaction per step, twice the collections)."""
        built = self.__dict__
        for name in _PARTS:
            built.pop(name, None)

    def note_apps_changed(self) -> None:
        """Apps or their versions were written (Postgres tells the other nodes to reload)."""

    def note_streamed(self, run_id: str) -> None:
        """Messages were appended to ``run_id``'s stream (Postgres tells the other nodes)."""

    def is_new(self, run_id: str) -> bool:
        """Whether this transaction created ``run_id`` and has written no step of it yet."""
        return run_id in self._stepless

    # runs and steps ---------------------------------------------------------------
    def get_run(self, run_id: str) -> Run | None:
        row = self._run_rows.get(run_id)
        if row is None:
            row = self.execute(
                f"SELECT {RUN_COLUMNS}, steps_rev FROM runs WHERE run_id = ?{self.row_lock()}",
                (run_id,),
            ).fetchone()
            if row is None:
                return None
            if self._write:  # locked (Postgres) or alone (SQLite): it cannot change under us
                self._run_rows[run_id] = row
                self._revisions[run_id] = row[-1]
        run = read_run(row)
        if self._write:  # the lists as read, with their text: written back as is
            self._kept[run_id] = (run.events, row[4], run.event_ids, row[5])
        if self.seen is not None:
            self.seen.read(run)
        return run

    def steps_revision(self, run_id: str) -> int | None:
        """The revision of ``run_id``'s steps as this write transaction leaves them: the
        one it read with the run's row (locked), plus one per step row it wrote since.
        None when it has not read the row. Any other writer of a step changes it."""
        return self._revisions.get(run_id)

    def get_call(self, job_id: str) -> Job | None:
        """``get_job(job_id, lock=True)`` of a call, with its run's row read (and locked)
        by the same statement, and whether any function is paused: the ``get_run`` that
        follows sends nothing, nor does ``controls.paused_functions`` when none is (usually)."""
        row = self._call_row(job_id)
        if row is None:  # no such job, or its run is gone
            return self.queue.get_job(job_id, lock=True)
        if self._write:
            self._run_rows[row[CALL_WIDTH]] = row[CALL_WIDTH:-2]
            self._revisions[row[CALL_WIDTH]] = row[-2]
        if not row[-1]:  # nothing to park a call on, nor a share lock to take
            self.controls.none_paused()
        return read_job(row[:CALL_WIDTH])

    def may_answer_from_kept_rows(self) -> None:
        """Nothing here: this transaction reads what it needs."""

    def _call_row(self, job_id: str) -> Sequence[Any] | None:
        """``get_call``'s row (``CALL_SQL``), None for no such job or run."""
        row: Sequence[Any] | None = self.execute(
            f"{CALL_SQL}{self.row_lock()}", (job_id,)
        ).fetchone()
        return row

    def run_row(self, run_id: str) -> Sequence[Any] | None:
        """``run_id``'s row as this write transaction read or last wrote it, if it has."""
        return self._run_rows.get(run_id)

    def forget_runs(self) -> None:
        """Drop what this transaction remembers of runs' rows (after writing ``runs``
        other than through ``insert_run`` and ``update_run``)."""
        self._run_rows.clear()
        self._kept.clear()
        self._stepless.clear()
        self._revisions.clear()

    def ended(self, run_ids: Sequence[str]) -> list[str]:
        """Which of ``run_ids`` have ended (a cheap check for callers waiting on them)."""
        if not run_ids:
            return []
        marks = ",".join("?" * len(run_ids))
        rows = self.execute(
            f"SELECT run_id FROM runs WHERE run_id IN ({marks}) AND status IN ({_ENDED_MARKS})",
            (*run_ids, *_ENDED),
        )
        return [str(row[0]) for row in rows]

    def insert_run(self, run: Run) -> bool:
        values = run_values(run)
        if self.execute(_INSERT_RUN, values).rowcount != 1:
            return False
        self._run_rows[run.run_id] = values
        self._stepless.add(run.run_id)
        self._revisions[run.run_id] = 0
        # new: no wait, singleton or bucket names it until this transaction writes one
        self._pauseless.add(run.run_id)
        self.flow.note_unclaimed(run.run_id)
        if self.seen is not None:
            self.seen.inserted(run)
        return True

    def update_run(self, run: Run, step: StepRecord | None = None) -> None:
        """Write ``run`` back: the columns that changed since this transaction read or
        wrote its row (a run's indexes are rewritten only where their columns changed;
        the transaction holds that row, locked on Postgres, alone on SQLite, so it is
        there and the write is one nobody reads: ``write``), else, a row it has not seen,
        the whole row. ``step``: one of its steps written
        too (``put_step``), in the same statement where the store can (``step_with_run``)."""
        if self.seen is not None:
            self.seen.updated(run)
            if step is not None:
                self.seen.wrote(step)
        values = run_values(run, self._kept.get(run.run_id))
        before = self._run_rows.get(run.run_id)
        if self._write:
            self._run_rows[run.run_id] = values
        changed = None
        if before is not None:  # compared in C: no Python call per column
            differs = map(operator.ne, values[1:], before[1:])
            changed = tuple(itertools.compress(range(1, len(values)), differs))
        if step is not None and not (changed and self.step_with_run):
            self.put_step(step)  # alone: no change of the run's to ride with
            step = None
        if changed == ():
            return
        if changed:
            args = list(map(values.__getitem__, changed))
            args.append(run.run_id)
            sql = _update_run(changed)
            if step is not None:
                sql, args = _update_run_with_step(changed), [*step_values(step), *args]
                self._stepless.discard(step.run_id)
                self._wrote_step(step.run_id)
            # a row this write transaction read (locked) or wrote: it is there
            self.write(sql, args)
            return
        self.execute(_UPSERT_RUN, values)

    def list_runs(self, where: RunFilter) -> list[Run]:
        sql, args = filters.runs_query(where)
        return [read_run(r) for r in self.execute(sql, args)]

    def get_steps(self, run_id: str) -> list[StepRecord]:
        if run_id in self._stepless:
            return []
        ahead = self._steps_ahead.pop(run_id, None)
        if ahead is not None and ahead[0] == self._revisions.get(run_id):
            return ahead[1]
        rows = self.execute(
            f"SELECT {STEP_COLUMNS} FROM steps WHERE run_id = ? "
            "ORDER BY seq IS NULL, seq, started_at",
            (run_id,),
        )
        return [read_step(r) for r in rows]

    def get_step(self, run_id: str, step_id: str) -> StepRecord | None:
        if run_id in self._stepless:
            return None
        row = self.execute(
            f"SELECT {STEP_COLUMNS} FROM steps WHERE run_id = ? AND step_id = ?", (run_id, step_id)
        ).fetchone()
        return None if row is None else read_step(row)

    def done_steps(self, run_id: str) -> int:
        """How many steps of the run are done: the next ``seq`` (the steps' ``seq`` run
        from 0 without a gap). One entry of the index ``steps_done``, whatever the run's
        length."""
        if run_id in self._stepless:
            return 0
        row = self.execute(_LAST_SEQ, (run_id,)).fetchone()
        return 0 if row is None or row[0] is None else int(row[0]) + 1

    def stack(self, run_id: str) -> list[str]:
        """The run's done steps' ids in completion order (``Run.stack``), from the index
        ``steps_done``, no step row decoded."""
        if run_id in self._stepless:
            return []
        rows = self.execute(_STACK, (run_id,))
        return [str(r[0]) for r in rows]

    def pending_step(self, run_id: str, but: str) -> bool:
        if run_id in self._stepless:
            return False
        return self.execute(_PENDING_STEP, (run_id, but, *_ENDED_STEPS)).fetchone() is not None

    def put_step(self, step: StepRecord) -> None:
        self._stepless.discard(step.run_id)
        self.write(UPSERT_STEP, step_values(step))
        self._wrote_step(step.run_id)
        if self.seen is not None:
            self.seen.wrote(step)

    def put_steps(self, steps: Sequence[StepRecord]) -> None:
        self._stepless.difference_update(step.run_id for step in steps)
        self.execute_many(UPSERT_STEP, [step_values(step) for step in steps])
        for step in steps:
            self._wrote_step(step.run_id)
            if self.seen is not None:
                self.seen.wrote(step)

    def _wrote_step(self, run_id: str) -> None:
        # the upsert writes one row, whether it inserted or updated: the trigger adds one
        revision = self._revisions.get(run_id)
        if revision is not None:
            self._revisions[run_id] = revision + 1

    # pauses -------------------------------------------------------------------------
    def insert_pause(self, pause: Pause) -> None:
        self._pauseless.discard(pause.run_id)
        self.execute(_UPSERT_PAUSE, pause_values(pause))
        self._names_waited.add(pause.event_name)

    def get_pause(self, pause_id: str) -> Pause | None:
        row = self.execute(
            f"SELECT {PAUSE_COLUMNS} FROM pauses WHERE pause_id = ?", (pause_id,)
        ).fetchone()
        return None if row is None else read_pause(row)

    def delete_pause(self, pause_id: str) -> bool:
        return bool(
            self.execute("DELETE FROM pauses WHERE pause_id = ?", (pause_id,)).rowcount == 1
        )

    def note_event_names(self, names: Collection[str]) -> None:
        """Read at once which of ``names`` a wait listens for (one query for a batch), and
        in the same statement whether any function is paused: the first calls a send's
        runs lease then ask ``controls.paused_functions`` nothing when none is (usually)."""
        wanted = sorted(set(names) - self._names_known)
        if wanted:
            rows = self.execute(
                "SELECT DISTINCT event_name FROM pauses WHERE correlation_id IS NULL "
                f"AND event_name IN ({','.join('?' * len(wanted))}) "
                "UNION ALL SELECT NULL WHERE EXISTS "
                "(SELECT 1 FROM function_controls WHERE paused_at IS NOT NULL)",
                wanted,
            ).fetchall()
            waited = [str(r[0]) for r in rows if r[0] is not None]
            self._names_waited.update(waited)
            self._names_known.update(wanted)
            if len(waited) == len(rows):  # no NULL row: nothing to park a call on
                self.controls.none_paused()

    def pauses_for_event(self, event_name: str) -> list[Pause]:
        if event_name in self._names_known and event_name not in self._names_waited:
            return []  # no wait listens for it (noted for this batch)
        rows = self.execute(
            f"SELECT {PAUSE_COLUMNS} FROM pauses WHERE event_name = ? AND correlation_id IS NULL",
            (event_name,),
        )
        return [read_pause(r) for r in rows]

    def pauses_for_correlation(self, correlation_id: str) -> list[Pause]:
        rows = self.execute(
            f"SELECT {PAUSE_COLUMNS} FROM pauses WHERE correlation_id = ?", (correlation_id,)
        )
        return [read_pause(r) for r in rows]

    def run_pauses(self, run_id: str) -> list[Pause]:
        rows = self.execute(f"SELECT {PAUSE_COLUMNS} FROM pauses WHERE run_id = ?", (run_id,))
        return [read_pause(r) for r in rows]

    def delete_run_pauses(self, run_id: str) -> None:
        if run_id in self._pauseless:
            return
        self.execute("DELETE FROM pauses WHERE run_id = ?", (run_id,))

    def holds_nothing(self, run_id: str) -> bool:
        return run_id in self._pauseless and not self.flow.may_hold_claims(run_id)

    def note_holds_nothing(self, run_id: str) -> None:
        self._pauseless.add(run_id)
        self.flow.note_unclaimed(run_id)

    def close_run(self, run_id: str, event_names: Collection[str]) -> dict[str, str]:
        """One statement a table (SQLite: no round trips to save)."""
        attributes = self.attributes.get_attributes([run_id]).get(run_id, {})
        self.queue.delete_run_jobs(run_id)
        self.delete_run_pauses(run_id)
        self.flow.release_claims(run_id)
        return attributes

    # events -------------------------------------------------------------------------
    def insert_event(self, event: EventRecord) -> bool:
        cur = self.execute(_INSERT_EVENT, _event_values(event))
        return bool(cur.rowcount == 1)

    def insert_minted_event(self, event: EventRecord) -> None:
        self.write(_INSERT_EVENT, _event_values(event))

    def insert_events(self, events: Sequence[EventRecord]) -> set[str]:
        stored: set[str] = set()
        for at in range(0, len(events), _EVENTS_PER_INSERT):  # a multi-row INSERT per chunk
            chunk = events[at : at + _EVENTS_PER_INSERT]
            marks = ",".join(["(?,?,?,?,?)"] * len(chunk))
            rows = self.execute(
                f"INSERT INTO events ({_EVENT_INSERT_COLUMNS}) VALUES {marks} "
                "ON CONFLICT DO NOTHING RETURNING internal_id",
                [value for event in chunk for value in _event_values(event)],
            )
            stored.update(str(r[0]) for r in rows)
        return stored

    def get_event(self, event_id: str) -> EventRecord | None:
        row = self.execute(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE internal_id = ?",
            (event_id,),
        ).fetchone()
        if row is None:
            row = self.execute(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE id = ? "
                "ORDER BY internal_id DESC LIMIT 1",
                (event_id,),
            ).fetchone()
        return None if row is None else read_event(row)

    def list_events(self, where: EventFilter) -> list[EventRecord]:
        sql, args = filters.events_query(where)
        return [read_event(r) for r in self.execute(sql, args)]

    def link_event(self, link: EventRunLink) -> None:
        self.write(
            _INSERT_LINK,
            (link.event_id, link.function_id, link.run_id, link.reason, link.at),
        )

    def run_for_event_id(self, function_id: str, event_id: str) -> str | None:
        row = self.execute(
            "SELECT l.run_id FROM events e JOIN event_runs l ON l.event_id = e.internal_id "
            "WHERE e.id = ? AND l.function_id = ? AND l.run_id IS NOT NULL "
            "ORDER BY e.internal_id DESC LIMIT 1",
            (event_id, function_id),
        ).fetchone()
        return None if row is None else str(row[0])

    def event_links(self, internal_id: str) -> list[EventRunLink]:
        rows = self.execute(
            "SELECT event_id, function_id, run_id, reason, at FROM event_runs "
            "WHERE event_id = ? ORDER BY at",
            (internal_id,),
        )
        return [EventRunLink(*r) for r in rows]

    def update_link(self, event_id: str, run_id: str, reason: str | None) -> None:
        self.execute(
            "UPDATE event_runs SET reason = ? WHERE event_id = ? AND run_id = ?",
            (reason, event_id, run_id),
        )

    def claim_key(self, scope: str, key: str, expires_at: float, now: float) -> bool:
        self.execute(
            "DELETE FROM idempotency WHERE scope = ? AND key = ? AND expires_at <= ?",
            (scope, key, now),
        )
        cur = self.execute(_INSERT_KEY, (scope, key, expires_at))
        return bool(cur.rowcount == 1)

    def set_waiting(self, run_id: str, waiting: dict[str, Any] | None) -> None:
        self._run_rows.pop(run_id, None)
        self.execute(
            "UPDATE runs SET waiting = ? WHERE run_id = ?", (json_or_null(waiting), run_id)
        )
        if self.seen is not None:
            self.seen.held(waiting)

    # many runs at once (a bulk action's batch) ------------------------------------------
    def lock_runs(self, run_ids: Sequence[str]) -> None:
        """Read and lock the rows of ``run_ids``, read their steps and which hold a pause,
        a statement each per ``_AHEAD`` runs: ``get_run`` and ``get_steps`` of each then
        send nothing (its steps until one of them is written), nor ``delete_run_pauses``
        of a run with none. A write transaction's; runs it read already are left as it
        knows them.

        The rows are locked in run id order (as one run at a time in that order would
        be); the steps and pauses are read once every row is locked, so no other
        transaction writes one of them in between (a step written bumps its run's row:
        ``steps_rev``; a pause is written with its run's row locked).
        """
        wanted = sorted(set(run_ids) - self._run_rows.keys())
        if not self._write or not wanted:
            return
        for at in range(0, len(wanted), _AHEAD):
            chunk = wanted[at : at + _AHEAD]
            marks = ",".join("?" * len(chunk))
            rows = self.execute(
                f"SELECT {RUN_COLUMNS}, steps_rev FROM runs WHERE run_id IN ({marks}) "
                f"ORDER BY run_id{self.row_lock()}",
                chunk,
            )
            for row in rows:
                self._run_rows[row[0]] = row
                self._revisions[row[0]] = row[-1]
        for at in range(0, len(wanted), _AHEAD):
            chunk = [r for r in wanted[at : at + _AHEAD] if r in self._run_rows]
            steps: dict[str, list[StepRecord]] = {run_id: [] for run_id in chunk}
            if not chunk:
                continue
            marks = ",".join("?" * len(chunk))
            rows = self.execute(
                f"SELECT {STEP_COLUMNS} FROM steps WHERE run_id IN ({marks}) "
                "ORDER BY run_id, seq IS NULL, seq, started_at",
                chunk,
            )
            for row in rows:
                step = read_step(row)
                steps[step.run_id].append(step)
            for run_id, found in steps.items():
                self._steps_ahead[run_id] = (self._revisions[run_id], found)
            rows = self.execute(
                f"SELECT DISTINCT run_id FROM pauses WHERE run_id IN ({marks})", chunk
            )
            self._pauseless.update(set(chunk) - {str(r[0]) for r in rows})


#: the names of a transaction's parts (``SqlTx.end`` lets them go)
_PARTS = tuple(name for name, value in vars(SqlTx).items() if isinstance(value, LazyPart))


def run_in(tx: TxT, work: Callable[[TxT], T]) -> T:
    """``work(tx)``, then ``tx.end()``: how a store runs a work on a transaction."""
    try:
        return work(tx)
    finally:
        tx.end()


def _event_values(event: EventRecord) -> tuple[Any, ...]:
    return (event.internal_id, event.id, event.name, dumps(event.payload), event.received_at)
