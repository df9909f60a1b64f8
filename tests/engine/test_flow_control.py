"""Flow control that decides whether an event starts a run: rate limit and singleton."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

import stepline
from stepline.engine import ManualClock, RunStatus
from stepline.engine._store import RunFilter
from tests._support.aio import arun
from tests._support.clients import dev_client
from tests._support.engines import finished, running


def test_rate_limit_skips_excess_events_per_key(db: str) -> None:
    client = dev_client()

    @client.function(
        id="limited",
        trigger=stepline.TriggerEvent(event="t/hit"),
        rate_limit=stepline.RateLimit(limit=2, period=dt.timedelta(hours=1), key="event.data.user"),
    )
    def limited(ctx: stepline.SyncContext) -> str:
        return str(ctx.event.data["user"])

    async def scenario() -> None:
        clock = ManualClock()
        async with running(db, clock=clock, apps=[(client, [limited])]) as engine:
            ids = await engine.send([{"name": "t/hit", "data": {"user": u}} for u in "aaaab"])
            runs = await engine.list_runs(RunFilter(function_id="t-limited"))
            users = sorted(r.events[0]["data"]["user"] for r in runs)
            assert users == ["a", "a", "b"]
            skipped = [(await engine.event_runs(i))[0].reason for i in ids]
            assert skipped == [None, None, "rate_limited", "rate_limited", None]
            clock.advance(3600)
            await engine.send({"name": "t/hit", "data": {"user": "a"}})
            assert len(await engine.list_runs(RunFilter(function_id="t-limited"))) == 4

    arun(scenario())


@pytest.mark.parametrize("mode", ["skip", "cancel"])
def test_singleton_keeps_one_active_run_per_key(db: str, mode: str) -> None:
    client = dev_client()

    @client.function(
        id="single",
        trigger=stepline.TriggerEvent(event="t/one"),
        singleton=stepline.Singleton(mode=mode, key="event.data.account"),  # type: ignore[arg-type]
    )
    async def single(ctx: stepline.Context) -> int:
        await ctx.step.sleep("hold", dt.timedelta(hours=1))
        return int(ctx.event.data["n"])

    async def scenario() -> None:
        clock = ManualClock()
        async with running(db, clock=clock, apps=[(client, [single])]) as engine:
            await engine.send({"name": "t/one", "data": {"account": "x", "n": 1}})
            await engine.send({"name": "t/one", "data": {"account": "x", "n": 2}})
            await engine.send({"name": "t/one", "data": {"account": "y", "n": 3}})
            runs = await engine.list_runs(RunFilter(function_id="t-single"))
            by_n = {r.events[0]["data"]["n"]: r for r in runs}
            if mode == "skip":
                assert sorted(by_n) == [1, 3]
            else:
                assert sorted(by_n) == [1, 2, 3]
                assert by_n[1].status is RunStatus.CANCELLED
                assert by_n[1].cancel_reason == "singleton: replaced by a newer run"
            survivor = by_n[1] if mode == "skip" else by_n[2]
            done = await finished(engine, survivor.run_id, clock)
            assert done.status is RunStatus.COMPLETED
            # once the key's run has ended, a new event starts a run again
            await engine.send({"name": "t/one", "data": {"account": "x", "n": 4}})
            while len(await engine.list_runs(RunFilter(function_id="t-single"))) < len(runs) + 1:
                await asyncio.sleep(0.01)

    arun(scenario())
