"""Retention on every store: ended runs and unreferenced events go, live ones stay.

Store contract style (``test_store_contract``): rows written through the ``Tx``, then a
sweep on a manual clock; and once through a running engine with real functions.
"""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any

import pytest

import stepline
from stepline.engine import EngineSettings, ManualClock
from stepline.engine._config import EngineConfigError, parse_retention, resolve
from stepline.engine._errors import NotFoundError
from stepline.engine._model import (
    EventRecord,
    EventRunLink,
    Job,
    JobKind,
    RunStatus,
    StepRecord,
    StepStatus,
)
from stepline.engine._observe.metrics import EngineMetrics
from stepline.engine._store import RunFilter, Store, Tx
from stepline.engine._store import retention as _retention
from stepline.engine._store.sweeper import Sweeper, interval_for
from tests._support.aio import arun
from tests._support.clients import dev_client
from tests._support.databases import postgres_schema
from tests._support.engines import finished, only_run, running
from tests._support.polling import await_until

from .test_store_contract import job, run_record, with_store

DAY = 86_400.0
T0 = 1_000_000.0


def event(internal_id: str, at: float) -> EventRecord:
    return EventRecord(internal_id, "e", {"name": "e", "data": {}, "id": internal_id}, at)


def step(run_id: str, step_id: str) -> StepRecord:
    return StepRecord(run_id, step_id, step_id, "StepRun", StepStatus.COMPLETED, memo='"x"')


def seed(tx: Tx, run_id: str, event_id: str, at: float, **changes: Any) -> None:
    """A run with two steps, started by its own event received at ``at``."""
    tx.insert_event(event(event_id, at))
    tx.insert_run(run_record(run_id, event_ids=[event_id], created_at=at, **changes))
    tx.link_event(EventRunLink(event_id, "app-fn", run_id, None, at))
    for n in ("a", "b"):
        tx.put_step(step(run_id, n))


def counts(tx: Tx) -> dict[str, int]:
    raw = tx.execute  # type: ignore[attr-defined]
    return {t: int(raw(f"SELECT COUNT(*) FROM {t}").fetchone()[0]) for t in _retention.TABLES}


def test_ended_runs_and_their_events_go_live_ones_stay(db: str) -> None:
    async def body(store: Store) -> None:
        def write(tx: Tx) -> None:
            seed(tx, "OLD", "E-OLD", T0, status=RunStatus.COMPLETED, ended_at=T0 + 10)
            seed(tx, "FAILED", "E-FAILED", T0, status=RunStatus.FAILED, ended_at=T0 + 10)
            seed(tx, "GONE", "E-GONE", T0, status=RunStatus.CANCELLED, ended_at=T0 + 10)
            # a sleeping run from long ago: its wake job, its steps and its event stay
            seed(tx, "SLEEPING", "E-SLEEP", T0, status=RunStatus.RUNNING, started_at=T0)
            tx.queue.enqueue(job("wake-1", T0 + 30 * DAY, kind=JobKind.WAKE, run_id="SLEEPING"))
            # ended recently: kept until its own end is older than the retention
            seed(tx, "RECENT", "E-RECENT", T0, status=RunStatus.COMPLETED, ended_at=T0 + 9 * DAY)
            tx.insert_event(event("E-LONE", T0))  # started nothing: goes
            tx.insert_event(event("E-QUEUED", T0))  # its fan-out never ran: stays
            tx.queue.enqueue(
                Job("fanout:E-QUEUED", JobKind.FANOUT, T0, payload={"event_id": "E-QUEUED"})
            )
            tx.insert_event(event("E-NEW", T0 + 9 * DAY))  # recent: stays

        await store.atomic(write)
        clock = ManualClock(start=T0 + 7 * DAY)
        sweeper = Sweeper(store, clock, 7 * DAY)
        assert await sweeper.sweep() == {}, "nothing is older than the retention yet"
        clock.set(T0 + 8 * DAY)
        removed = await sweeper.sweep()
        assert removed["runs"] == 3
        assert removed["steps"] == 6
        assert removed["events"] == 4

        def check(tx: Tx) -> None:
            for gone in ("OLD", "FAILED", "GONE"):
                assert tx.get_run(gone) is None
                assert tx.get_steps(gone) == []
            for kept in ("SLEEPING", "RECENT"):
                assert tx.get_run(kept) is not None
                assert len(tx.get_steps(kept)) == 2
            for gone in ("E-OLD", "E-FAILED", "E-GONE", "E-LONE"):
                assert tx.get_event(gone) is None
                assert tx.event_links(gone) == []
            for kept in ("E-SLEEP", "E-RECENT", "E-QUEUED", "E-NEW"):
                assert tx.get_event(kept) is not None
            assert [link.run_id for link in tx.event_links("E-SLEEP")] == ["SLEEPING"]
            assert tx.queue.get_job("wake-1") is not None

        await store.read(check)
        assert await sweeper.sweep() == {}, "a second pass finds nothing"

    with_store(db, body)


def test_per_key_rows_expire_on_their_own_windows(db: str) -> None:
    async def body(store: Store) -> None:
        now = T0 + 100

        def write(tx: Tx) -> None:
            tx.insert_run(run_record("LIVE", status=RunStatus.RUNNING))
            tx.insert_run(run_record("ENDED", status=RunStatus.COMPLETED, ended_at=now - 1))
            assert tx.claim_key("idem:f", "old", now - 1, T0)
            assert tx.claim_key("idem:f", "new", now + 60, T0)
            tx.flow.set_limit("rate:f", "old", now - 50, now - 1)
            tx.flow.set_limit("rate:f", "new", now, now + 60)
            tx.flow.set_bucket("f", "debounce:old", "LIVE", now - 1)
            tx.flow.set_bucket("f", "debounce:new", "LIVE", now + 60)
            tx.flow.set_singleton("f", "ended", "ENDED")
            tx.flow.set_singleton("f", "missing", "NO-SUCH-RUN")
            tx.flow.set_singleton("f", "live", "LIVE")
            assert tx.flow.acquire_slots("job-old", [("k", 5)], T0, now - 400) is None
            assert tx.flow.acquire_slots("job-new", [("k", 5)], T0, now - 1) is None

        await store.atomic(write)
        # a retention far longer than any of these windows: keys go on their own schedule
        removed = await Sweeper(store, ManualClock(start=now), 365 * DAY).sweep()
        assert removed == {
            "idempotency": 1,
            "limits": 1,
            "buckets": 1,
            "singletons": 2,
            "slots": 1,
        }

        def check(tx: Tx) -> None:
            assert not tx.claim_key("idem:f", "new", now + 60, now), "a live key still holds"
            assert tx.flow.get_limit("rate:f", "old") is None
            assert tx.flow.get_limit("rate:f", "new") == now
            assert tx.flow.get_bucket("f", "debounce:old") is None
            assert tx.flow.get_bucket("f", "debounce:new") == ("LIVE", now + 60)
            assert tx.flow.singleton_run("f", "live") == "LIVE"
            assert tx.flow.singleton_run("f", "ended") is None
            assert tx.flow.singleton_run("f", "missing") is None
            assert tx.flow.count_slots("k", now - 2) == 1, (
                "the recently expired slot is the worker's"
            )
            assert tx.get_run("ENDED") is not None, "ended within the retention: kept"

        await store.atomic(check)

    with_store(db, body)


def test_batches_are_bounded(db: str) -> None:
    async def body(store: Store) -> None:
        def write(tx: Tx) -> None:
            for n in range(30):
                seed(tx, f"R{n:02}", f"E{n:02}", T0, status=RunStatus.COMPLETED, ended_at=T0)
                tx.put_step(step(f"R{n:02}", "c"))

        await store.atomic(write)
        now = T0 + 2 * DAY
        batches: list[dict[str, int]] = []
        while True:
            done = await store.atomic(lambda tx: _retention.sweep_batch(tx, now, now - DAY, 10))
            assert done is not None
            removed, more = done
            batches.append(removed)
            assert sum(removed.values()) <= 10, removed
            if not more:
                break
            assert len(batches) < 100
        assert len(batches) >= 15  # 90 steps + 30 runs + 30 links + 30 events, 10 at a time
        assert {k: v for k, v in (await store.read(counts)).items() if v} == {}

    with_store(db, body)


def test_a_backlog_is_cleared_in_paced_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    # back to back, the batches of a large backlog held SQLite's one writer nearly all
    # the time: steps ran up to 5x slower until the backlog was gone (large_tables.py)
    from stepline.engine._store import sweeper as _sweeper

    class SlowStore:
        """A store whose every batch takes 30 ms and finds more, three times."""

        def __init__(self) -> None:
            self.left = 3

        async def atomic(self, work: Any) -> tuple[dict[str, int], bool]:
            await real_sleep(0.03)
            self.left -= 1
            return {"runs": 500}, self.left > 0

    real_sleep = _sweeper.asyncio.sleep
    pauses: list[float] = []

    async def noted(seconds: float) -> None:
        # the sweeper's own pauses only: asyncio.sleep is one function for every loop of
        # the process, and another test's thread may still be sleeping on its own
        if sys._getframe(1).f_globals.get("__name__") != _sweeper.__name__:
            await real_sleep(seconds)
            return
        pauses.append(seconds)

    monkeypatch.setattr(_sweeper.asyncio, "sleep", noted)
    sweeper = Sweeper(SlowStore(), ManualClock(T0), DAY)  # type: ignore[arg-type]
    assert arun(sweeper.sweep()) == {"runs": 1500}
    assert len(pauses) == 2  # between the batches, none after the last
    assert all(pause >= 3 * 0.03 for pause in pauses), pauses  # a quarter of the time at most


def test_off_keeps_everything(db: str) -> None:
    async def body(store: Store) -> None:
        await store.atomic(
            lambda tx: seed(tx, "R", "E", T0, status=RunStatus.COMPLETED, ended_at=T0)
        )
        sweeper = Sweeper(store, ManualClock(start=T0 + 1000 * DAY), parse_retention("off"))
        assert not sweeper.enabled
        assert await sweeper.sweep() == {}
        await sweeper.run()  # returns at once: nothing to do, ever
        kept = await store.read(counts)
        assert (kept["runs"], kept["steps"], kept["events"], kept["event_runs"]) == (1, 2, 1, 1)

    with_store(db, body)


@pytest.mark.postgres
def test_one_postgres_node_sweeps_at_a_time() -> None:
    import psycopg

    async def body(store: Store) -> None:
        await store.atomic(
            lambda tx: seed(tx, "R", "E", T0, status=RunStatus.COMPLETED, ended_at=T0)
        )
        sweeper = Sweeper(store, ManualClock(start=T0 + 2 * DAY), DAY)
        with psycopg.connect(db, autocommit=True) as other:  # another node, mid-sweep
            other.execute("BEGIN")
            other.execute(_retention._PG_LOCK.replace("?", "%s"), ("retention",))
            assert await sweeper.sweep() == {}
            other.execute("COMMIT")
        assert (await sweeper.sweep())["runs"] == 1

    with postgres_schema() as db:  # SQLite has one writer: no lock to take
        with_store(db, body)


def test_retention_setting() -> None:
    assert EngineSettings().retention == 7 * DAY
    assert resolve(environ={}).retention == 7 * DAY
    assert resolve(environ={"STEPLINE_RETENTION": "2s"}).retention == 2.0
    assert resolve(environ={"STEPLINE_RETENTION": "12h"}).retention == 12 * 3600
    for off in ("0", "off", "OFF"):
        assert resolve(environ={"STEPLINE_RETENTION": off}).retention == 0.0
    with pytest.raises(EngineConfigError, match=r"STEPLINE_RETENTION.*0/off"):
        resolve(environ={"STEPLINE_RETENTION": "a week"})
    with pytest.raises(EngineConfigError, match="retention"):
        resolve(environ={}, retention=-1.0)
    assert resolve(environ={}, retention=5.0).retention == 5.0
    assert (interval_for(2.0), interval_for(7 * DAY)) == (1.0, 3600.0)


def test_engine_sweeps_a_finished_run_and_keeps_a_sleeping_one(db: str) -> None:
    client = dev_client()

    @client.function(id="quick", trigger=stepline.TriggerEvent(event="t/quick"))
    async def quick(ctx: stepline.Context) -> str:
        return await ctx.step.run("one", lambda: "done")

    @client.function(id="sleepy", trigger=stepline.TriggerEvent(event="t/sleepy"))
    async def sleepy(ctx: stepline.Context) -> str:
        await ctx.step.sleep("nap", dt.timedelta(days=30))
        return "rested"

    async def scenario() -> None:
        clock = ManualClock()
        apps = [(client, [quick, sleepy])]
        async with running(db, clock=clock, apps=apps, retention=DAY) as engine:
            [quick_event] = await engine.send({"name": "t/quick"})
            quick_run = await only_run(engine, "t-quick")
            assert (await finished(engine, quick_run, clock)).status is RunStatus.COMPLETED
            [sleepy_event] = await engine.send({"name": "t/sleepy"})
            sleepy_run = await only_run(engine, "t-sleepy")

            async def asleep() -> bool:  # its first call has recorded the sleep
                return len(await engine.run_steps(sleepy_run)) == 1

            await await_until(asleep, timeout=20)
            clock.advance(2 * DAY)  # the sleep has 28 days to go; the engine's sweeper wakes

            async def swept() -> bool:
                return not await engine.list_runs(RunFilter(function_id="t-quick"))

            await await_until(swept, timeout=20)
            await Sweeper.of(engine).sweep()  # and another pass changes nothing live
            with pytest.raises(NotFoundError):
                await engine.get_event(quick_event)
            assert (await engine.get_run(sleepy_run)).status is RunStatus.RUNNING
            assert (await engine.get_event(sleepy_event)).internal_id == sleepy_event
            assert len(await engine.run_steps(sleepy_run)) == 1
            assert 'stepline_retention_removed_total{table="runs"}' in await engine.metrics()

    arun(scenario())


def test_removed_rows_are_counted_per_table() -> None:
    metrics = EngineMetrics()
    metrics.record_removed({"runs": 3, "events": 2})
    metrics.record_removed({"runs": 1})
    assert metrics.retention_removed.value("runs") == 4
    assert metrics.retention_removed.value("events") == 2
    assert 'stepline_retention_removed_total{table="runs"} 4' in metrics.render()


def test_test_env_keeps_runs_however_far_time_jumps() -> None:
    from stepline.testing import TestEnv

    client = dev_client()

    @client.function(id="echo", trigger=stepline.TriggerEvent(event="t/echo"))
    async def echo(ctx: stepline.Context) -> Any:
        return ctx.event.data["value"]

    with TestEnv(client, [echo]) as env:
        run = env.start_sync(echo, {"value": 1})
        assert run.result_sync() == 1
        env.advance_sync(dt.timedelta(days=30))  # far past the engine's default retention
        assert env.runs_sync(echo) == [run]
        assert run.result_sync() == 1
