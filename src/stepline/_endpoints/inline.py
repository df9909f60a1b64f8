"""Running a durable endpoint's call inside the request, and the engine calls around it.

``start_flow`` starts (or finds) the run and, when the request may execute it now,
returns the lease and the call's body; ``execute_sync``/``execute_async`` run the
handler's function over that body exactly as the serve endpoint would run an engine
call, with each step persisted as it completes (``checkpoints``); ``answer_flow`` hands
the call's answer back to the engine, which applies it as it applies any SDK answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as _dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from stepline import _identity
from stepline._api import runs as _runs
from stepline._api.runs import RunInfo
from stepline._comm.messages import CommResponse
from stepline._endpoints.checkpoints import Checkpoints, HandedBack, Lease, Performers
from stepline._execution import invocation
from stepline._execution.call import ExecutionState
from stepline._execution.checkpointing import CheckpointPolicy
from stepline._protocol import headers
from stepline._protocol.execution import ExecutionRequest
from stepline._transport import effects

if TYPE_CHECKING:
    from stepline._client import Client
    from stepline._definition.function import Function

__all__ = ["Answer", "Execute", "Started", "answer_flow", "start_flow"]

#: The headers an answer to the engine carries (what the engine reads of an SDK's answer).
_BASE = {
    headers.CONTENT_TYPE: headers.JSON,
    headers.SDK: _identity.SDK_HEADER,
    headers.REQ_VERSION: headers.REQUEST_VERSION,
}


@dataclasses.dataclass(frozen=True, slots=True)
class Started:
    """The inline start's answer: the run, and the lease when the request executes it."""

    run: RunInfo
    created: bool
    lease: Lease | None = None
    call: Mapping[str, Any] | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """A call's answer, as the serve endpoint would have sent it to the engine."""

    status: int
    headers: Mapping[str, str]
    body: str


@dataclasses.dataclass(frozen=True, slots=True)
class Execute:
    """The effect of running the handler's function for the leased call (None: handed back)."""

    function: Function
    call: Mapping[str, Any]
    lease: Lease
    budget: float


def start_flow(
    settings: Any,
    function_id: str,
    data: Mapping[str, Any],
    *,
    idempotency_key: str | None,
    started_by: str | None,
    trace: Mapping[str, str],
) -> effects.Flow[Started]:
    """``POST /v1/functions/{id}/inline``: the run, leased to this request if it may run now.

    Raises:
        FunctionNotFoundError: the engine does not know the endpoint's function.
        RunNotStartedError: flow control started no run (rate limit, singleton).
        ManagementError: the engine could not be reached or refused the start.
    """
    body: dict[str, Any] = {"data": dict(data)}
    if idempotency_key is not None:
        body["idempotency_key"] = idempotency_key
    if started_by is not None:
        body["started_by"] = started_by
    path = f"/v1/functions/{function_id}/inline"
    try:
        raw = yield from _runs.call(
            settings, "POST", path, body, what=f"function {function_id!r}", extra_headers=trace
        )
    except _runs.RunNotFoundError:  # the only 404 of this route: no such function
        raise _runs.unknown_function(settings, function_id) from None
    run = RunInfo.from_wire(raw["run"])
    inline = raw.get("inline")
    if not isinstance(inline, dict):
        return Started(run, bool(raw.get("created")))
    lease = Lease(
        run.run_id, str(inline["job_id"]), str(inline["owner"]), float(inline["lease_seconds"])
    )
    return Started(run, bool(raw.get("created")), lease, inline["call"])


def answer_flow(settings: Any, lease: Lease, answer: Answer) -> effects.Flow[RunInfo]:
    """``POST /v1/runs/{id}/inline/answer``: the run as it stands once the answer applied.

    Raises:
        RunNotStartedError: the lease was lost meanwhile (the engine goes on with the run).
        ManagementError: the engine could not be reached or refused the answer.
    """
    body = {
        "job_id": lease.job_id,
        "owner": lease.owner,
        "status": answer.status,
        "headers": dict(answer.headers),
        "body": answer.body,
    }
    path = f"/v1/runs/{lease.run_id}/inline/answer"
    raw = yield from _runs.call(settings, "POST", path, body, what=lease.run_id)
    return RunInfo.from_wire(raw)


def _state(effect: Execute, checkpoints: Checkpoints) -> ExecutionState:
    request = ExecutionRequest.from_wire(effect.call)
    policy = CheckpointPolicy(max_steps=1 << 30, max_seconds=effect.budget)
    nondeterminism = effect.function.options.nondeterminism
    state = ExecutionState(request, checkpoint=policy, nondeterminism=nondeterminism)
    state.checkpointer = checkpoints
    return state


def _answer(outcome: Any) -> Answer:
    now = _dt.datetime.now(_dt.timezone.utc)
    response = CommResponse.from_call_result(outcome, _BASE, now=now)
    return Answer(response.status, response.headers, response.body.decode("utf-8", "replace"))


def execute_sync(client: Client, effect: Execute, performers: Performers) -> Answer | None:
    """Run the call with blocking steps; None when it was handed back to the engine."""
    checkpoints = Checkpoints(client, effect.lease, performers)
    state = _state(effect, checkpoints)
    events = invocation.parse_events(state)
    with checkpoints.kept_sync():
        try:
            outcome = invocation.call_sync(effect.function, state, client, events)
            if outcome.error is not None and (done := state.take_done()):
                checkpoints.flush_sync(done)  # the steps before the failure stay recorded
        except HandedBack:
            return None
    return _answer(outcome)


async def execute_async(client: Client, effect: Execute, performers: Performers) -> Answer | None:
    """Run the call with awaited steps (a plain ``def`` handler runs in a thread)."""
    if not effect.function.is_async:
        return await asyncio.to_thread(execute_sync, client, effect, performers)
    checkpoints = Checkpoints(client, effect.lease, performers)
    state = _state(effect, checkpoints)
    events = invocation.parse_events(state)
    async with checkpoints.kept_async():
        try:
            outcome = await invocation.call_async(effect.function, state, client, events)
            if outcome.error is not None and (done := state.take_done()):
                await checkpoints.flush_async(done)  # the steps before it stay recorded
        except HandedBack:
            return None
    return _answer(outcome)
