"""``CommHandler.call_in_process``: the embedded engine's calls handed over as objects.

The engine in this process gives the SDK the execution request as an object (no JSON
written and read back, no signature: nothing crosses a network). Its answer must be the
one ``handle_sync`` gives for the same request over the wire, byte for byte, whatever the
function did: ran a step, finished, failed (retried or not), diverged from its history,
met a malformed event, or was never served here.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

import stepline
from stepline._comm import CommHandler, CommResponse
from stepline._protocol.execution import ExecutionRequest

from .comm_calls import body_for, call, make_client, memo, serve, sha1


def _functions(client: stepline.Client) -> list[stepline.Function]:
    trigger = stepline.TriggerEvent(event="demo/go")

    @client.function(id="steps", trigger=trigger)
    def steps(ctx: stepline.SyncContext) -> Any:
        a = ctx.step.run("a", lambda: ctx.event.data["n"] + 1)
        return ctx.step.run("b", lambda: {"b": a * 2, "list": [a, None, "x", 0.5, 1e16]})

    @client.function(id="values", trigger=trigger)
    def values(ctx: stepline.SyncContext) -> Any:
        when = dt.datetime(2026, 11, 26, tzinfo=dt.timezone.utc)
        return ctx.step.run("v", lambda: {"when": when, "big": 2**70, "text": "é\u2028"})

    @client.function(id="ckpt", trigger=trigger)
    def ckpt(ctx: stepline.SyncContext) -> Any:
        a = ctx.step.run("a", lambda: [1, 2])
        return {"sum": sum(a)}

    @client.function(id="fails", trigger=trigger, retries=2)
    def fails(ctx: stepline.SyncContext) -> Any:
        raise ValueError("boom")

    @client.function(id="final", trigger=trigger)
    def final(ctx: stepline.SyncContext) -> Any:
        raise stepline.NonRetriableError("no point trying again")

    @client.function(id="later", trigger=trigger)
    def later(ctx: stepline.SyncContext) -> Any:
        return ctx.step.wait_for_event("ok", event="demo/ok", timeout=60)

    return [steps, values, ckpt, fails, final, later]


def _both(
    handler: CommHandler, fn_id: str, body: dict[str, Any]
) -> tuple[CommResponse, CommResponse]:
    """The answer over the wire, then in process, to the same request."""
    wire = call(handler, fn_id, body)
    request = ExecutionRequest.from_wire(json.loads(json.dumps(body)))
    local = handler.call_in_process(f"app-{fn_id}", request, {})
    return wire, local


def _same(wire: CommResponse, local: CommResponse) -> None:
    assert local.status == wire.status
    assert local.headers == wire.headers
    assert json.loads(local.body) == json.loads(wire.body)


@pytest.mark.parametrize(
    ("fn_id", "steps", "status"),
    [
        ("steps", {}, 206),  # runs step a
        ("steps", {sha1("a"): memo(42)}, 206),  # replays a, runs b
        ("steps", {sha1("a"): memo(42), sha1("b"): memo({"b": 84})}, 200),  # returns
        ("values", {}, 206),  # a datetime, an int past 64 bits, escapes
        ("fails", {}, 500),  # retried
        ("final", {}, 500),  # not retried (X-Inngest-No-Retry)
        ("later", {}, 206),  # plans the wait
    ],
)
def test_an_answer_in_process_is_the_one_the_wire_gives(
    fn_id: str, steps: dict[str, Any], status: int
) -> None:
    client = make_client()
    handler = serve(client, *_functions(client))
    wire, local = _both(handler, fn_id, body_for(steps=steps))
    assert wire.status == status, wire.body
    _same(wire, local)


def test_a_failure_before_the_function_runs_is_answered_as_over_the_wire() -> None:
    client = make_client()
    handler = serve(client, *_functions(client))
    malformed = body_for(event={"data": {"n": 1}})  # an event with no name
    wire, local = _both(handler, "steps", malformed)
    assert wire.status == 400, wire.body
    _same(wire, local)
    wire, local = _both(handler, "nope", body_for())  # not served here
    assert json.loads(wire.body)["code"] == "function_not_found"
    _same(wire, local)


def test_a_replay_that_diverged_is_reported_in_process_too() -> None:
    client = make_client()
    handler = serve(client, *_functions(client))
    history = {sha1("gone"): memo(1)}  # a step the code no longer reaches
    body = body_for(steps=history, stack={"stack": [sha1("gone")], "current": 1})
    wire, local = _both(handler, "steps", body)
    assert "x-stepline-nondeterminism" in {name.lower() for name in wire.headers}
    _same(wire, local)


def test_steps_and_the_output_of_one_call_in_process_are_the_wire_s() -> None:
    client = make_client(checkpointing=True)  # StepRun and RunComplete in one answer
    handler = serve(client, *_functions(client))
    body = body_for(fn_id="app-ckpt", qi_id="qi-1")
    wire, local = _both(handler, "ckpt", body)
    assert [op["op"] for op in json.loads(wire.body)] == ["StepRun", "RunComplete"]
    _same(wire, local)
