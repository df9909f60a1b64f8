"""Throttle, priority, debounce and batching: when queued runs start, and with which events."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

import stepline
from stepline.engine import Engine, ManualClock, RunStatus
from stepline.engine._model import Run
from stepline.engine._store import RunFilter
from tests._support.aio import arun
from tests._support.clients import dev_client
from tests._support.engines import advance, running, settle
from tests._support.polling import await_until

SECOND = dt.timedelta(seconds=1)


async def runs_of(engine: Engine, fn: str) -> list[Run]:
    """Every run of a function, oldest first."""
    runs = await engine.list_runs(RunFilter(function_id=f"t-{fn}", limit=500))
    return sorted(runs, key=lambda r: (r.created_at, r.run_id))


async def drain(engine: Engine, clock: ManualClock, fn: str, count: int) -> list[Run]:
    """Move the clock until ``count`` runs of ``fn`` have ended; returns them oldest first."""

    async def done() -> bool:
        runs = await runs_of(engine, fn)
        return len(runs) >= count and all(r.status.terminal for r in runs)

    await asyncio.wait_for(settle(engine, clock, until=done), 20)
    runs = await runs_of(engine, fn)
    assert len(runs) == count, runs
    return runs


def offsets(runs: list[Run], origin: float) -> list[float]:
    return [round((r.started_at or 0.0) - origin, 3) for r in runs]


def test_throttle_spaces_starts_and_delays_never_drops(db: str) -> None:
    client = dev_client()

    @client.function(
        id="paced",
        trigger=stepline.TriggerEvent(event="t/pace"),
        throttle=stepline.Throttle(limit=1, period=10 * SECOND, key="event.data.user"),
    )
    def paced(ctx: stepline.SyncContext) -> Any:
        return ctx.event.data["n"]

    async def scenario() -> None:
        clock = ManualClock()
        t0 = clock.now()
        async with running(db, clock=clock, apps=[(client, [paced])]) as engine:
            await engine.send([{"name": "t/pace", "data": {"user": "a", "n": n}} for n in range(4)])
            await engine.send({"name": "t/pace", "data": {"user": "b", "n": 9}})
            queued = await runs_of(engine, "paced")
            last = max(queued, key=lambda r: r.events[0]["data"]["n"] if r.events else 0)
            waits = sorted(r.waiting["until"] - t0 for r in queued if r.waiting)
            assert waits == [10.0, 20.0, 30.0], waits
            assert last.waiting is None  # user b has its own throttle
            runs = await drain(engine, clock, "paced", 5)
        runs.sort(key=lambda r: int(r.events[0]["data"]["n"]))
        by_user = {u: [r for r in runs if r.events[0]["data"]["user"] == u] for u in ("a", "b")}
        assert offsets(by_user["a"], t0) == [0.0, 10.0, 20.0, 30.0]
        assert [r.output for r in by_user["a"]] == ["0", "1", "2", "3"]  # FIFO
        assert offsets(by_user["b"], t0) == [0.0]
        assert all(r.status is RunStatus.COMPLETED and r.waiting is None for r in runs)

    arun(scenario())


def test_throttle_burst_lets_limit_plus_burst_start_at_once(db: str) -> None:
    """Inngest's documented example: limit 2 per 6s, burst 1, six events 0.5s apart."""
    client = dev_client()

    @client.function(
        id="bursty",
        trigger=stepline.TriggerEvent(event="t/burst"),
        throttle=stepline.Throttle(limit=2, period=6 * SECOND, burst=1),
    )
    def bursty(ctx: stepline.SyncContext) -> None:
        return None

    async def scenario() -> None:
        clock = ManualClock()
        t0 = clock.now()
        async with running(db, clock=clock, apps=[(client, [bursty])]) as engine:
            for _ in range(6):
                await engine.send({"name": "t/burst"})
                await advance(engine, clock, 0.5)
            runs = await drain(engine, clock, "bursty", 6)
        assert offsets(runs, t0) == [0.0, 0.5, 1.0, 3.0, 6.0, 9.0]

    arun(scenario())


def test_concurrency_and_throttle_together(db: str) -> None:
    client = dev_client()
    active: list[int] = [0, 0]

    async def work() -> None:
        active[0] += 1
        active[1] = max(active[1], active[0])
        await asyncio.sleep(0.02)
        active[0] -= 1

    @client.function(
        id="both",
        trigger=stepline.TriggerEvent(event="t/both"),
        concurrency=1,
        throttle=stepline.Throttle(limit=2, period=4 * SECOND, burst=1),
    )
    async def both(ctx: stepline.Context) -> None:
        await ctx.step.run("a", work)
        await ctx.step.run("b", work)

    async def scenario() -> None:
        clock = ManualClock()
        t0 = clock.now()
        async with running(db, clock=clock, apps=[(client, [both])]) as engine:
            await engine.send([{"name": "t/both"} for _ in range(5)])
            runs = await drain(engine, clock, "both", 5)
        assert active[1] == 1
        # throttle: three at once (limit + burst), then one every 2s; concurrency only
        # serialises their steps and never lets a run start before its throttle slot
        assert sorted(offsets(runs, t0)) == [0.0, 0.0, 0.0, 2.0, 4.0]

    arun(scenario())


def test_priority_orders_a_backlog_and_negative_priority_delays(db: str) -> None:
    client = dev_client()
    order: list[str] = []
    gate = asyncio.Event()

    async def hold(label: str) -> None:
        if label == "first":
            await gate.wait()
        order.append(label)

    @client.function(
        id="ranked",
        trigger=stepline.TriggerEvent(event="t/rank"),
        concurrency=1,
        priority=stepline.Priority(run="event.data.boost"),
    )
    async def ranked(ctx: stepline.Context) -> None:
        await ctx.step.run("w", hold, str(ctx.event.data["label"]))

    async def scenario() -> None:
        clock = ManualClock()
        t0 = clock.now()
        async with running(db, clock=clock, apps=[(client, [ranked])]) as engine:
            await engine.send({"name": "t/rank", "data": {"label": "first", "boost": 0}})
            while not (await runs_of(engine, "ranked"))[0].started_at:
                await asyncio.sleep(0.01)
            await engine.send({"name": "t/rank", "data": {"label": "plain", "boost": 0}})
            clock.advance(1)
            await engine.send({"name": "t/rank", "data": {"label": "vip", "boost": 120}})
            await engine.send({"name": "t/rank", "data": {"label": "late", "boost": -30}})
            runs = await runs_of(engine, "ranked")
            late = next(r for r in runs if r.events[0]["data"]["label"] == "late")
            assert late.waiting is not None
            assert late.waiting["reason"] == "priority"

            async def backlog() -> bool:  # the other two leased and held for the slot
                held = [r for r in await runs_of(engine, "ranked") if r.waiting is not None]
                return len(held) == 3

            await await_until(backlog, timeout=10, message="the backlog to be held")
            gate.set()
            runs = await drain(engine, clock, "ranked", 4)
        assert order == ["first", "vip", "plain", "late"]
        late = next(r for r in runs if r.events[0]["data"]["label"] == "late")
        assert (late.started_at or 0) - t0 >= 31.0

    arun(scenario())


@pytest.mark.slow
def test_debounce_runs_once_with_the_last_event_after_quiet_or_timeout(db: str) -> None:
    client = dev_client()
    seen: list[Any] = []

    @client.function(
        id="typing",
        trigger=stepline.TriggerEvent(event="t/type"),
        debounce=stepline.Debounce(period=10 * SECOND, key="event.data.doc", timeout=25 * SECOND),
    )
    def typing_done(ctx: stepline.SyncContext) -> Any:
        seen.append([e.data["n"] for e in ctx.events])
        return ctx.event.data["n"]

    async def scenario() -> None:
        clock = ManualClock()
        t0 = clock.now()
        async with running(db, clock=clock, apps=[(client, [typing_done])]) as engine:
            first = await engine.send({"name": "t/type", "data": {"doc": "x", "n": 1}})
            await advance(engine, clock, 5)
            await engine.send({"name": "t/type", "data": {"doc": "x", "n": 2}})
            await engine.send({"name": "t/type", "data": {"doc": "y", "n": 7}})
            await advance(engine, clock, 8)
            last = await engine.send({"name": "t/type", "data": {"doc": "x", "n": 3}})
            pending = await runs_of(engine, "typing")
            assert len(pending) == 2
            assert all(r.status is RunStatus.QUEUED for r in pending)
            x_run = next(r for r in pending if r.events[0]["data"]["doc"] == "x")
            assert x_run.waiting == {"reason": "debounced", "until": t0 + 23.0}
            superseded = await engine.event_runs(first[0])
            assert [(link.run_id, link.reason) for link in superseded] == [
                (x_run.run_id, "debounced")
            ]
            assert (await engine.event_runs(last[0]))[0].reason is None
            runs = await drain(engine, clock, "typing", 2)
            by_doc = {r.events[0]["data"]["doc"]: r for r in runs}
            assert offsets([by_doc["x"]], t0) == [23.0]
            assert offsets([by_doc["y"]], t0) == [15.0]
            assert by_doc["x"].output == "3"
            assert by_doc["x"].event_ids == last
            # a steady stream never goes quiet: the timeout starts the run anyway
            t1 = clock.now()
            for n in range(10, 16):
                await engine.send({"name": "t/type", "data": {"doc": "z", "n": n}})
                await advance(engine, clock, 6)
            runs = await drain(engine, clock, "typing", 4)
        z_runs = [r for r in runs if r.events[0]["data"]["doc"] == "z"]
        assert offsets(z_runs, t1) == [25.0, 40.0]
        assert [r.output for r in z_runs] == ["14", "15"]
        assert sorted(seen) == [[3], [7], [14], [15]]

    arun(scenario())


def test_debounced_run_is_cancelled_by_event_and_the_next_event_starts_afresh(db: str) -> None:
    client = dev_client()

    @client.function(
        id="cancellable",
        trigger=stepline.TriggerEvent(event="t/edit"),
        debounce=stepline.Debounce(period=10 * SECOND),
        cancel=[stepline.Cancel(event="t/discard", if_exp="async.data.doc == event.data.doc")],
    )
    def cancellable(ctx: stepline.SyncContext) -> Any:
        return ctx.event.data["n"]

    async def scenario() -> None:
        clock = ManualClock()
        async with running(db, clock=clock, apps=[(client, [cancellable])]) as engine:
            await engine.send({"name": "t/edit", "data": {"doc": "a", "n": 1}})
            await engine.send({"name": "t/edit", "data": {"doc": "b", "n": 2}})
            # the cancel rule matches the debounced run's latest trigger (doc b), not doc a
            await engine.send({"name": "t/discard", "data": {"doc": "a"}})
            (pending,) = await runs_of(engine, "cancellable")
            assert pending.status is RunStatus.QUEUED
            await engine.send({"name": "t/discard", "data": {"doc": "b"}})
            (cancelled,) = await runs_of(engine, "cancellable")
            assert cancelled.status is RunStatus.CANCELLED
            clock.advance(2)
            await engine.send({"name": "t/edit", "data": {"doc": "c", "n": 3}})
            runs = await drain(engine, clock, "cancellable", 2)
        assert [r.status for r in runs] == [RunStatus.CANCELLED, RunStatus.COMPLETED]
        assert runs[1].output == "3"

    arun(scenario())


def test_batches_fill_by_size_or_timeout_per_key_and_if_runs_alone(db: str) -> None:
    client = dev_client()

    @client.function(
        id="batched",
        trigger=stepline.TriggerEvent(event="t/item"),
        batch_events=stepline.Batch(
            max_size=3, timeout=10 * SECOND, key="event.data.shop", if_exp="event.data.bulk"
        ),
    )
    def batched(ctx: stepline.SyncContext) -> Any:
        return [e.data["n"] for e in ctx.events]

    async def scenario() -> None:
        clock = ManualClock()
        t0 = clock.now()
        async with running(db, clock=clock, apps=[(client, [batched])]) as engine:
            items = [("a", n) for n in range(4)] + [("b", 10), ("b", 11)]
            for shop, n in items:
                await engine.send({"name": "t/item", "data": {"shop": shop, "n": n, "bulk": True}})
                await advance(engine, clock, 1)
            alone = await engine.send(
                {"name": "t/item", "data": {"shop": "a", "n": 99, "bulk": False}}
            )
            pending = {
                tuple(e["data"]["n"] for e in r.events): r for r in await runs_of(engine, "batched")
            }
            assert set(pending) == {(0, 1, 2), (3,), (10, 11), (99,)}
            assert pending[(10, 11)].waiting == {
                "reason": "batched",
                "until": t0 + 14.0,
                "events": 2,
                "max": 3,
            }
            runs = await drain(engine, clock, "batched", 4)
        by_events = {r.output: r for r in runs}
        assert set(by_events) == {"[0,1,2]", "[3]", "[10,11]", "[99]"}
        assert offsets([by_events["[0,1,2]"]], t0) == [2.0]  # full: started at once
        assert offsets([by_events["[3]"]], t0) == [13.0]  # 10s after its first event
        assert offsets([by_events["[10,11]"]], t0) == [14.0]
        assert offsets([by_events["[99]"]], t0) == [6.0]  # failed `if`: not batched
        assert by_events["[99]"].event_ids == alone

    arun(scenario())


def test_batch_ignores_an_idempotent_duplicate(db: str) -> None:
    client = dev_client()

    @client.function(
        id="dedupe",
        trigger=stepline.TriggerEvent(event="t/dup"),
        batch_events=stepline.Batch(max_size=5, timeout=5 * SECOND),
    )
    def dedupe(ctx: stepline.SyncContext) -> Any:
        return sorted(e.data["n"] for e in ctx.events)

    async def scenario() -> None:
        clock = ManualClock()
        async with running(db, clock=clock, apps=[(client, [dedupe])]) as engine:
            await engine.send({"name": "t/dup", "id": "same", "data": {"n": 1}})
            dup = await engine.send({"name": "t/dup", "id": "same", "data": {"n": 1}})
            await engine.send({"name": "t/dup", "data": {"n": 2}})
            (run,) = await drain(engine, clock, "dedupe", 1)
            assert (await engine.event_runs(dup[0]))[0].reason == "idempotent"
        assert run.output == "[1,2]"

    arun(scenario())
