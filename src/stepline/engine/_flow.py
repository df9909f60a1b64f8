"""Flow control when an event would start a run: skip it, delay it, or gather it.

Called inside the fan-out transaction. Rate limit and singleton decide whether a run
starts at all; throttle and priority decide when; debounce and batching fold several
events into one queued run whose start job moves as events arrive. Concurrency keys
are fixed here and enforced when a call is leased (``_concurrency``).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from stepline import _cel
from stepline._status import RunStatus
from stepline.engine import _limits
from stepline.engine._model import EventRecord, EventRunLink, Run
from stepline.engine._registry import FunctionSpec, key_of
from stepline.engine._rules import MAX_PRIORITY
from stepline.engine._store import Tx

if TYPE_CHECKING:
    from stepline.engine._runloop import RunLoop

#: Link reasons: why an event started no run of a function (or joined another's).
RATE_LIMITED = "rate_limited"
SINGLETON = "singleton"
IDEMPOTENT = "idempotent"
DEBOUNCED = "debounced"


@dataclasses.dataclass(frozen=True, slots=True)
class StartPlan:
    """When a new run's first call is due, and what holds it back until then."""

    start_at: float
    flow: dict[str, Any] | None
    waiting: dict[str, Any] | None


def skip_reason(
    loop: RunLoop, tx: Tx, fn: FunctionSpec, payload: dict[str, Any], now: float
) -> str | None:
    """Why this event must start no run (``rate_limited``, ``singleton``), or None.

    A singleton in ``cancel`` mode cancels the key's active run here and returns None.
    """
    rule = fn.flow.rate_limit
    if rule is not None:
        scope, key = f"rate:{fn.function_id}", key_of(rule.key, payload)
        stored = tx.get_limit(scope, key)
        tat = _limits.gcra(stored, now, interval=rule.period / rule.limit, burst=rule.limit)
        if tat is None:
            return RATE_LIMITED
        tx.set_limit(scope, key, tat, tat + rule.period)
    single = fn.flow.singleton
    if single is not None:
        active = tx.singleton_run(fn.function_id, key_of(single.key, payload))
        run = None if active is None else tx.get_run(active)
        if run is not None and not run.status.terminal:
            if single.mode == "skip":
                return SINGLETON
            loop.cancel(tx, run.run_id, now, "singleton: replaced by a newer run")
    return None


def plan_start(
    tx: Tx, fn: FunctionSpec, payload: dict[str, Any], now: float, *, start_at: float | None
) -> StartPlan:
    """Concurrency keys, priority and throttle for a run about to be created.

    ``start_at`` is set for debounced and batched runs, whose start is decided by their
    gathering; throttle then does not reserve a slot for them.
    """
    rules = fn.flow
    flow: dict[str, Any] = {}
    keys = concurrency_keys(fn, payload)
    if keys:
        flow["keys"] = keys
    boost = priority(fn, payload)
    if boost:
        flow["boost"] = boost
    waiting: dict[str, Any] | None = None
    due = now if start_at is None else start_at
    if boost < 0 and start_at is None:
        due = now - boost
        waiting = {"reason": "priority", "until": due}
    throttle = rules.throttle
    if throttle is not None and start_at is None:
        scope, key = f"throttle:{fn.function_id}", key_of(throttle.key, payload)
        interval = throttle.period / throttle.limit
        slot, tat = _limits.gcra_reserve(
            tx.get_limit(scope, key), due, interval=interval, burst=throttle.limit + throttle.burst
        )
        tx.set_limit(scope, key, tat, tat + throttle.period)
        if slot > due:
            waiting = {"reason": "throttled", "until": slot, "key": key}
        due = slot
    return StartPlan(due, flow or None, waiting)


def concurrency_keys(fn: FunctionSpec, payload: dict[str, Any]) -> list[list[Any]]:
    """The ``[key, limit]`` pairs a run's calls must fit in, evaluated on its trigger."""
    keys: list[list[Any]] = []
    for rule in fn.flow.concurrency:
        value = key_of(rule.key, payload)
        if rule.scope != "fn":  # shared by value across the functions declaring it
            keys.append([f"{rule.scope}:{value}", rule.limit])
        elif rule.key is None:
            keys.append([f"fn:{fn.function_id}:", rule.limit])
        else:  # two keyed limits of one function never share a counter
            keys.append([f"fn:{fn.function_id}:{rule.key.text}={value}", rule.limit])
    return keys


def priority(fn: FunctionSpec, payload: dict[str, Any]) -> float:
    """The priority factor in seconds (clamped to ±600; 0 if it does not evaluate)."""
    program = fn.flow.priority
    if program is None:
        return 0.0
    try:
        value = program.evaluate({"event": payload})
    except _cel.EvaluationError:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(max(-MAX_PRIORITY, min(MAX_PRIORITY, value)))


def gather(loop: RunLoop, tx: Tx, fn: FunctionSpec, event: EventRecord, now: float) -> Run | None:
    """Debounce or batch ``event`` into a queued run; returns it if it was just created."""
    payload = event.payload
    debounce, batch = fn.flow.debounce, fn.flow.batch
    if debounce is not None:
        bucket_key = "debounce:" + key_of(debounce.key, payload)
    else:
        assert batch is not None
        bucket_key = "batch:" + key_of(batch.key, payload)
    open_run = _open_bucket(loop, tx, fn, bucket_key, now)
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
        run = loop.start_run(tx, fn, [event], now, start_at=start, waiting=waiting)
        if run is not None and start > now:
            tx.set_bucket(fn.function_id, bucket_key, run.run_id, limit)
        return run
    run, deadline = open_run
    if debounce is not None:
        for old in run.event_ids:
            tx.update_link(old, run.run_id, DEBOUNCED)
        run.events, run.event_ids = [payload], [event.internal_id]
        start = min(now + debounce.period, deadline)
        run.waiting = {"reason": DEBOUNCED, "until": start}
        loop.rearm_cancels(tx, fn, run, event, now)
    else:
        assert batch is not None
        run.events.append(payload)
        run.event_ids.append(event.internal_id)
        start = now if len(run.events) >= batch.max_size else deadline
        run.waiting = {
            "reason": "batched",
            "until": start,
            "events": len(run.events),
            "max": batch.max_size,
        }
        if start <= now:
            tx.set_bucket(fn.function_id, bucket_key, run.run_id, now)  # full: closed
    tx.update_run(run)
    tx.link_event(EventRunLink(event.internal_id, fn.function_id, run.run_id, None, now))
    loop.move_start(tx, run.run_id, start)
    return None


def _open_bucket(
    loop: RunLoop, tx: Tx, fn: FunctionSpec, key: str, now: float
) -> tuple[Run, float] | None:
    """The queued run still gathering events for this key, with its deadline.

    A bucket closes at its deadline, when a batch fills up, or as soon as a worker
    has leased the run's first call (the events it will receive are then fixed).
    """
    found = tx.get_bucket(fn.function_id, key)
    if found is None or found[1] <= now:
        return None
    run = tx.get_run(found[0])
    job = loop.start_job(tx, found[0])
    if run is None or run.status is not RunStatus.QUEUED or job is None or job.lease_owner:
        return None
    return run, found[1]


def matches_batch(fn: FunctionSpec, payload: dict[str, Any]) -> bool:
    """Whether this event joins a batch (events failing ``if`` run on their own)."""
    batch = fn.flow.batch
    if batch is None:
        return False
    return batch.condition is None or batch.condition.matches({"event": payload})
