"""Reading and asserting on a run's stream under ``TestEnv`` (virtual clock), both faces."""

from __future__ import annotations

import datetime as dt

import pydantic
import pytest

import stepline
from stepline.testing import TestEnv
from tests._support.clients import dev_client
from tests._support.virtual_time import START

client = dev_client("streams")


class Progress(pydantic.BaseModel):
    done: int
    total: int


@client.function(id="report", trigger=stepline.TriggerEvent(event="t/report"))
async def report(ctx: stepline.Context) -> int:
    total = int(ctx.event.data.get("total", 3))
    for n in range(1, total + 1):
        ctx.publish("tokens", f"part {n}")
        await ctx.step.publish(
            f"progress-{n}", topic="progress", data=Progress(done=n, total=total)
        )
        if n == 1:
            await ctx.step.sleep("pause", dt.timedelta(hours=1))
    return total


@client.function(id="sync-report", trigger=stepline.TriggerEvent(event="t/sync-report"))
def sync_report(ctx: stepline.SyncContext) -> str:
    ctx.step.publish("first", topic="progress", data={"n": 1})
    ctx.publish("tokens", "a")
    ctx.publish("tokens", "b")
    return "ok"


@client.function(id="big-report", trigger=stepline.TriggerEvent(event="t/big-report"))
def big_report(ctx: stepline.SyncContext) -> str:
    for n in range(6):  # 1.8 MB: more than one of the engine's pages, bounded by bytes
        ctx.step.publish(f"chunk-{n}", topic="big", data=f"{n}".ljust(300 * 1024, "x"))
    return "ok"


FUNCTIONS = [report, sync_report, big_report]


def test_the_stream_of_an_ended_run_sync_face() -> None:
    with TestEnv(client, FUNCTIONS, start=START) as env:
        run = env.start_sync(report, {"total": 3})
        assert run.result_sync() == 3  # the hour's sleep is skipped on the virtual clock
        messages = run.stream_sync()
        assert [m.seq for m in messages] == list(range(1, 7))
        assert all(isinstance(m, stepline.StreamMessage) for m in messages)
        progress = env.stream_sync(run.run_id, topic="progress")
        assert [m.data for m in progress] == [{"done": n, "total": 3} for n in (1, 2, 3)]
        assert [m.data for m in run.stream_sync("tokens")] == ["part 1", "part 2", "part 3"]
        # published on the virtual clock: the second message an hour after the first
        assert progress[1].at - progress[0].at >= dt.timedelta(hours=1)
        assert progress[0].at.tzinfo is not None


@pytest.mark.anyio
async def test_a_waiting_run_shows_what_it_published_so_far_async_face() -> None:
    async with TestEnv(client, FUNCTIONS, start=START, auto_skip=False) as env:
        run = await env.start(report, {"total": 2})
        # stream() settles first: the run has reached its sleep, time does not move
        so_far = await run.stream()
        assert [(m.topic, m.data) for m in so_far] == [
            ("tokens", "part 1"),
            ("progress", {"done": 1, "total": 2}),
        ]
        await env.advance(dt.timedelta(hours=1))
        assert await run.result() == 2
        everything = await env.stream(run.run_id)
        assert [m.seq for m in everything] == [1, 2, 3, 4]
        assert everything[:2] == so_far


def test_a_sync_function_and_a_missing_run() -> None:
    with TestEnv(client, FUNCTIONS, start=START) as env:
        run = env.start_sync(sync_report)
        assert run.result_sync() == "ok"
        topics = [(m.topic, m.data) for m in run.stream_sync()]
        assert sorted(topics, key=str) == sorted(
            [("progress", {"n": 1}), ("tokens", "a"), ("tokens", "b")], key=str
        )
        assert [m.data for m in run.stream_sync("tokens")] == ["a", "b"]
        with pytest.raises(stepline.RunNotFoundError):
            env.stream_sync("01NOSUCHRUN")


def test_the_stream_of_large_messages_comes_whole_across_pages() -> None:
    with TestEnv(client, FUNCTIONS, start=START) as env:
        run = env.start_sync(big_report, {})
        assert run.result_sync() == "ok"
        assert [m.data[0] for m in run.stream_sync()] == [str(n) for n in range(6)]
