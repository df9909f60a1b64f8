"""Records to JSON for the REST API: pure functions, no I/O.

Timestamps are RFC 3339 strings with milliseconds and ``Z``; outputs are parsed JSON,
not the text the store keeps, so API clients never decode twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from stepline._api import step_state
from stepline._json import loads as json_loads
from stepline._protocol import durations, execution
from stepline.engine._apps.sync import SyncResult
from stepline.engine._control import replay
from stepline.engine._model import (
    AppRecord,
    EventRecord,
    EventRunLink,
    FunctionRecord,
    Run,
    StepRecord,
)
from stepline.engine._store.attempts import StepAttempt
from stepline.engine._store.controls import FunctionPause

T = TypeVar("T")


def timestamp(seconds: float | None) -> str | None:
    """Seconds since the epoch as ``2026-01-01T00:00:00.123Z`` (None stays None).

    Args:
        seconds: a time from the store.

    Returns:
        The RFC 3339 text, or None.
    """
    return None if seconds is None else durations.format_epoch(seconds)


def _stored_value(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json_loads(text)
    except ValueError:
        return text  # not JSON (an SDK answered with plain text): show it as it came


def run(record: Run, *, with_events: bool = False) -> dict[str, Any]:
    """A run as the REST API shows it.

    Args:
        record: the run.
        with_events: include the trigger events (single-run views only: they can be big).

    Returns:
        The JSON object.
    """
    view: dict[str, Any] = {
        "run_id": record.run_id,
        "function_id": record.function_id,
        "app_id": record.app_id,
        "status": record.status.value,
        "event_ids": list(record.event_ids),
        "event_names": list(dict.fromkeys(str(e.get("name")) for e in record.events)),
        "run_started_at": timestamp(record.started_at),
        "ended_at": timestamp(record.ended_at),
        "created_at": timestamp(record.created_at),
        "output": _stored_value(record.output),
        "cancel_reason": record.cancel_reason,
        "origin": record.origin,
        "parent_run_id": record.parent_run_id,
        "parent_step_id": _parent_step(record),
        "started_by": record.started_by,
        "waiting": _waiting(record.waiting),
        "app_version": record.app_version,
        "notices": list(record.notices),
        **replay.link(record.origin),  # replay_of, replay_from_step(_name)
        "attributes": dict(record.attributes),
    }
    if with_events:
        view["events"] = record.events
    return view


def _parent_step(record: Run) -> str | None:
    """The parent's step that invoked this run (its correlation is ``<parent>.<step>``)."""
    parent, correlation = record.parent_run_id, record.correlation_id
    if parent is None or correlation is None or not correlation.startswith(f"{parent}."):
        return None
    return correlation[len(parent) + 1 :]


def _waiting(waiting: dict[str, Any] | None) -> dict[str, Any] | None:
    """Why a run is held back: reason, key, and ``until``/``since`` as timestamps."""
    if waiting is None:
        return None
    view = dict(waiting)
    for name in ("until", "since"):
        if isinstance(view.get(name), int | float):
            view[name] = timestamp(float(view[name]))
    return view


def step(
    record: StepRecord, *, max_attempts: int | None = None, retry_at: float | None = None
) -> dict[str, Any]:
    """A step of a run's timeline: its memo split into ``output`` or ``error``.

    Args:
        record: the step.
        max_attempts: how many attempts its function allows (None: not known).
        retry_at: when a step waiting to be retried is due again (``Reads.run_retries``).

    Returns:
        The JSON object: ``op`` is the op the step was last reported with, ``kind`` what
        the step is (``step_state.kind``); ``next_retry_at`` is set while it waits to
        be retried.
    """
    output, memo_error = execution.unwrap_memo(record.memo)
    view: dict[str, Any] = {
        "id": record.step_id,
        "name": record.name,
        "op": record.op,
        "kind": step_state.kind(record.op),
        "status": record.status.value,
        "attempts": record.attempts,
        "max_attempts": max_attempts,
        "next_retry_at": None if record.status.ended else timestamp(retry_at),
        "mode": record.mode,
        "started_at": timestamp(record.started_at),
        "ended_at": timestamp(record.ended_at),
        "duration_ms": _duration_ms(record.started_at, record.ended_at),
        "wait": _wait(record.wait),
    }
    error = memo_error or (None if record.status.done else record.error)
    if error is not None:
        view["error"] = error
    else:
        # the SDK's decoding rule: a matched event or a sleep's null is the value itself
        view["output"] = output
    return view


def _duration_ms(start: float | None, end: float | None) -> int | None:
    if start is None or end is None:
        return None
    return max(0, round((end - start) * 1000))


def attempt(record: StepAttempt) -> dict[str, Any]:
    """One attempt of a step: when it ran, how it ended, when it was retried.

    Args:
        record: the attempt (``_observe.attempts.history``).

    Returns:
        The JSON object; ``error`` is None for the attempt that succeeded, ``retry_at``
        for the last one.
    """
    return {
        "step_id": record.step_id,
        "attempt": record.attempt,
        "status": "Completed" if record.error is None else "Failed",
        "started_at": timestamp(record.started_at),
        "ended_at": timestamp(record.ended_at),
        "duration_ms": _duration_ms(record.started_at, record.ended_at),
        "error": record.error,
        "retry_at": timestamp(record.retry_at),
    }


def _wait(wait: dict[str, Any] | None) -> dict[str, Any] | None:
    if wait is None:
        return None
    # ``until`` is epoch seconds in the store; clients want a readable time
    return {
        k: timestamp(v) if k == "until" and isinstance(v, int | float) else v
        for k, v in wait.items()
    }


def event(record: EventRecord) -> dict[str, Any]:
    """An event, with the internal id Inngest's ``/v1/events`` returns as ``internal_id``.

    Args:
        record: the stored event.

    Returns:
        The JSON object.
    """
    payload = record.payload
    return {
        "internal_id": record.internal_id,
        "id": record.id,
        "name": record.name,
        "data": payload.get("data", {}),
        "ts": payload.get("ts"),
        "received_at": timestamp(record.received_at),
        "user": payload.get("user") or {},
        "v": payload.get("v"),
    }


def skipped(link: EventRunLink) -> dict[str, Any]:
    """A function an event did not start, and why.

    Args:
        link: a link with a reason (``rate_limited``, ``idempotent``, ``singleton``, or
            ``debounced``: replaced by a later event in the run named by ``run_id``).

    Returns:
        ``{"function_id", "reason"}``, plus ``run_id`` for a debounced event.
    """
    view: dict[str, Any] = {"function_id": link.function_id, "reason": link.reason}
    if link.run_id is not None:
        view["run_id"] = link.run_id
    return view


def function(record: FunctionRecord, paused: FunctionPause | None = None) -> dict[str, Any]:
    """A registered function with its triggers and raw config.

    Args:
        record: the function.
        paused: its pause, if it is paused.

    Returns:
        The JSON object.
    """
    return {
        "function_id": record.function_id,
        "app_id": record.app_id,
        "name": record.name,
        "triggers": record.config.get("triggers", []),
        "updated_at": timestamp(record.updated_at),
        "config": record.config,
        "paused": pause(paused),
    }


def pause(paused: FunctionPause | None) -> dict[str, Any] | None:
    """A function's pause: since when, what its cron ticks do, why; None if not paused."""
    if paused is None:
        return None
    return {"at": timestamp(paused.paused_at), "crons": paused.crons, "reason": paused.reason}


def app(record: AppRecord, function_count: int) -> dict[str, Any]:
    """A synced app, with its last sync error if the latest sync failed.

    Args:
        record: the app.
        function_count: how many functions it registered.

    Returns:
        The JSON object.
    """
    return {
        "app_id": record.app_id,
        "url": record.url,
        "sdk": record.sdk,
        "framework": record.framework,
        "synced_at": timestamp(record.synced_at),
        "error": record.error,
        "mode": record.mode,
        "functions": function_count,
    }


def page(
    items: Sequence[T], limit: int, render: Callable[[T], dict[str, Any]], key: Callable[[T], str]
) -> dict[str, Any]:
    """A paginated list; the caller fetched ``limit + 1`` items to learn if more exist.

    Args:
        items: up to ``limit + 1`` records, in page order.
        limit: the page size asked for.
        render: a record to JSON.
        key: a record's cursor (its id).

    Returns:
        ``{"data": [...], "metadata": {"next_cursor": <last id or None>}}``.
    """
    shown = items[:limit]
    more = len(items) > limit and bool(shown)
    return {
        "data": [render(i) for i in shown],
        "metadata": {"next_cursor": key(shown[-1]) if more else None},
    }


def data(value: Any) -> dict[str, Any]:
    """Wrap a single result the way Inngest's REST API does: ``{"data": value}``."""
    return {"data": value}


def sync_result(result: SyncResult) -> dict[str, Any]:
    """What syncing one app by URL did.

    Args:
        result: the engine's answer.

    Returns:
        ``{"url", "ok", "status", "error"}``.
    """
    return {"url": result.url, "ok": result.ok, "status": result.status, "error": result.error}
