"""Starting runs: a run and its first call, its timeouts and cancel rules, in one ``Tx``.

Plain functions over a transaction (no engine state): fan-out, flow control's gathering,
cron ticks, reruns and the run transitions' own scheduling all start and time runs here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from stepline._status import RunStatus
from stepline.engine import _events, _ids
from stepline.engine._apps.registry import (
    CRON_EVENT,
    CronTrigger,
    FunctionSpec,
    compiled,
    next_cron_fire,
)
from stepline.engine._flow import pacing
from stepline.engine._model import EventRecord, EventRunLink, Job, JobKind, Pause, PauseKind, Run
from stepline.engine._store import Tx

#: the step id of a call that discovers a run's next steps (``PROTOCOL.md`` 4.8)
DISCOVERY = "step"


def execute_job_id(run_id: str, step_id: str, tag: str) -> str:
    """Job ids that make re-planning the same step (or re-scheduling one discovery) a no-op."""
    return f"{run_id}:{step_id}:{tag}"


def expire(tx: Tx, run_id: str, step_id: str, at: float) -> None:
    """Queue the timeout of a wait or an invoke (a no-op if the pause is gone by then)."""
    job_id = execute_job_id(run_id, step_id, "timeout")
    payload = {"pause_id": f"{run_id}:{step_id}"}
    tx.queue.enqueue(Job(job_id, JobKind.PAUSE_TIMEOUT, at, run_id, step_id, payload=payload))


def call(run: Run, step_id: str, tag: str, at: float) -> Job:
    """An SDK call of a run, carrying its concurrency keys; a priority boost sorts it ahead."""
    flow = run.flow or {}
    boost = max(0.0, float(flow.get("boost", 0.0)))
    payload = {"keys": flow["keys"]} if flow.get("keys") else {}
    job_id = execute_job_id(run.run_id, step_id, tag)
    return Job(job_id, JobKind.EXECUTE, at - boost, run.run_id, step_id, payload=payload)


def start_run(
    tx: Tx,
    fn: FunctionSpec,
    events: list[EventRecord],
    now: float,
    *,
    correlation_id: str | None = None,
    parent_run_id: str | None = None,
    origin: str | None = None,
    run_id: str | None = None,
    start_at: float | None = None,
    waiting: dict[str, Any] | None = None,
) -> Run | None:
    """Create a run and schedule its first call; None if it already exists.

    ``start_at`` (debounce, batching) fixes when the first call is due; otherwise
    throttle and priority decide (``pacing.plan_start``).
    """
    first = events[0]
    plan = pacing.plan_start(tx, fn, first.payload, now, start_at=start_at)
    run = Run(
        run_id=run_id or _ids.derived(int(now * 1000), first.internal_id, fn.function_id),
        function_id=fn.function_id,
        app_id=fn.app_id,
        status=RunStatus.QUEUED,
        events=[e.payload for e in events],
        event_ids=[e.internal_id for e in events],
        created_at=now,
        correlation_id=correlation_id,
        parent_run_id=parent_run_id,
        origin=origin,
        waiting=waiting or plan.waiting,
        flow=plan.flow,
        app_version=fn.version,
    )
    if not tx.insert_run(run):
        return None
    rid = run.run_id
    tx.queue.enqueue(call(run, DISCOVERY, "start", plan.start_at))
    for which, seconds in (("start", fn.start_timeout), ("finish", fn.finish_timeout)):
        if seconds is not None:
            tx.queue.enqueue(
                Job(
                    f"{rid}:timeout:{which}",
                    JobKind.TIMEOUT,
                    now + seconds,
                    rid,
                    payload={"which": which},
                )
            )
    _arm_cancels(tx, fn, rid, first, now)
    for event in events:
        tx.link_event(EventRunLink(event.internal_id, fn.function_id, rid, None, now))
    return run


def _arm_cancels(tx: Tx, fn: FunctionSpec, run_id: str, trigger: EventRecord, now: float) -> None:
    context = trigger.payload
    for index, rule in enumerate(fn.cancel):
        if rule.condition is not None:
            folded = compiled(rule.condition).substitute("event", context)
            if folded.is_constant_false:
                continue
        tx.insert_pause(
            Pause(
                pause_id=f"{run_id}:cancel:{index}",
                run_id=run_id,
                kind=PauseKind.CANCEL,
                event_name=rule.event,
                expires_at=rule.expires_at(now),
                expression=rule.condition,
                trigger_event_id=trigger.internal_id,
                context=context,
            )
        )


def rearm_cancels(tx: Tx, fn: FunctionSpec, run: Run, trigger: EventRecord, now: float) -> None:
    """A debounced run's trigger changed: its cancel rules now match the new one."""
    tx.delete_run_pauses(run.run_id)  # a queued run has no pauses but cancel rules
    _arm_cancels(tx, fn, run.run_id, trigger, run.created_at)


def start_job_id(run_id: str) -> str:
    """The job id of a run's first call."""
    return execute_job_id(run_id, DISCOVERY, "start")


def start_job(tx: Tx, run_id: str) -> Job | None:
    """The queued first call of a run (None once it has been answered)."""
    return tx.queue.get_job(start_job_id(run_id))


def move_start(tx: Tx, run_id: str, at: float) -> None:
    """Re-time a queued run's first call (debounce and batching move it)."""
    job = start_job(tx, run_id)
    if job is not None and job.lease_owner is None:
        job.available_at = at
        tx.queue.update_job(job)


# -- starts with a run id proposed by the caller (the outbox relay) -------------------------

_ULID_CHARS = frozenset("0123456789ABCDEFGHJKMNPQRSTVWXYZ")


class RunIdTakenError(ValueError):
    """A proposed run id already names a run of another function (answered with 409)."""


def run_id_problem(run_id: object) -> str | None:
    """Why ``run_id`` cannot be a proposed run id (a ULID: 26 Crockford base32), or None."""
    if not isinstance(run_id, str) or len(run_id) != 26:
        return "want a ULID (26 characters)"
    if not set(run_id) <= _ULID_CHARS or run_id[0] > "7":
        return "want a ULID (Crockford base32, upper case)"
    return None


def start_event(
    function_id: str,
    data: dict[str, Any],
    now: float,
    *,
    event_id: str | None,
    run_id: str | None,
) -> EventRecord:
    """The ``inngest/function.invoked`` event a direct start stores.

    With a proposed ``run_id`` the event's internal id derives from it, so a second
    delivery of the same start stores no second event (``insert_event`` is a no-op) and
    fans out nothing; fan-out gives the run that id (``_inngest.run_id``).
    """
    meta: dict[str, Any] = {"fn_id": function_id, "name": _events.INVOKED}
    if run_id is not None:
        meta["run_id"] = run_id
    event = _events.internal(
        _events.INVOKED, {**data, "_inngest": meta}, now=now, event_id=event_id
    )
    if run_id is None:
        return event
    internal_id = _ids.derived(_ids.ms_of(run_id), "start", function_id, run_id)
    payload = {**event.payload, "id": event_id or internal_id}
    return dataclasses.replace(event, internal_id=internal_id, payload=payload)


def existing_start(
    tx: Tx, function_id: str, event_id: str | None, run_id: str | None
) -> str | None:
    """The run an earlier start with this run id or idempotency event id made, if any.

    Raises:
        RunIdTakenError: ``run_id`` names a run of another function.
    """
    if run_id is not None:
        run = tx.get_run(run_id)
        if run is not None:
            if run.function_id != function_id:
                raise RunIdTakenError(
                    f"run id {run_id} is taken by a run of another function ({run.function_id!r})"
                )
            return run.run_id
    return None if event_id is None else tx.run_for_event_id(function_id, event_id)


def start_direct(
    tx: Tx,
    fanout: Callable[[Tx, EventRecord, float], Sequence[str]],
    event: EventRecord,
    now: float,
    *,
    function_id: str,
    own_id: str | None,
    run_id: str | None,
    started_by: str | None,
    attributes: Mapping[str, str] | None = None,
) -> tuple[str | None, bool]:
    """Start one function's run from its ``start_event``; returns ``(run_id, created)``.

    An earlier start with the same idempotency event id or proposed run id answers its
    run (``created`` False); concurrent starts with one id race safely (the event id
    claim decides). None: flow control started no run (rate limited, singleton...).
    ``started_by`` and ``attributes`` are recorded on a run this start created.
    """
    existing = existing_start(tx, function_id, own_id, run_id)
    if existing is not None:
        return existing, False
    if fresh := tx.insert_event(event):  # False: a concurrent start with this id won
        # whether a wait listens for it and whether any function is paused, in one look:
        # the fan-out's and the first call's lease then read neither
        tx.note_event_names((event.name,))
        started = next(iter(fanout(tx, event, now)), None)  # its one function's run, if any
    else:
        links = tx.event_links(event.internal_id)
        started = next((link.run_id for link in links if link.run_id), None)
    if started is None and (own_id or run_id) is not None:
        return existing_start(tx, function_id, own_id, run_id), False
    if started is not None and started_by is not None and fresh:
        record_starter(tx, started, started_by)
    if started is not None and attributes and fresh:
        # checked by the caller (_control.attributes)
        tx.attributes.set_attributes(started, attributes)
    return started, fresh


def record_starter(tx: Tx, run_id: str, started_by: str) -> None:
    """Write a new run's starter (a principal) in the transaction that created it."""
    run = tx.get_run(run_id)
    if run is not None:
        run.started_by = started_by
        tx.update_run(run)


def schedule_cron(tx: Tx, function_id: str, trigger: CronTrigger, after: float) -> None:
    """Queue the next tick of a cron trigger (idempotent: one job per tick, across nodes)."""
    tick, fire = next_cron_fire(trigger, function_id, after)
    canonical = trigger.schedule.canonical
    tx.queue.enqueue(
        Job(
            job_id=f"cron:{function_id}:{canonical}:{int(tick)}",
            kind=JobKind.CRON,
            available_at=fire,
            payload={"function_id": function_id, "cron": canonical, "tick": tick},
        )
    )


def cron_tick(
    tx: Tx,
    fn: FunctionSpec | None,
    job: Job,
    now: float,
    start: Callable[[Tx, FunctionSpec, EventRecord, float], None],
) -> None:
    """A cron job came due: store its tick's event, ``start`` the run and queue the
    next tick (nothing if the function or this schedule was removed since)."""
    tx.queue.delete_job(job.job_id)
    canonical = job.payload.get("cron")
    trigger = next((c for c in fn.crons if c.schedule.canonical == canonical), None) if fn else None
    if fn is None or trigger is None:
        return
    event = _events.internal(CRON_EVENT, {"cron": canonical}, now=now)
    event.internal_id = _ids.derived(int(now * 1000), job.job_id)
    event.payload["id"] = event.internal_id
    tx.insert_event(event)
    start(tx, fn, event, now)
    schedule_cron(tx, fn.function_id, trigger, float(job.payload.get("tick", now)))
