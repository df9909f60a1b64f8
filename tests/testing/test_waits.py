"""Waits, invokes and cancellation under the virtual clock."""

from __future__ import annotations

import datetime as dt

import pytest

import stepline
from stepline.testing import TestEnv
from tests._support.clients import dev_client
from tests._support.virtual_time import START

client = dev_client("waits")


@client.function(id="approval", trigger=stepline.TriggerEvent(event="order/created"))
async def approval(ctx: stepline.Context) -> str:
    got = await ctx.step.wait_for_event(
        "approved",
        event="order/approved",
        timeout=dt.timedelta(days=3),
        if_exp="async.data.order == event.data.order",
    )
    return "timed out" if got is None else f"approved by {got.data['by']}"


@client.function(id="slow-child", trigger=stepline.TriggerEvent(event="t/child"))
async def slow_child(ctx: stepline.Context) -> str:
    await ctx.step.sleep("nap", dt.timedelta(hours=int(ctx.event.data["hours"])))
    return "child done"


@client.function(id="parent", trigger=stepline.TriggerEvent(event="t/parent"))
async def parent(ctx: stepline.Context) -> str:
    try:
        return str(
            await ctx.step.invoke(
                "call-child",
                function=slow_child,
                data={"hours": ctx.event.data["hours"]},
                timeout=dt.timedelta(hours=2),
            )
        )
    except stepline.StepError as exc:
        return f"invoke failed: {exc.name}"


@client.function(
    id="cancellable",
    trigger=stepline.TriggerEvent(event="t/cancellable"),
    cancel=stepline.Cancel(event="t/stop", if_exp="async.data.id == event.data.id"),
)
async def cancellable(ctx: stepline.Context) -> str:
    await ctx.step.sleep("long", dt.timedelta(days=1))
    return "not cancelled"


@client.function(id="signalled", trigger=stepline.TriggerEvent(event="t/signalled"))
def signalled(ctx: stepline.SyncContext) -> str:
    got = ctx.step.wait_for_signal("approval", signal="approved", timeout=dt.timedelta(days=2))
    return "timed out" if got is None else f"approved by {got['by']}"


FUNCTIONS = [approval, slow_child, parent, cancellable, signalled]


def test_a_wait_for_event_times_out_virtually() -> None:
    with TestEnv(client, FUNCTIONS, start=START) as env:
        run = env.start_sync(approval, {"order": 1})
        assert run.result_sync() == "timed out"
        assert env.now == START + dt.timedelta(days=3)


def test_a_wait_for_event_takes_the_matching_event() -> None:
    with TestEnv(client, FUNCTIONS, start=START) as env:
        env.send_sync(stepline.Event(name="order/created", data={"order": 7}))
        env.advance_sync(dt.timedelta(days=1))
        env.send_sync(stepline.Event(name="order/approved", data={"order": 8, "by": "eve"}))
        env.send_sync(stepline.Event(name="order/approved", data={"order": 7, "by": "bob"}))
        (run,) = env.runs_sync(approval)
        assert run.result_sync() == "approved by bob"
        assert env.now == START + dt.timedelta(days=1)


def test_an_invoke_times_out_virtually() -> None:
    with TestEnv(client, FUNCTIONS, start=START) as env:
        assert env.start_sync(parent, {"hours": 1}).result_sync() == "child done"
        assert env.now == START + dt.timedelta(hours=1)
        late = env.start_sync(parent, {"hours": 5})
        assert late.result_sync().startswith("invoke failed")
        assert env.now == START + dt.timedelta(hours=3)


def test_a_cancel_event_ends_a_sleeping_run() -> None:
    with TestEnv(client, FUNCTIONS, start=START) as env:
        run = env.start_sync(cancellable, {"id": 1})
        env.advance_sync(dt.timedelta(hours=1))
        env.send_sync(stepline.Event(name="t/stop", data={"id": 1}))
        with pytest.raises(stepline.RunCancelledError):
            run.result_sync()


def test_cancel_from_the_test() -> None:
    with TestEnv(client, FUNCTIONS, start=START) as env:
        run = env.start_sync(cancellable, {"id": 2})
        assert run.cancel_sync() is stepline.RunStatus.CANCELLED
        with pytest.raises(stepline.RunCancelledError):
            run.result_sync()


def test_a_signal_from_the_test_completes_the_wait_once() -> None:
    with TestEnv(client, FUNCTIONS, start=START) as env:
        run = env.start_sync(signalled)
        run.signal_sync("approved", {"by": "ana"})
        assert run.result_sync() == "approved by ana"
        with pytest.raises(stepline.SignalAlreadyReceivedError):
            env.get_run(run.run_id).signal_sync("approved", {"by": "bo"})
        with pytest.raises(stepline.SignalNotWaitingError):
            run.signal_sync("other")


def test_a_wait_for_signal_times_out_virtually() -> None:
    with TestEnv(client, FUNCTIONS, start=START) as env:
        run = env.start_sync(signalled)
        assert run.result_sync() == "timed out"
        assert env.now == START + dt.timedelta(days=2)
