"""When a new run's first call is due (throttle, priority), and the concurrency keys its
calls carry. Decided once, inside the transaction that creates the run.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from stepline import _cel
from stepline.engine._apps.registry import FunctionSpec, key_of
from stepline.engine._flow import limits as _limits
from stepline.engine._flow.rules import MAX_PRIORITY
from stepline.engine._store import Tx


@dataclasses.dataclass(frozen=True, slots=True)
class StartPlan:
    """When a new run's first call is due, and what holds it back until then."""

    start_at: float
    flow: dict[str, Any] | None
    waiting: dict[str, Any] | None


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
            tx.flow.get_limit(scope, key),
            due,
            interval=interval,
            burst=throttle.limit + throttle.burst,
        )
        tx.flow.set_limit(scope, key, tat, tat + throttle.period)
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
