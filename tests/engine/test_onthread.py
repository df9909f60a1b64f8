"""A sync function served in-process: a run's calls go on on the SDK's thread
(``_worker.onthread``), bounded, fair to other runs, and seen by metrics, on both stores.

Rather than each call of a step-by-step run hopping from the engine's loop to the SDK's
pool and back, the pool thread records the answer and makes the run's next call itself.
The tests pin what that must not change: a call over ``Timeouts(call=)`` is abandoned and
retried (its late answer dropped), a long run hands the pool back to others, a stop
mid-run writes nothing afterwards, and every call is counted.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from typing import Any

import pytest

import stepline
from stepline._comm.pool import SdkPool
from stepline.engine import Engine, RunStatus
from stepline.engine._driver import InProcessDriver
from tests._support.aio import arun
from tests._support.clients import dev_client
from tests._support.engines import finished, only_run, running

STEPS = 10


def _counted_hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The calls made through ``InProcessDriver.request`` (a hop from the loop each)."""
    hops: list[str] = []
    request = InProcessDriver.request

    async def counted(self: InProcessDriver, *args: Any, **kwargs: Any) -> Any:
        hops.append(args[1])
        return await request(self, *args, **kwargs)

    monkeypatch.setattr(InProcessDriver, "request", counted)
    return hops


def test_a_run_s_calls_go_on_on_the_sdk_thread(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    hops = _counted_hops(monkeypatch)
    client = dev_client(checkpointing=False)
    threads: set[str] = set()

    @client.function(id="ten", trigger=stepline.TriggerEvent(event="t/ten"), retries=0)
    def ten(ctx: stepline.SyncContext) -> object:
        threads.add(threading.current_thread().name)
        for i in range(STEPS):
            ctx.step.run(f"s{i}", lambda i=i: {"i": i})
        return ctx.event.data["k"]

    async def scenario() -> None:
        async with running(db, apps=[(client, [ten])], checkpointing=False) as engine:
            await engine.send({"name": "t/ten", "data": {"k": 7}})
            run_id = await only_run(engine, "t-ten")
            run = await finished(engine, run_id)
            assert run.status is RunStatus.COMPLETED
            assert json.loads(run.output or "") == 7
            steps = await engine.run_steps(run_id)
            assert [s.memo for s in steps] == [{"data": {"i": i}} for i in range(STEPS)]
            metrics = engine.observer.metrics if engine.observer else None
            assert metrics is not None
            calls = metrics.sdk_calls.value("t-ten", "steps") + metrics.sdk_calls.value(
                "t-ten", "completed"
            )
            assert calls == STEPS, "every call on the thread is counted"

    arun(scenario())
    # one call a step (the last answers with the result too, ``run_on``); none of them
    # went through the loop's driver
    assert hops == [], hops
    assert all(name.startswith("stepline") for name in threads), threads


@pytest.mark.slow
def test_a_call_over_its_timeout_is_abandoned_and_its_late_answer_dropped(db: str) -> None:
    client = dev_client(checkpointing=False)
    late = threading.Event()

    @client.function(
        id="hang",
        trigger=stepline.TriggerEvent(event="t/hang"),
        retries=1,
        timeouts=stepline.Timeouts(call="1s"),
    )
    def hang(ctx: stepline.SyncContext) -> object:
        ctx.step.run("first", lambda: 1)
        if ctx.attempt == 0:  # this call (the run's second) outlasts Timeouts(call=)
            time.sleep(1.6)
            late.set()
        return ctx.step.run("second", lambda: ctx.attempt)

    async def scenario() -> None:
        async with running(db, apps=[(client, [hang])], checkpointing=False) as engine:
            await engine.send({"name": "t/hang"})
            run_id = await only_run(engine, "t-hang")
            run = await finished(engine, run_id)
            assert run.status is RunStatus.COMPLETED, run
            assert json.loads(run.output or "") == 1  # the retry's answer, not the late one
            await asyncio.to_thread(late.wait, 5)
            await asyncio.sleep(0.3)  # the late answer had its chance to be recorded
            steps = {s.name: s for s in await engine.run_steps(run_id)}
            assert steps["second"].memo == {"data": 1}
            attempts = await engine.run_attempts(run_id)
            assert any("ReadTimeout" in str(a.error) for a in attempts), attempts

    arun(scenario())


@pytest.mark.slow
def test_a_long_run_hands_the_pool_to_other_runs(db: str) -> None:
    client = dev_client(checkpointing=False, thread_pool_max_workers=1)
    ended: list[str] = []

    @client.function(id="long", trigger=stepline.TriggerEvent(event="t/long"), retries=0)
    def long(ctx: stepline.SyncContext) -> object:
        for i in range(150):
            ctx.step.run(f"s{i}", lambda: time.sleep(0.002))
        ended.append("long")
        return None

    @client.function(id="short", trigger=stepline.TriggerEvent(event="t/short"), retries=0)
    def short(ctx: stepline.SyncContext) -> object:
        ctx.step.run("only", lambda: None)
        ended.append("short")
        return None

    async def scenario() -> None:
        async with running(db, apps=[(client, [long, short])], checkpointing=False) as engine:
            await engine.send({"name": "t/long"})
            long_id = await only_run(engine, "t-long")
            await _until_steps(engine, long_id, 5)
            await engine.send({"name": "t/short"})
            short_id = await only_run(engine, "t-short")
            assert (await finished(engine, short_id)).status is RunStatus.COMPLETED
            assert (await engine.get_run(long_id)).status is RunStatus.RUNNING
            assert (await finished(engine, long_id)).status is RunStatus.COMPLETED

    arun(scenario())
    assert ended == ["short", "long"]


def test_runs_outnumbering_the_pool_take_turns_without_the_loop(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stepline.engine._worker import onthread

    turns: list[str] = []
    start = onthread._Calls.start  # where every turn begins (from a task, or ``start_now``)

    def counted(calls: Any, job: Any, snapshot: Any) -> Any:
        turns.append(job.run_id)
        return start(calls, job, snapshot)

    monkeypatch.setattr(onthread._Calls, "start", counted)
    # a slow machine (CI under load) must not end a turn on its slice: the point here is
    # that queueing behind another run's call does not
    monkeypatch.setattr(onthread, "SLICE", 60.0)
    client = dev_client(checkpointing=False, thread_pool_max_workers=1)
    order: list[str] = []
    pools: list[SdkPool] = []

    def step(who: str) -> None:
        # The first step to run waits (bounded) for the other run's first call to queue
        # behind it: on a loaded machine the loop may dispatch it only after a whole run.
        deadline = time.monotonic() + 10
        while not order and not pools[0].waiting and time.monotonic() < deadline:
            time.sleep(0.001)
        order.append(who)

    @client.function(id="pair", trigger=stepline.TriggerEvent(event="t/pair"), retries=0)
    def pair(ctx: stepline.SyncContext) -> object:
        who = str(ctx.event.data["who"])
        for i in range(STEPS):
            ctx.step.run(f"s{i}", step, who)
        return who

    async def scenario() -> None:
        async with running(db, apps=[(client, [pair])], checkpointing=False) as engine:
            spec = engine.registry.get("t-pair")
            assert spec is not None
            pool = engine.worker.caller.pool(spec)
            assert pool is not None
            pools.append(pool)
            await engine.send([{"name": "t/pair", "data": {"who": w}} for w in "ab"])
            deadline = time.monotonic() + 10
            while len(ids := [r.run_id for r in await engine.list_runs()]) < 2:
                assert time.monotonic() < deadline, "the runs did not start"
                await asyncio.sleep(0.005)
            for run_id in ids:
                assert (await finished(engine, run_id)).status is RunStatus.COMPLETED

    arun(scenario())
    # one thread, two runs: once both go, their steps alternate (each run's next call
    # queues behind the other's), and each run's calls are one turn, with no trip
    # through the loop
    assert sorted(order) == ["a"] * STEPS + ["b"] * STEPS
    first = next((i for i in range(1, len(order)) if order[i] != order[i - 1]), len(order))
    assert first < STEPS, f"one run took every step first: {order}"
    rest = order[first - 1 :]
    both = rest[: min(max(i for i, w in enumerate(rest) if w == who) for who in "ab") + 1]
    assert all(x != y for x, y in itertools.pairwise(both)), order
    assert len(turns) == 2, f"{len(turns)} turns: the loop took back a run between steps"


@pytest.mark.slow
def test_a_stop_mid_run_writes_nothing_after_it(db: str) -> None:
    client = dev_client(checkpointing=False)
    entered, release = threading.Event(), threading.Event()

    @client.function(id="held", trigger=stepline.TriggerEvent(event="t/held"), retries=0)
    def held(ctx: stepline.SyncContext) -> object:
        ctx.step.run("first", lambda: 1)
        return ctx.step.run("second", lambda: (entered.set(), release.wait(10), 2)[-1])

    async def scenario() -> None:
        async with running(db, apps=[(client, [held])], checkpointing=False) as engine:
            await engine.send({"name": "t/held"})
            run_id = await only_run(engine, "t-held")
            assert await asyncio.to_thread(entered.wait, 10)
            await engine.worker.stop(grace=0.0)  # past its grace: the call is abandoned
            release.set()
            await asyncio.sleep(0.5)  # the abandoned call answers meanwhile
            steps = await engine.run_steps(run_id)
            assert [s.name for s in steps] == ["first"], "nothing recorded after the stop"
            assert (await engine.get_run(run_id)).status is RunStatus.RUNNING

    arun(scenario())


async def _until_steps(engine: Engine, run_id: str, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(await engine.run_steps(run_id)) < count:
        assert time.monotonic() < deadline, "the run made no progress"
        await asyncio.sleep(0.005)


def test_the_sdk_pool_counts_the_calls_waiting_for_a_thread() -> None:
    from stepline._comm.pool import SdkPool

    pool = SdkPool(1, thread_name_prefix="t")
    busy, release = threading.Event(), threading.Event()
    try:
        first = pool.submit(lambda: busy.set() or release.wait(5))
        assert busy.wait(5)
        assert pool.waiting == 0  # the first call runs: nothing waits
        second = pool.submit(lambda: 2)
        assert pool.waiting == 1  # a run's turn on a thread hands back now
        release.set()
        assert first.result(5) is True
        assert second.result(5) == 2
        assert pool.waiting == 0
    finally:
        release.set()
        pool.shutdown(wait=True)


def test_a_run_started_here_is_on_the_sdk_thread_before_its_task_runs(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run this engine starts (its first call leased with the start) goes to the SDK's
    pool from the loop callback that dispatches it (``onthread.start_now``), not a loop
    turn later from its task; the call still runs with the job's log fields bound."""
    from stepline import _logs
    from stepline.engine._worker import onthread

    started: list[bool] = []
    start_now = onthread.start_now

    def noted(*args: Any) -> Any:
        got = start_now(*args)
        started.append(got is not None)
        return got

    monkeypatch.setattr(onthread, "start_now", noted)
    client = dev_client(checkpointing=False)
    fields: list[Any] = []

    @client.function(id="two", trigger=stepline.TriggerEvent(event="t/two"), retries=0)
    def two(ctx: stepline.SyncContext) -> object:
        fields.append(_logs.current().get("run_id"))
        ctx.step.run("a", lambda: 1)
        ctx.step.run("b", lambda: 2)
        return "ok"

    async def scenario() -> None:
        async with running(db, apps=[(client, [two])], checkpointing=False) as engine:
            run_id, _ = await engine.start_function("t-two", {})
            assert (await finished(engine, run_id)).status is RunStatus.COMPLETED
            assert fields
            assert set(fields) == {run_id}

    arun(scenario())
    assert started, "no run was dispatched"
    assert started[0], "the first call did not start from the dispatch"
