"""Crons fire once per tick however many engines share the database.

Three engines on one Postgres schema, one virtual clock, the same app served by each
(so each one syncs it and schedules its crons). One engine restarts half way, syncing
again. Every minute tick must start exactly one run, on whichever node leases it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib

import psycopg
import pytest

import stepline
from stepline.engine import Engine, EngineSettings, ManualClock
from stepline.engine._store import RunFilter
from tests._support.aio import arun
from tests._support.clients import dev_client
from tests._support.databases import postgres_schema

pytestmark = [pytest.mark.postgres]

TICKS = 12
START = 1_800_000_000.0  # 2027-01-15T08:00:00Z, on a minute


def test_a_cron_tick_starts_one_run_across_three_nodes() -> None:
    client = dev_client()
    calls: collections.Counter[str] = collections.Counter()

    @client.function(id="tick", trigger=stepline.TriggerCron(cron="* * * * *"))
    def tick(ctx: stepline.SyncContext) -> float:
        calls[ctx.run_id] += 1
        return ctx.event.ts

    async def node(url: str, clock: ManualClock) -> Engine:
        settings = EngineSettings(
            database_url=url, retry_scale=0.0, retry_jitter=0.0, poll_interval=0.02
        )
        engine = Engine(settings, clock=clock)
        await engine.start()
        await engine.serve(client, [tick])
        return engine

    async def all_quiet(engines: list[Engine]) -> None:
        streak = 0
        while streak < 3:  # every node idle, three polls in a row
            await asyncio.sleep(0.02)
            idle = [await e.idle() for e in engines]
            streak = streak + 1 if all(idle) else 0

    async def scenario(url: str) -> None:
        clock = ManualClock(start=START)
        engines = [await node(url, clock) for _ in range(3)]
        try:
            for minute in range(1, TICKS + 1):
                clock.set(START + minute * 60)
                for engine in engines:
                    engine.worker.wake.set()
                await asyncio.wait_for(all_quiet(engines), 20)
                if minute == TICKS // 2:  # a node restarts and syncs the app again
                    await engines[0].stop()
                    engines[0] = await node(url, clock)
            runs = await engines[1].list_runs(RunFilter(function_id="t-tick", limit=100))
        finally:
            for engine in engines:
                await engine.stop()
        assert len(runs) == TICKS
        assert all(run.status.value == "Completed" for run in runs)
        fired = sorted(float(run.output or "0") for run in runs)
        assert fired == [(START + m * 60) * 1000 for m in range(1, TICKS + 1)]
        assert sorted(calls) == sorted(run.run_id for run in runs)
        assert set(calls.values()) == {1}

    with postgres_schema() as url:
        arun(scenario(url))


def test_concurrent_syncs_schedule_each_tick_once() -> None:
    """Three nodes syncing the same app at the same instant queue one job per cron."""
    client = dev_client()

    @client.function(id="a", trigger=stepline.TriggerCron(cron="*/5 * * * *"))
    def a(ctx: stepline.SyncContext) -> None:
        return None

    @client.function(id="b", trigger=stepline.TriggerCron(cron="0 9 * * *"))
    def b(ctx: stepline.SyncContext) -> None:
        return None

    async def scenario(url: str) -> None:
        clock = ManualClock(start=START)
        engines = [Engine(EngineSettings(database_url=url), clock=clock) for _ in range(3)]
        async with contextlib.AsyncExitStack() as stack:
            for engine in engines:
                await engine.start(worker=False)
                stack.push_async_callback(engine.stop)
            await asyncio.gather(*(e.serve(client, [a, b]) for e in engines))
            due = await engines[0].store.read(lambda tx: tx.queue.next_job_at())
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT job_id FROM jobs WHERE kind = 'cron'").fetchall()
        assert len(rows) == 2, rows
        assert due == START + 5 * 60

    with postgres_schema() as url:
        arun(scenario(url))
