"""CommHandler POST: memoized replay, step errors and unserializable output."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest

import stepline
import stepline.flask
from stepline._errors import RetryAfterFailure
from stepline._protocol import durations

from .comm_calls import (
    body_for,
    call,
    decoded,
    make_client,
    memo,
    ops,
    recorder,
    serve,
    sha1,
    three_steps,
)

# --- memoized replay ----------------------------------------------------------------


def test_memoized_replay_runs_only_the_new_step() -> None:
    calls: list[str] = []
    client = make_client()
    handler = serve(client, three_steps(client, calls))
    steps = {sha1("a"): memo(42), sha1("b"): memo(84)}
    [op] = ops(call(handler, body=body_for(steps=steps)))
    assert calls == ["c"]
    assert op == {
        "displayName": "c",
        "id": sha1("c"),
        "name": "c",
        "op": "StepRun",
        "opts": None,
        "userland": {"id": "c", "index": None},
        "data": "result=84",
    }
    steps[sha1("c")] = memo("result=84")
    done = call(handler, body=body_for(steps=steps))
    assert done.status == 200
    assert decoded(done) == {"a": 42, "b": 84, "c": "result=84"}
    assert calls == ["c"]  # the last replay ran nothing


def test_memos_are_used_regardless_of_order_and_values_come_from_memos() -> None:
    calls: list[str] = []
    client = make_client()
    handler = serve(client, three_steps(client, calls))
    # The memo values win over what the callables would return now.
    steps = {sha1("b"): memo(1000), sha1("a"): memo(7)}
    [op] = ops(call(handler, body=body_for(steps=steps)))
    assert op["data"] == "result=1000"
    assert calls == ["c"]


def test_repeated_step_ids_are_numbered() -> None:
    calls: list[str] = []
    client = make_client()

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> list[int]:
        first = ctx.step.run("a", recorder(calls, "a#1", 1))
        second = ctx.step.run("a", recorder(calls, "a#2", 2))
        return [first, second]

    handler = serve(client, fn)
    [op1] = ops(call(handler))
    assert op1["id"] == sha1("a")
    assert op1["userland"] == {"id": "a", "index": None}

    [op2] = ops(call(handler, body=body_for(steps={sha1("a"): memo(1)})))
    assert op2["id"] == sha1("a:1")
    assert op2["userland"] == {"id": "a", "index": 1}
    assert op2["displayName"] == "a"
    assert op2["name"] == "a"
    assert op2["data"] == 2

    done = call(handler, body=body_for(steps={sha1("a"): memo(1), sha1("a:1"): memo(2)}))
    assert done.status == 200
    assert decoded(done) == [1, 2]
    assert calls == ["a#1", "a#2"]


# --- step errors --------------------------------------------------------------------


def failing(client: stepline.Client, exc: BaseException) -> stepline.Function:
    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> str:
        def boom() -> None:
            raise exc

        ctx.step.run("boom", boom)
        return "unreachable"

    return fn


def test_step_error_while_attempts_remain() -> None:
    client = make_client()
    handler = serve(client, failing(client, ValueError("broken")))
    response = call(handler, body=body_for(attempt=0, max_attempts=3))
    [op] = ops(response)
    assert op["op"] == "StepError"
    assert op["id"] == sha1("boom")
    assert op["error"]["name"] == "ValueError"
    assert op["error"]["message"] == "broken"
    assert op["error"]["code"] == "unknown"
    assert "ValueError: broken" in op["error"]["stack"]
    assert "x-inngest-no-retry" not in response.headers


def test_step_failed_on_last_attempt() -> None:
    client = make_client()
    handler = serve(client, failing(client, ValueError("broken")))
    response = call(handler, body=body_for(attempt=2, max_attempts=3))
    [op] = ops(response)
    assert op["op"] == "StepFailed"
    assert op["error"]["name"] == "ValueError"
    assert op["error"]["message"] == "broken"
    assert "x-inngest-no-retry" not in response.headers


def test_step_error_without_max_attempts_leaves_the_decision_to_the_engine() -> None:
    client = make_client()
    handler = serve(client, failing(client, ValueError("broken")))
    [op] = ops(call(handler, body=body_for(attempt=50, max_attempts=None)))
    assert op["op"] == "StepError"


def test_non_retriable_error_in_step_fails_the_function() -> None:
    client = make_client()
    handler = serve(client, failing(client, stepline.NonRetriableError("stop now")))
    response = call(handler)
    assert response.status == 500
    assert response.headers["x-inngest-no-retry"] == "true"
    body = decoded(response)
    assert body["code"] == "non_retriable_error"
    assert body["name"] == "NonRetriableError"
    assert body["message"] == "stop now"
    assert isinstance(body["stack"], str)
    # the step that ended the function, so the engine lists the failure under it
    assert body["step"] == {"id": sha1("boom"), "name": "boom"}


def test_retry_after_error_in_step_sets_retry_after() -> None:
    client = make_client()
    error = stepline.RetryAfterError("later", retry_after=dt.timedelta(seconds=30))
    handler = serve(client, failing(client, error))
    before = dt.datetime.now(dt.timezone.utc)
    response = call(handler)
    after = dt.datetime.now(dt.timezone.utc)
    assert response.status == 500
    assert "x-inngest-no-retry" not in response.headers
    body = decoded(response)
    assert body["code"] == "retry_after_error"
    assert body["message"] == "later"
    when = durations.parse_timestamp(response.headers["retry-after"])
    assert before + dt.timedelta(seconds=29) <= when <= after + dt.timedelta(seconds=31)


def test_retry_after_error_beside_steps_that_ran_is_the_steps_error_with_its_retry_after() -> None:
    """Under checkpointing the steps a call ran go with its answer: a ``RetryAfterError``
    answered alone would drop them and run its step again at once. It is the step's error
    beside them instead, and the answer asks for the retry no sooner than it said."""
    client = make_client()
    error = stepline.RetryAfterError("gateway busy", retry_after=dt.timedelta(seconds=30))

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> None:
        ctx.step.run("a", lambda: 1)
        ctx.step.run("boom", lambda: (_ for _ in ()).throw(error))

    before = dt.datetime.now(dt.timezone.utc)
    response = call(serve(client, fn), body=body_for(fn_id="fn-uuid", qi_id="qi-1"))
    after = dt.datetime.now(dt.timezone.utc)
    assert response.status == 206
    ran, failed = decoded(response)
    assert (ran["op"], ran["id"]) == ("StepRun", sha1("a"))
    assert (failed["op"], failed["id"]) == ("StepError", sha1("boom"))
    assert failed["error"]["name"] == "RetryAfterError"
    when = durations.parse_timestamp(response.headers["retry-after"])
    assert before + dt.timedelta(seconds=29) <= when <= after + dt.timedelta(seconds=31)


def test_retry_after_failure_in_a_step_is_the_steps_own_error_with_its_retry_after() -> None:
    """``RetryAfterFailure`` (the Django Tasks backend's backoff): the step's error, even
    with no step before it in the call, reported as the exception it wraps."""
    client = make_client()
    cause = ConnectionError("gateway down")
    error = RetryAfterFailure(cause, dt.timedelta(seconds=60))

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> None:
        ctx.step.run("boom", lambda: (_ for _ in ()).throw(error))

    before = dt.datetime.now(dt.timezone.utc)
    response = call(serve(client, fn), body=body_for(fn_id="fn-uuid", qi_id="qi-1"))
    after = dt.datetime.now(dt.timezone.utc)
    assert response.status == 206
    [failed] = decoded(response)
    assert (failed["op"], failed["id"]) == ("StepError", sha1("boom"))
    assert failed["error"]["name"] == "ConnectionError"
    assert failed["error"]["message"] == "gateway down"
    assert "x-inngest-no-retry" not in response.headers
    when = durations.parse_timestamp(response.headers["retry-after"])
    assert before + dt.timedelta(seconds=59) <= when <= after + dt.timedelta(seconds=61)


def test_function_level_plain_error_is_retriable_500() -> None:
    client = make_client()

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> None:
        raise KeyError("missing")

    response = call(serve(client, fn))
    assert response.status == 500
    assert "x-inngest-no-retry" not in response.headers
    body = decoded(response)
    assert body["code"] == "unknown"
    assert body["name"] == "KeyError"


MEMO_ERROR = {"error": {"name": "ValueError", "message": "x", "stack": "s"}}


def test_memoized_error_is_a_catchable_step_error() -> None:
    client = make_client()
    seen: list[BaseException] = []
    calls: list[str] = []

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> dict[str, Any]:
        try:
            ctx.step.run("boom", recorder(calls, "boom", None))
        except stepline.StepError as exc:
            seen.append(exc)
            return {"name": exc.name, "message": exc.message, "stack": exc.stack}
        return {}

    response = call(serve(client, fn), body=body_for(steps={sha1("boom"): MEMO_ERROR}))
    assert response.status == 200
    assert decoded(response) == {"name": "ValueError", "message": "x", "stack": "s"}
    [exc] = seen
    assert isinstance(exc, stepline.StepError)
    assert calls == []


def test_uncaught_memoized_error_is_step_errored_without_retry() -> None:
    client = make_client()
    calls: list[str] = []

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> None:
        ctx.step.run("boom", recorder(calls, "boom", None))
        calls.append("after")

    response = call(serve(client, fn), body=body_for(steps={sha1("boom"): MEMO_ERROR}))
    assert response.status == 500
    assert response.headers["x-inngest-no-retry"] == "true"
    assert decoded(response) == {
        "code": "step_errored",
        "message": "x",
        "name": "ValueError",
        "stack": "s",
    }
    assert calls == []


def test_nested_step_fails_the_outer_step() -> None:
    client = make_client()
    calls: list[str] = []

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> None:
        ctx.step.run("outer", lambda: ctx.step.run("inner", recorder(calls, "inner", 1)))

    response = call(serve(client, fn))
    [op] = ops(response)
    assert op["op"] == "StepFailed"
    assert op["id"] == sha1("outer")
    assert op["error"]["code"] == "step_nested"
    assert op["error"]["message"] == "Nested steps are not supported."
    assert response.headers["x-inngest-no-retry"] == "true"
    assert calls == []


# --- unserializable output ----------------------------------------------------------


def test_unserializable_step_output_is_500() -> None:
    client = make_client()
    calls: list[str] = []

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> None:
        ctx.step.run("bad", recorder(calls, "bad", object()))
        calls.append("after")

    response = call(serve(client, fn))
    assert response.status == 500
    body = decoded(response)
    assert body["code"] == "output_unserializable"
    assert "bad" in body["message"]
    assert calls == ["bad"]


def test_unserializable_function_output_is_500() -> None:
    client = make_client()

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> object:
        return {"value": object()}

    response = call(serve(client, fn))
    assert response.status == 500
    body = decoded(response)
    assert body["code"] == "output_unserializable"
    assert "function output" in body["message"]


def test_unserializable_function_output_under_checkpointing_is_500() -> None:
    client = make_client()

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> object:
        ctx.step.run("a", lambda: 1)
        return object()

    handler = serve(client, fn)
    # The step that ran is reported first (progress is never lost) ...
    first = call(handler, body=body_for(fn_id="fn-uuid", qi_id="qi-1"))
    assert first.status == 206
    assert [op["op"] for op in decoded(first)] == ["StepRun"]
    # ... and the next call, replaying it, fails with a clear 500.
    memo = {sha1("a"): {"data": 1}}
    response = call(handler, body=body_for(fn_id="fn-uuid", qi_id="qi-1", steps=memo))
    assert response.status == 500
    assert decoded(response)["code"] == "output_unserializable"


@pytest.mark.parametrize("bad", [math.nan, math.inf, {"k": [1.5, -math.inf]}])
def test_non_finite_step_output_under_checkpointing_is_refused_never_null(bad: object) -> None:
    """A 206 answer's ops are encoded without a second NaN walk (each value was checked
    when its step finished): a NaN must still fail the step, never travel as ``null``."""
    client = make_client()

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> object:
        ctx.step.run("a", lambda: 1.5)
        ctx.step.run("b", lambda: bad)
        return "done"

    first = call(serve(client, fn), body=body_for(fn_id="fn-uuid", qi_id="qi-1"))
    assert b"null" not in first.body.replace(b'"opts":null', b"").replace(b'"index":null', b"")
    assert first.status == 206
    reported = decoded(first)
    assert [op["data"] for op in reported] == [1.5]  # "a", before the failure answered
    response = call(
        serve(client, fn),
        body=body_for(fn_id="fn-uuid", qi_id="qi-1", steps={sha1("a"): memo(1.5)}),
    )
    assert response.status == 500
    assert decoded(response)["code"] == "output_unserializable"


def test_non_finite_function_output_under_checkpointing_is_refused() -> None:
    client = make_client()

    @client.function(id="fn", trigger=stepline.TriggerEvent(event="demo/go"))
    def fn(ctx: stepline.SyncContext) -> object:
        ctx.step.run("a", lambda: 1)
        return {"ratio": math.nan}

    memo_a = {sha1("a"): {"data": 1}}
    response = call(serve(client, fn), body=body_for(fn_id="fn-uuid", qi_id="qi-1", steps=memo_a))
    assert response.status == 500
    assert decoded(response)["code"] == "output_unserializable"
