"""The virtual clock: sleeps skip, ``advance`` moves exactly, auto-skip only while waiting."""

from __future__ import annotations

import datetime as dt
import time

import pytest

import stepline
from stepline.testing import RunWaitingError, TestEnv
from tests._support.clients import dev_client
from tests._support.virtual_time import START

client = dev_client("clock")


@client.function(id="week", trigger=stepline.TriggerEvent(event="t/week"))
async def week(ctx: stepline.Context) -> dict[str, object]:
    before = await ctx.step.run("before", lambda: "a")
    await ctx.step.sleep("wait-a-week", dt.timedelta(days=7))
    after = await ctx.step.run("after", lambda: "b")
    return {"steps": [before, after]}


@client.function(id="sync-week", trigger=stepline.TriggerEvent(event="t/sync-week"))
def sync_week(ctx: stepline.SyncContext) -> str:
    ctx.step.sleep("wait-a-week", dt.timedelta(days=7))
    return ctx.step.run("after", lambda: "done")


@client.function(id="until", trigger=stepline.TriggerEvent(event="t/until"))
async def until(ctx: stepline.Context) -> str:
    when = dt.datetime.fromisoformat(ctx.event.data["when"])
    await ctx.step.sleep_until("until", when)
    return "woke"


FUNCTIONS = [week, sync_week, until]


def test_a_week_long_sleep_completes_without_waiting_for_the_week() -> None:
    with TestEnv(client, FUNCTIONS, start=START) as env:
        wall = time.perf_counter()
        run = env.start_sync(week)
        assert run.result_sync() == {"steps": ["a", "b"]}
        assert time.perf_counter() - wall < 10  # a week, virtually; seconds of real work
        assert env.now == START + dt.timedelta(days=7)
        steps = run.steps_sync()
        assert [s.name for s in steps] == ["before", "wait-a-week", "after"]
        assert steps[1].ended_at == START + dt.timedelta(days=7)


def test_sync_functions_sleep_on_the_virtual_clock_too() -> None:
    with TestEnv(client, FUNCTIONS, start=START) as env:
        assert env.start_sync(sync_week).result_sync() == "done"
        assert env.now == START + dt.timedelta(days=7)
        # a second sleep counts from the virtual now, not from the real one
        assert env.start_sync(sync_week).result_sync() == "done"
        assert env.now == START + dt.timedelta(days=14)


def test_sleep_until_a_virtual_time() -> None:
    with TestEnv(client, FUNCTIONS, start=START) as env:
        when = START + dt.timedelta(days=30, hours=2)
        run = env.start_sync(until, {"when": when.isoformat()})
        assert run.result_sync() == "woke"
        assert env.now == when


def test_advance_moves_exactly_and_runs_what_falls_due() -> None:
    with TestEnv(client, FUNCTIONS, start=START, auto_skip=False) as env:
        run = env.start_sync(week)
        env.settle_sync()
        assert run.describe_sync().status is stepline.RunStatus.RUNNING
        env.advance_sync(dt.timedelta(days=6, hours=23))
        assert env.now == START + dt.timedelta(days=6, hours=23)
        assert run.describe_sync().status is stepline.RunStatus.RUNNING
        assert [c.step for c in env.step_calls(week)] == ["before"]
        env.advance_sync(3600)  # seconds work too
        assert run.describe_sync().status is stepline.RunStatus.COMPLETED
        assert run.result_sync() == {"steps": ["a", "b"]}
        assert env.now == START + dt.timedelta(days=7)


def test_without_auto_skip_result_says_what_the_run_waits_for() -> None:
    with TestEnv(client, FUNCTIONS, start=START, auto_skip=False) as env:
        run = env.start_sync(week)
        with pytest.raises(RunWaitingError, match="wait-a-week") as caught:
            run.result_sync()
        assert "2030-01-14T10:30:00" in str(caught.value)
        assert caught.value.run_id == run.run_id
        assert env.now == START  # nothing moved


def test_time_does_not_skip_between_calls_of_the_test() -> None:
    with TestEnv(client, FUNCTIONS, start=START) as env:
        run = env.start_sync(week)
        env.settle_sync()
        time.sleep(0.05)  # real time passing between calls: what must not move ``now``
        assert env.now == START
        assert run.describe_sync().status is stepline.RunStatus.RUNNING


def test_advance_refuses_to_go_back() -> None:
    with TestEnv(client, FUNCTIONS, start=START) as env, pytest.raises(ValueError, match="forward"):
        env.advance_sync(-1)


@pytest.mark.anyio
async def test_async_env_runs_on_the_test_loop() -> None:
    async with TestEnv(client, FUNCTIONS, start=START) as env:
        wall = time.perf_counter()
        run = await env.start(week)
        assert await run.result() == {"steps": ["a", "b"]}
        assert time.perf_counter() - wall < 10  # a week, virtually
        await env.advance(dt.timedelta(hours=1))
        assert env.now == START + dt.timedelta(days=7, hours=1)
        with pytest.raises(stepline.ConfigError, match="deadlock"):
            env.settle_sync()
