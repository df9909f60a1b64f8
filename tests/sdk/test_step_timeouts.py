"""Step timeouts in the SDK: a step over its timeout fails its attempt with StepTimeoutError.

Async code is cancelled (its ``finally`` runs); sync code is abandoned on its thread and
its late result ignored; retries apply (StepError op) until the last attempt (StepFailed).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from typing import Any

import pytest

import stepline
from stepline._execution import step_timeouts
from stepline.engine._apps.registry import parse_app

from .comm_calls import body_for, call, make_client, ops, serve

ON = stepline.TriggerEvent(event="demo/go")


def test_a_sync_step_over_its_timeout_is_abandoned_and_its_late_result_ignored() -> None:
    client = make_client()
    release = threading.Event()
    finished: list[str] = []

    def slow() -> str:
        release.wait(10)
        finished.append("late")
        return "late result"

    @client.function(id="fn", trigger=ON)
    def fn(ctx: stepline.SyncContext) -> Any:
        return ctx.step.run("slow", slow, timeout=200)

    handler = serve(client, fn)
    started = time.monotonic()
    [op] = ops(call(handler, body=body_for(attempt=0, max_attempts=3)))
    assert time.monotonic() - started < 5  # it did not wait for the step's thread
    assert op["op"] == "StepError"
    assert op["error"]["name"] == "StepTimeoutError"
    assert op["error"]["code"] == "step_timeout"
    assert "ran longer than its timeout of 0.2s" in op["error"]["message"]
    assert finished == []  # still running: abandoned, not stopped
    release.set()
    deadline = time.monotonic() + 5
    while not finished and time.monotonic() < deadline:
        time.sleep(0.01)
    assert finished == ["late"]  # it ended later; nothing reported it

    # the last attempt fails the step for good
    release.clear()
    [op] = ops(call(handler, body=body_for(attempt=2, max_attempts=3)))
    assert op["op"] == "StepFailed"
    assert op["error"]["name"] == "StepTimeoutError"
    release.set()


def test_an_async_step_over_its_timeout_is_cancelled() -> None:
    client = make_client()
    seen: list[str] = []

    async def slow() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        return "never"

    @client.function(id="fn", trigger=ON)
    async def fn(ctx: stepline.Context) -> Any:
        return await ctx.step.run("slow", slow, timeout=dt.timedelta(milliseconds=200))

    [op] = ops(call(serve(client, fn), body=body_for(attempt=0, max_attempts=2)))
    assert op["op"] == "StepError"
    assert op["error"]["name"] == "StepTimeoutError"
    assert "cancelled" in op["error"]["message"]
    assert seen == ["cancelled"]


def test_a_sync_callable_in_an_async_function_runs_on_a_thread_of_its_own() -> None:
    client = make_client()
    release = threading.Event()

    @client.function(id="fn", trigger=ON)
    async def fn(ctx: stepline.Context) -> Any:
        return await ctx.step.run("blocking", lambda: release.wait(10), timeout=200)

    started = time.monotonic()
    [op] = ops(call(serve(client, fn), body=body_for(attempt=0, max_attempts=1)))
    release.set()
    assert time.monotonic() - started < 5
    assert op["op"] == "StepFailed"  # max_attempts 1: the first attempt is the last
    assert op["error"]["name"] == "StepTimeoutError"


@pytest.mark.slow
def test_the_function_default_applies_and_a_step_may_override_it() -> None:
    client = make_client()
    release = threading.Event()

    @client.function(id="fn", trigger=ON, timeouts=stepline.Timeouts(step="1s"))
    def fn(ctx: stepline.SyncContext) -> Any:
        quick = ctx.step.run("quick", lambda: "fast", timeout="5s")
        return quick, ctx.step.run("slow", lambda: release.wait(10))

    handler = serve(client, fn)
    [op] = ops(call(handler))
    assert op["op"] == "StepRun"
    assert op["data"] == "fast"
    steps = {op["id"]: {"data": "fast"}}
    started = time.monotonic()
    [op] = ops(call(handler, body=body_for(steps=steps)))
    release.set()
    assert 0.9 < time.monotonic() - started < 5
    assert op["error"]["name"] == "StepTimeoutError"
    assert "timeout of 1s" in op["error"]["message"]


def test_steps_within_their_timeout_and_their_own_timeout_errors() -> None:
    client = make_client()

    async def own_timeout() -> None:
        raise TimeoutError("the payment API timed out")

    @client.function(id="fn", trigger=ON)
    async def fn(ctx: stepline.Context) -> Any:
        await ctx.step.run("own", own_timeout, timeout="10s")

    [op] = ops(call(serve(client, fn), body=body_for(max_attempts=2)))
    assert op["error"]["name"] == "TimeoutError"  # the step's own error, not ours

    @client.function(id="ok", trigger=ON)
    def ok(ctx: stepline.SyncContext) -> Any:
        return ctx.step.run("fast", lambda x: x * 2, 21, timeout=5000)

    [op] = ops(call(serve(client, ok), "ok"))
    assert op["data"] == 42


def test_bad_timeouts_are_config_errors() -> None:
    with pytest.raises(stepline.ConfigError, match="positive"):
        step_timeouts.seconds(0)
    with pytest.raises(stepline.ConfigError, match="invalid step timeout"):
        step_timeouts.seconds("soon", "step timeout")
    with pytest.raises(stepline.ConfigError, match="at least one"):
        stepline.Timeouts()
    with pytest.raises(stepline.ConfigError, match=r"Timeouts\.call"):
        stepline.Timeouts(call="0.5s")


def test_the_registration_carries_step_and_call_and_the_engine_reads_call() -> None:
    client = make_client()
    timeouts = stepline.Timeouts(finish="1h", step="30s", call="2m")
    assert timeouts.to_wire() == {"finish": "1h", "step": "30s", "call": "2m"}

    @client.function(id="fn", trigger=ON, timeouts=timeouts)
    def fn(ctx: stepline.SyncContext) -> None:
        return None

    config = fn.configs("http://app/api/inngest")[0]
    assert config["timeouts"] == {"finish": "1h", "step": "30s", "call": "2m"}
    app = parse_app({"appName": "app", "url": "http://app/api/inngest", "functions": [config]})
    [spec] = app.functions
    assert spec.call_timeout == 120.0
    assert spec.finish_timeout == 3600.0
