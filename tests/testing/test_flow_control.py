"""Flow control runs the engine's own code under the virtual clock."""

from __future__ import annotations

import datetime as dt

import pytest

import stepline
from stepline.testing import TestEnv, TestRun
from tests._support.clients import dev_client
from tests._support.virtual_time import START

client = dev_client("flow")


@client.function(
    id="debounced",
    trigger=stepline.TriggerEvent(event="t/typed"),
    debounce=stepline.Debounce(period=dt.timedelta(minutes=5)),
)
async def debounced(ctx: stepline.Context) -> object:
    return ctx.event.data["text"]


@client.function(
    id="batched",
    trigger=stepline.TriggerEvent(event="t/item"),
    batch_events=stepline.Batch(max_size=10, timeout=dt.timedelta(seconds=30)),
)
async def batched(ctx: stepline.Context) -> list[object]:
    return [e.data["n"] for e in ctx.events]


@client.function(
    id="throttled",
    trigger=stepline.TriggerEvent(event="t/throttled"),
    throttle=stepline.Throttle(limit=1, period=dt.timedelta(hours=1)),
)
async def throttled(ctx: stepline.Context) -> object:
    return ctx.event.data["n"]


@client.function(id="flaky", trigger=stepline.TriggerEvent(event="t/flaky"), retries=2)
async def flaky(ctx: stepline.Context) -> str:
    return str(await ctx.step.run("call-api", lambda: 1 / 0))


@client.function(id="hourly", trigger=stepline.TriggerCron(cron="0 * * * *"))
async def hourly(ctx: stepline.Context) -> str:
    return "tick"


FUNCTIONS = [debounced, batched, throttled, flaky, hourly]


def _started(env: TestEnv, fn: stepline.Function) -> list[dt.datetime | None]:
    return [run.describe_sync().started_at for run in env.runs_sync(fn)]


def _assert_held(run: TestRun, reason: str) -> None:
    info = run.describe_sync()
    assert info.status is stepline.RunStatus.QUEUED
    assert info.waiting is not None
    assert info.waiting["reason"] == reason


def test_a_debounced_function_fires_once_with_the_last_event() -> None:
    with TestEnv(client, FUNCTIONS, start=START) as env:
        for text in ("h", "he", "hel"):
            env.send_sync(stepline.Event(name="t/typed", data={"text": text}))
            env.advance_sync(dt.timedelta(minutes=1))
        env.send_sync(stepline.Event(name="t/typed", data={"text": "hello"}))
        (run,) = env.runs_sync(debounced)  # one run, held back until the events stop
        env.advance_sync(dt.timedelta(minutes=4, seconds=59))
        _assert_held(run, "debounced")
        env.advance_sync(dt.timedelta(seconds=1))
        assert run.describe_sync().status is stepline.RunStatus.COMPLETED
        assert run.result_sync() == "hello"
        assert run.describe_sync().started_at == START + dt.timedelta(minutes=8)
        env.advance_sync(dt.timedelta(hours=1))
        assert env.runs_sync(debounced) == [run]


def test_a_batch_runs_when_its_timeout_ends() -> None:
    with TestEnv(client, FUNCTIONS, start=START) as env:
        env.send_sync([stepline.Event(name="t/item", data={"n": n}) for n in range(3)])
        env.advance_sync(dt.timedelta(seconds=29))
        (run,) = env.runs_sync(batched)
        _assert_held(run, "batched")
        env.advance_sync(dt.timedelta(seconds=1))
        assert run.describe_sync().status is stepline.RunStatus.COMPLETED
        assert run.result_sync() == [0, 1, 2]


def test_throttled_runs_start_one_per_period() -> None:
    with TestEnv(client, FUNCTIONS, start=START) as env:
        env.send_sync([stepline.Event(name="t/throttled", data={"n": n}) for n in range(3)])
        runs = env.runs_sync(throttled)
        assert sorted(run.result_sync() for run in runs) == [0, 1, 2]
        starts = sorted(s for s in _started(env, throttled) if s is not None)
        assert [s - START for s in starts] == [dt.timedelta(hours=h) for h in range(3)]


def test_retries_back_off_on_the_virtual_clock() -> None:
    with TestEnv(client, FUNCTIONS, start=START, retry_jitter=0) as env:
        run = env.start_sync(flaky)
        with pytest.raises(stepline.RunFailedError) as failed:
            run.result_sync()
        assert failed.value.error["name"] == "ZeroDivisionError"
        calls = env.step_calls(flaky, "call-api")
        assert [c.attempt for c in calls] == [0, 1, 2]
        assert all(isinstance(c.error, ZeroDivisionError) for c in calls)
        # the engine's backoff table: 15 s, then 30 s
        assert env.now == START + dt.timedelta(seconds=45)


def test_cron_ticks_as_virtual_time_passes() -> None:
    with TestEnv(client, FUNCTIONS, start=START) as env:
        env.advance_sync(dt.timedelta(hours=3))
        runs = env.runs_sync(hourly)
        assert [r.result_sync() for r in runs] == ["tick"] * 3
        starts = _started(env, hourly)
        assert [s.time() if s else None for s in starts] == [
            dt.time(11, 0),
            dt.time(12, 0),
            dt.time(13, 0),
        ]
