"""Calling a user function for one request, in its sync or its async form."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from stepline._event import Event
from stepline._execution import step_timeouts
from stepline._execution.call import ExecutionState, Outcome
from stepline._execution.context import Context, ReplayAwareLogger, SyncContext
from stepline._execution.publish import Publisher
from stepline._execution.step import Step, SyncStep

if TYPE_CHECKING:
    from stepline._client import Client
    from stepline._definition.function import Function

Clock = Callable[[], _dt.datetime]


def utc_now() -> _dt.datetime:
    """The current time, timezone-aware UTC."""
    return _dt.datetime.now(_dt.timezone.utc)


def parse_events(state: ExecutionState) -> list[Event]:
    """The request's events, validated; the first is the triggering event.

    Raises:
        BodyInvalidError: an event is malformed.
    """
    request = state.request
    events = [Event.from_wire(raw) for raw in request.events]
    return events or [Event.from_wire(request.event)]


def _common(
    fn: Function, state: ExecutionState, client: Client, events: list[Event]
) -> dict[str, Any]:
    return {
        "event": events[0],
        "events": events,
        "run_id": state.request.ctx.run_id,
        "attempt": state.request.ctx.attempt,
        "logger": ReplayAwareLogger(client.logger, state, fn.composite_id),
        "_state": state,
    }


def _tools(fn: Function, client: Client) -> dict[str, Any]:
    timeouts = fn.options.timeouts
    step = None if timeouts is None or timeouts.step is None else timeouts.step
    return {
        "app_id": client.app_id,
        "send": client.send,
        "send_sync": client.send_sync,
        "step_timeout": step_timeouts.seconds(step, "Timeouts.step"),
    }


def call_sync(
    fn: Function, state: ExecutionState, client: Client, events: list[Event], now: Clock = utc_now
) -> Outcome:
    """Run a plain ``def`` function until it returns or reports."""
    step = SyncStep(state, now, **_tools(fn, client))
    ctx = SyncContext(step=step, **_common(fn, state, client, events))
    outcome = Outcome()
    publisher = state.publisher = Publisher(client.connection, state)
    try:  # ``state.function_call``, unwrapped: a call of every step-by-step step
        try:
            outcome.output = fn.handler(ctx)  # type: ignore[arg-type]
        except BaseException as exc:
            if not state.function_ended(outcome, exc):
                raise
        else:
            state.function_ended(outcome, None)
    finally:
        publisher.close_sync()  # the stream gets what was published before the answer
    return outcome


async def call_async(
    fn: Function, state: ExecutionState, client: Client, events: list[Event], now: Clock = utc_now
) -> Outcome:
    """Run an ``async def`` function until it returns or reports."""
    step = Step(state, now, **_tools(fn, client))
    ctx = Context(step=step, **_common(fn, state, client, events))
    outcome = Outcome()
    publisher = state.publisher = Publisher(client.connection, state)
    try:
        with state.function_call(outcome):
            outcome.output = await fn.handler(ctx)  # type: ignore[arg-type]
    finally:
        await publisher.close_async()  # the stream gets what was published before the answer
    return outcome
