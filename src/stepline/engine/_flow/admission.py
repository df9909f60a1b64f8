"""Flow control when an event would start a run: skip it, delay it, or gather it.

Called inside the fan-out transaction. Rate limit and singleton decide whether a run
starts at all; debounce and batching fold several events into one queued run whose start
job moves as events arrive. Throttle and priority (when) and concurrency keys are decided
as the run is created (``pacing``); the keys are enforced when a call is leased
(``concurrency``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stepline._status import RunStatus
from stepline.engine._apps.registry import FunctionSpec, key_of
from stepline.engine._flow import limits as _limits
from stepline.engine._model import EventRecord, EventRunLink, Run
from stepline.engine._runs import starts as _starts
from stepline.engine._store import Tx

#: ``cancel(tx, run_id, now, reason)``: the run transitions' cancel (a singleton replaces a run)
Cancel = Callable[[Tx, str, float, str], bool]

#: Link reasons: why an event started no run of a function (or joined another's).
RATE_LIMITED = "rate_limited"
SINGLETON = "singleton"
IDEMPOTENT = "idempotent"
DEBOUNCED = "debounced"


def skip_reason(
    cancel: Cancel, tx: Tx, fn: FunctionSpec, payload: dict[str, Any], now: float
) -> str | None:
    """Why this event must start no run (``rate_limited``, ``singleton``), or None.

    A singleton in ``cancel`` mode cancels the key's active run here and returns None.
    """
    rule = fn.flow.rate_limit
    if rule is not None:
        scope, key = f"rate:{fn.function_id}", key_of(rule.key, payload)
        stored = tx.flow.get_limit(scope, key)
        tat = _limits.gcra(stored, now, interval=rule.period / rule.limit, burst=rule.limit)
        if tat is None:
            return RATE_LIMITED
        tx.flow.set_limit(scope, key, tat, tat + rule.period)
    single = fn.flow.singleton
    if single is not None:
        active = tx.flow.singleton_run(fn.function_id, key_of(single.key, payload))
        run = None if active is None else tx.get_run(active)
        if run is not None and not run.status.terminal:
            if single.mode == "skip":
                return SINGLETON
            cancel(tx, run.run_id, now, "singleton: replaced by a newer run")
    return None


def gather(tx: Tx, fn: FunctionSpec, event: EventRecord, now: float) -> Run | None:
    """Debounce or batch ``event`` into a queued run; returns it if it was just created."""
    payload = event.payload
    debounce, batch = fn.flow.debounce, fn.flow.batch
    if debounce is not None:
        bucket_key = "debounce:" + key_of(debounce.key, payload)
    else:
        assert batch is not None
        bucket_key = "batch:" + key_of(batch.key, payload)
    open_run = _open_bucket(tx, fn, bucket_key, now)
    if open_run is None:
        if debounce is not None:
            limit = now + (debounce.timeout if debounce.timeout is not None else 1e12)
            start = min(now + debounce.period, limit)
            waiting: dict[str, Any] = {"reason": DEBOUNCED, "until": start}
        else:
            assert batch is not None
            limit = start = now + batch.timeout
            if batch.max_size == 1:
                start = now
            waiting = {"reason": "batched", "until": start, "events": 1, "max": batch.max_size}
        run = _starts.start_run(tx, fn, [event], now, start_at=start, waiting=waiting)
        if run is not None and start > now:
            tx.flow.set_bucket(fn.function_id, bucket_key, run.run_id, limit)
        return run
    run, deadline = open_run
    if debounce is not None:
        for old in run.event_ids:
            tx.update_link(old, run.run_id, DEBOUNCED)
        run.events, run.event_ids = [payload], [event.internal_id]
        start = min(now + debounce.period, deadline)
        run.waiting = {"reason": DEBOUNCED, "until": start}
        _starts.rearm_cancels(tx, fn, run, event, now)
    else:
        assert batch is not None
        # new lists, never appended in place: the store writes a run's events back as it
        # read them while it holds the lists it read (``Run.events``)
        run.events, run.event_ids = [*run.events, payload], [*run.event_ids, event.internal_id]
        start = now if len(run.events) >= batch.max_size else deadline
        run.waiting = {
            "reason": "batched",
            "until": start,
            "events": len(run.events),
            "max": batch.max_size,
        }
        if start <= now:
            tx.flow.set_bucket(fn.function_id, bucket_key, run.run_id, now)  # full: closed
    tx.update_run(run)
    tx.link_event(EventRunLink(event.internal_id, fn.function_id, run.run_id, None, now))
    _starts.move_start(tx, run.run_id, start)
    return None


def _open_bucket(tx: Tx, fn: FunctionSpec, key: str, now: float) -> tuple[Run, float] | None:
    """The queued run still gathering events for this key, with its deadline.

    A bucket closes at its deadline, when a batch fills up, or as soon as a worker
    has leased the run's first call (the events it will receive are then fixed).
    """
    found = tx.flow.get_bucket(fn.function_id, key)
    if found is None or found[1] <= now:
        return None
    run = tx.get_run(found[0])
    job = _starts.start_job(tx, found[0])
    if run is None or run.status is not RunStatus.QUEUED or job is None or job.lease_owner:
        return None
    return run, found[1]


def matches_batch(fn: FunctionSpec, payload: dict[str, Any]) -> bool:
    """Whether this event joins a batch (events failing ``if`` run on their own)."""
    batch = fn.flow.batch
    if batch is None:
        return False
    return batch.condition is None or batch.condition.matches({"event": payload})
