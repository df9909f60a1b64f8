"""Rows and records: each table's columns, a record to its row values and back, and the
statements that write a whole row. Pure.

The column lists are the single truth for both directions: ``read_run(row)`` reads the
values in ``RUN_COLUMNS`` order and ``run_values(run)`` writes them in that order; the
builders count the placeholders from the same list.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from stepline._json import dumps, loads
from stepline._status import RunStatus
from stepline.engine._model import (
    EventRecord,
    Job,
    JobKind,
    Pause,
    PauseKind,
    Run,
    StepRecord,
    StepStatus,
)

# An enum's member from its stored value and back, by dict: ``RunStatus(text)`` and
# ``.value`` go through Python-level ``enum`` code, several times a step. (These are str
# enums: members of two of them with one value are one key, which maps to that value.)
_RUN_STATUS = {member.value: member for member in RunStatus}
_STEP_STATUS = {member.value: member for member in StepStatus}
_JOB_KIND = {member.value: member for member in JobKind}
_PAUSE_KIND = {member.value: member for member in PauseKind}
_VALUE: dict[RunStatus | StepStatus | JobKind | PauseKind, str] = {
    member: member.value for kind in (RunStatus, StepStatus, JobKind, PauseKind) for member in kind
}

RUN_COLUMNS = (
    "run_id, function_id, app_id, status, events, event_ids, created_at, started_at, "
    "ended_at, output, stack, force_plan, request_version, correlation_id, parent_run_id, "
    "cancel_reason, origin, waiting, flow, started_by, app_version, notices"
)
STEP_COLUMNS = (
    "run_id, step_id, name, op, status, mode, memo, attempts, started_at, ended_at, seq, "
    "error, wait"
)
JOB_COLUMNS = (
    "job_id, kind, available_at, run_id, step_id, attempt, payload, lease_owner, lease_expires, "
    "lease_epoch"
)
PAUSE_COLUMNS = (
    "pause_id, run_id, kind, event_name, expires_at, step_id, expression, correlation_id, "
    "trigger_event_id, context"
)
EVENT_COLUMNS = "internal_id, name, payload, received_at"
APP_COLUMNS = "app_id, url, sdk, framework, synced_at, checksum, error, mode"
FUNCTION_COLUMNS = "function_id, app_id, name, config, updated_at"


def _names(columns: str) -> list[str]:
    return [c.strip() for c in columns.split(",")]


def insert(table: str, columns: str, *, on_conflict: str = "") -> str:
    """``INSERT INTO table (columns) VALUES (?, ...)``: one placeholder per column.

    ``on_conflict`` is what follows ``ON CONFLICT`` (``"DO NOTHING"``), or empty for none.
    """
    marks = ",".join("?" * len(_names(columns)))
    tail = f" ON CONFLICT {on_conflict}" if on_conflict else ""
    return f"INSERT INTO {table} ({columns}) VALUES ({marks}){tail}"


def statements(script: str) -> list[str]:
    """A migration script's statements: each ends with ``;`` at the end of a line (a
    trigger's or a function's body keeps its own ``;`` inside a line)."""
    return [part for part in _STATEMENT_END.split(script) if part.strip()]


_STATEMENT_END = re.compile(r";[ \t]*(?:\n|$)")


def upsert(table: str, columns: str, keys: str) -> str:
    """``INSERT ... ON CONFLICT (keys) DO UPDATE`` of every other column (both dialects)."""
    key_names = set(_names(keys))
    sets = ", ".join(f"{n} = excluded.{n}" for n in _names(columns) if n not in key_names)
    return insert(table, columns, on_conflict=f"({keys}) DO UPDATE SET {sets}")


def json_or_null(value: Any) -> str | None:
    """``value`` as JSON text, or SQL ``NULL`` for ``None``."""
    return None if value is None else dumps(value)


def parsed_or_none(text: str | None) -> Any:
    """The value of JSON ``text``, or ``None`` for SQL ``NULL``."""
    return None if text is None else loads(text)


#: What ``runs.stack`` holds: the completion order is the steps' ``seq`` (``stack_of``),
#: read from the steps, so a step adds a row instead of rewriting a list on its run's row.
#: The column stays, written empty: dropping it rewrites the whole table on SQLite (a
#: long migration on a large database). A row an earlier release wrote may hold a list,
#: unread, which this replaces the next time the run is written.
_NO_STACK = "[]"


def read_run(row: Sequence[Any]) -> Run:
    return Run(
        run_id=row[0],
        function_id=row[1],
        app_id=row[2],
        status=_RUN_STATUS[row[3]],
        events=loads(row[4]),
        event_ids=loads(row[5]),
        created_at=row[6],
        started_at=row[7],
        ended_at=row[8],
        output=row[9],
        force_plan=bool(row[11]),
        request_version=row[12],
        correlation_id=row[13],
        parent_run_id=row[14],
        cancel_reason=row[15],
        origin=row[16],
        waiting=parsed_or_none(row[17]),
        flow=parsed_or_none(row[18]),
        started_by=row[19],
        app_version=row[20],
        notices=parsed_or_none(row[21]) or [],
    )


def run_values(run: Run, kept: tuple[object, str, object, str] | None = None) -> Sequence[Any]:
    """``run``'s row. ``kept``: its events and event ids as read, and their stored text,
    written as they were while the run holds those very lists (never changed in place)."""
    return (
        run.run_id,
        run.function_id,
        run.app_id,
        _VALUE[run.status],
        kept[1] if kept is not None and run.events is kept[0] else dumps(run.events),
        kept[3] if kept is not None and run.event_ids is kept[2] else dumps(run.event_ids),
        run.created_at,
        run.started_at,
        run.ended_at,
        run.output,
        _NO_STACK,
        int(run.force_plan),
        run.request_version,
        run.correlation_id,
        run.parent_run_id,
        run.cancel_reason,
        run.origin,
        None if run.waiting is None else dumps(run.waiting),  # ``json_or_null``, inline
        None if run.flow is None else dumps(run.flow),
        run.started_by,
        run.app_version,
        dumps(run.notices) if run.notices else None,
    )


def read_step(row: Sequence[Any]) -> StepRecord:
    return StepRecord(
        run_id=row[0],
        step_id=row[1],
        name=row[2],
        op=row[3],
        status=_STEP_STATUS[row[4]],
        mode=row[5],
        memo=parsed_or_none(row[6]),
        attempts=row[7],
        started_at=row[8],
        ended_at=row[9],
        seq=row[10],
        error=parsed_or_none(row[11]),
        wait=parsed_or_none(row[12]),
    )


def step_values(step: StepRecord) -> Sequence[Any]:
    return (
        step.run_id,
        step.step_id,
        step.name,
        step.op,
        _VALUE[step.status],
        step.mode,
        None if step.memo is None or not step.status.done else dumps(step.memo),
        step.attempts,
        step.started_at,
        step.ended_at,
        step.seq,
        None if step.error is None else dumps(step.error),  # ``json_or_null``, inline
        None if step.wait is None else dumps(step.wait),
    )


def read_job(row: Sequence[Any]) -> Job:
    return Job(
        job_id=row[0],
        kind=_JOB_KIND[row[1]],
        available_at=row[2],
        run_id=row[3],
        step_id=row[4],
        attempt=row[5],
        payload=loads(row[6]),
        lease_owner=row[7],
        lease_expires=row[8],
        lease_epoch=row[9],
    )


def job_values(job: Job) -> Sequence[Any]:
    return (
        job.job_id,
        _VALUE[job.kind],
        job.available_at,
        job.run_id,
        job.step_id,
        job.attempt,
        dumps(job.payload),
        job.lease_owner,
        job.lease_expires,
        job.lease_epoch,
    )


def read_pause(row: Sequence[Any]) -> Pause:
    return Pause(
        pause_id=row[0],
        run_id=row[1],
        kind=_PAUSE_KIND[row[2]],
        event_name=row[3],
        expires_at=row[4],
        step_id=row[5],
        expression=row[6],
        correlation_id=row[7],
        trigger_event_id=row[8],
        context=parsed_or_none(row[9]),
    )


def pause_values(pause: Pause) -> Sequence[Any]:
    return (
        pause.pause_id,
        pause.run_id,
        _VALUE[pause.kind],
        pause.event_name,
        pause.expires_at,
        pause.step_id,
        pause.expression,
        pause.correlation_id,
        pause.trigger_event_id,
        json_or_null(pause.context),
    )


def read_event(row: Sequence[Any]) -> EventRecord:
    return EventRecord(internal_id=row[0], name=row[1], payload=loads(row[2]), received_at=row[3])
