"""Concurrency limits: slots held by executing steps, per key and scope, fair across keys."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt

import pytest

import stepline
from stepline.engine import Engine, ManualClock, RunStatus
from stepline.engine._store import RunFilter
from tests._support.aio import arun
from tests._support.clients import dev_client
from tests._support.engines import finished, running
from tests._support.polling import await_until


class Gauge:
    """Counts steps executing at once, overall and per label."""

    def __init__(self) -> None:
        self.active: collections.Counter[str] = collections.Counter()
        self.peak: collections.Counter[str] = collections.Counter()
        self.order: list[str] = []

    async def hold(self, label: str, seconds: float = 0.03) -> None:
        self.active[label] += 1
        self.active["*"] += 1
        self.peak[label] = max(self.peak[label], self.active[label])
        self.peak["*"] = max(self.peak["*"], self.active["*"])
        try:
            await asyncio.sleep(seconds)
        finally:
            self.active[label] -= 1
            self.active["*"] -= 1
        self.order.append(label)


async def all_done(engine: Engine, function_id: str, count: int, timeout: float = 20.0) -> None:
    async def check() -> bool:
        runs = await engine.list_runs(RunFilter(function_id=function_id, limit=500))
        if len(runs) == count and all(r.status.terminal for r in runs):
            assert all(r.status is RunStatus.COMPLETED for r in runs), runs
            return True
        return False

    await await_until(
        check, timeout=timeout, interval=0.02, message=f"{count} runs of {function_id} to end"
    )


@pytest.mark.slow
def test_function_limit_caps_executing_steps(db: str) -> None:
    client = dev_client()
    gauge = Gauge()

    @client.function(id="capped", trigger=stepline.TriggerEvent(event="t/cap"), concurrency=2)
    async def capped(ctx: stepline.Context) -> int:
        for name in ("a", "b"):
            await ctx.step.run(name, gauge.hold, "x")
        return 1

    async def scenario() -> None:
        async with running(db, clock=ManualClock(), apps=[(client, [capped])]) as engine:
            await engine.send([{"name": "t/cap", "data": {"n": n}} for n in range(8)])
            await all_done(engine, "t-capped", 8)
        assert gauge.peak["*"] == 2  # reached, never exceeded
        assert len(gauge.order) == 16

    arun(scenario())


@pytest.mark.slow
def test_keyed_limit_is_per_key_and_a_hot_key_starves_no_one(db: str) -> None:
    client = dev_client()
    gauge = Gauge()

    @client.function(
        id="keyed",
        trigger=stepline.TriggerEvent(event="t/key"),
        concurrency=stepline.Concurrency(limit=1, key="event.data.user"),
    )
    async def keyed(ctx: stepline.Context) -> str:
        user = str(ctx.event.data["user"])
        await ctx.step.run("work", gauge.hold, user, 0.05)
        return user

    async def scenario() -> None:
        async with running(db, clock=ManualClock(), apps=[(client, [keyed])]) as engine:
            await engine.send([{"name": "t/key", "data": {"user": "hot"}} for _ in range(8)])
            await engine.send({"name": "t/key", "data": {"user": "cold"}})
            await all_done(engine, "t-keyed", 9)
        assert gauge.peak["hot"] == 1
        assert gauge.peak["cold"] == 1
        assert gauge.peak["*"] == 2  # the keys ran side by side
        # the cold key's only run finished while most of the hot key's backlog waited
        assert gauge.order.index("cold") <= 2

    arun(scenario())


def test_account_scope_is_shared_across_functions(db: str) -> None:
    client = dev_client()
    gauge = Gauge()
    shared = stepline.Concurrency(limit=1, key='"openai"', scope="account")

    @client.function(id="one", trigger=stepline.TriggerEvent(event="t/ai"), concurrency=shared)
    async def one(ctx: stepline.Context) -> None:
        await ctx.step.run("call", gauge.hold, "one")

    @client.function(id="two", trigger=stepline.TriggerEvent(event="t/ai"), concurrency=shared)
    async def two(ctx: stepline.Context) -> None:
        await ctx.step.run("call", gauge.hold, "two")

    async def scenario() -> None:
        async with running(db, clock=ManualClock(), apps=[(client, [one, two])]) as engine:
            await engine.send([{"name": "t/ai"} for _ in range(4)])
            await all_done(engine, "t-one", 4)
            await all_done(engine, "t-two", 4)
        assert gauge.peak["*"] == 1

    arun(scenario())


def test_two_limits_both_apply(db: str) -> None:
    client = dev_client()
    gauge = Gauge()

    @client.function(
        id="both",
        trigger=stepline.TriggerEvent(event="t/both"),
        concurrency=[
            stepline.Concurrency(limit=3),
            stepline.Concurrency(limit=1, key="event.data.team"),
        ],
    )
    async def both(ctx: stepline.Context) -> None:
        await ctx.step.run("w", gauge.hold, str(ctx.event.data["team"]), 0.04)

    async def scenario() -> None:
        async with running(db, clock=ManualClock(), apps=[(client, [both])]) as engine:
            teams = "abcdeabcde"
            await engine.send([{"name": "t/both", "data": {"team": t}} for t in teams])
            await all_done(engine, "t-both", 10)
        assert gauge.peak["*"] == 3
        assert all(gauge.peak[t] == 1 for t in "abcde")

    arun(scenario())


def test_sleeping_runs_hold_no_slot_and_parked_runs_say_why(db: str) -> None:
    client = dev_client()
    release = asyncio.Event()

    @client.function(id="slow", trigger=stepline.TriggerEvent(event="t/slow"), concurrency=1)
    async def slow(ctx: stepline.Context) -> str:
        if ctx.event.data["kind"] == "sleeper":
            await ctx.step.run("before", lambda: None)
            await ctx.step.sleep("nap", dt.timedelta(hours=1))
            return "slept"
        await ctx.step.run("blocker", release.wait)
        return "done"

    async def scenario() -> None:
        clock = ManualClock()
        async with running(db, clock=clock, apps=[(client, [slow])]) as engine:
            (sleeper,) = await engine.send({"name": "t/slow", "data": {"kind": "sleeper"}})
            sleeper_run = (await engine.event_runs(sleeper))[0].run_id
            assert sleeper_run is not None

            async def sleeping() -> bool:
                steps = await engine.run_steps(sleeper_run)
                return any(s.status.value == "Sleeping" for s in steps)

            await await_until(sleeping, interval=0.01, message="the sleeper to sleep")
            # the sleeper holds no slot: a blocker starts, then a third run must queue
            (blocker,) = await engine.send({"name": "t/slow", "data": {"kind": "blocker"}})
            (queued,) = await engine.send({"name": "t/slow", "data": {"kind": "blocker"}})
            blocker_run = (await engine.event_runs(blocker))[0].run_id
            queued_run = (await engine.event_runs(queued))[0].run_id
            assert blocker_run is not None
            assert queued_run is not None

            async def parked() -> bool:
                return (await engine.get_run(queued_run)).waiting is not None

            async def blocking() -> bool:  # marked running just after its call was leased
                return (await engine.get_run(blocker_run)).status is RunStatus.RUNNING

            await await_until(parked, interval=0.01, message="the third run to park")
            waiting = (await engine.get_run(queued_run)).waiting
            assert waiting is not None
            assert waiting["reason"] == "concurrency"
            await await_until(blocking, interval=0.01, message="the blocker to run")
            release.set()
            assert (await finished(engine, blocker_run)).status is RunStatus.COMPLETED
            done = await finished(engine, queued_run)
            assert done.status is RunStatus.COMPLETED
            assert done.waiting is None
            assert (await finished(engine, sleeper_run, clock)).output == '"slept"'

    arun(scenario())


def test_cancelling_a_run_mid_call_frees_its_slot(db: str) -> None:
    client = dev_client()
    gate = asyncio.Event()

    @client.function(id="gated", trigger=stepline.TriggerEvent(event="t/gate"), concurrency=1)
    async def gated(ctx: stepline.Context) -> str:
        if ctx.event.data["n"] == 0:
            await ctx.step.run("stuck", gate.wait)
        return "ok"

    async def scenario() -> None:
        async with running(db, clock=ManualClock(), apps=[(client, [gated])]) as engine:
            (first,) = await engine.send({"name": "t/gate", "data": {"n": 0}})
            first_run = (await engine.event_runs(first))[0].run_id
            assert first_run is not None

            async def first_running() -> bool:
                return (await engine.get_run(first_run)).status is RunStatus.RUNNING

            await await_until(first_running, interval=0.01, message="the first run to run")
            (second,) = await engine.send({"name": "t/gate", "data": {"n": 1}})
            second_run = (await engine.event_runs(second))[0].run_id
            assert second_run is not None

            async def parked() -> bool:  # a worker leased its call and found no slot
                waiting = (await engine.get_run(second_run)).waiting or {}
                return waiting.get("reason") == "concurrency"

            await await_until(parked, interval=0.01, message="the second run to be held")
            assert (await engine.get_run(second_run)).status is RunStatus.QUEUED
            await engine.cancel(first_run)
            gate.set()  # the in-flight call returns; its answer is dropped, its slot freed
            assert (await finished(engine, second_run)).status is RunStatus.COMPLETED

    arun(scenario())


def test_two_keyed_limits_of_one_function_count_apart(db: str) -> None:
    client = dev_client()
    gauge = Gauge()

    @client.function(
        id="pair",
        trigger=stepline.TriggerEvent(event="t/pair"),
        concurrency=[
            stepline.Concurrency(limit=1, key="event.data.a"),
            stepline.Concurrency(limit=1, key="event.data.b"),
        ],
    )
    async def pair(ctx: stepline.Context) -> None:
        await ctx.step.run("w", gauge.hold, "w", 0.05)

    async def scenario() -> None:
        async with running(db, clock=ManualClock(), apps=[(client, [pair])]) as engine:
            # a=1 and b=1 are different keys: both runs execute side by side
            await engine.send([{"name": "t/pair", "data": {"a": 1, "b": n}} for n in (2, 3)])
            await engine.send({"name": "t/pair", "data": {"a": 4, "b": 1}})
            await all_done(engine, "t-pair", 3)
        assert gauge.peak["*"] == 2

    arun(scenario())


def test_a_wake_up_passes_on_when_the_woken_call_parks_on_its_other_key(db: str) -> None:
    """The clock never moves, so a call left parked would wait forever (no recheck)."""
    client = dev_client()
    gates = {"1": asyncio.Event(), "2": asyncio.Event()}
    done: list[str] = []

    @client.function(
        id="chain",
        trigger=stepline.TriggerEvent(event="t/chain"),
        concurrency=[
            stepline.Concurrency(limit=1, key="event.data.a"),
            stepline.Concurrency(limit=1, key="event.data.b"),
        ],
    )
    async def chain(ctx: stepline.Context) -> None:
        name = str(ctx.event.data["name"])
        gate = gates.get(name)
        await ctx.step.run("w", gate.wait if gate else asyncio.sleep, *(() if gate else (0,)))
        done.append(name)

    async def started(engine: Engine, event_id: str, status: RunStatus) -> str:
        run_id = (await engine.event_runs(event_id))[0].run_id
        assert run_id is not None

        async def reached() -> bool:
            run = await engine.get_run(run_id)
            return run.status is status and (status is RunStatus.RUNNING or bool(run.waiting))

        await await_until(reached, interval=0.01, message=f"run {run_id} to be {status.value}")
        return run_id

    async def send(engine: Engine, name: str, a: str, b: str, status: RunStatus) -> str:
        data = {"name": name, "a": a, "b": b}
        (event_id,) = await engine.send({"name": "t/chain", "data": data})
        return await started(engine, event_id, status)

    async def scenario() -> None:
        async with running(db, clock=ManualClock(), apps=[(client, [chain])]) as engine:
            await send(engine, "1", "x", "p", RunStatus.RUNNING)  # holds a=x
            await send(engine, "2", "y", "q", RunStatus.RUNNING)  # holds b=q
            await send(engine, "3", "x", "q", RunStatus.QUEUED)  # parked on a=x
            last = await send(engine, "4", "x", "r", RunStatus.QUEUED)  # parked on a=x
            gates["1"].set()
            # 1 ends and wakes 3, which parks on b=q; a=x is free again, so 4 must run
            assert (await finished(engine, last)).status is RunStatus.COMPLETED
            assert done == ["1", "4"]
            gates["2"].set()
            await all_done(engine, "t-chain", 4)
        assert sorted(done) == ["1", "2", "3", "4"]

    arun(scenario())
