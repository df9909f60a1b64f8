"""Property test: random event streams through concurrency + throttle, per key.

Each example runs one engine on a manual clock, on a fresh database: a SQLite file or a
Postgres schema (the test runs once per store). Events without a gap are sent while
earlier runs are still busy (that is where concurrency limits bite). Virtual time moves
only when the engine is quiet (every run finished or held back by its throttle until
later), and never past a due job, so a run starts exactly when the engine lets it: what
is checked is the engine's scheduling, not how fast this machine is.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

import stepline
from stepline.engine import Engine, ManualClock, RunStatus
from stepline.engine._model import Run
from stepline.engine._store import RunFilter
from tests._support.aio import arun
from tests._support.clients import dev_client
from tests._support.databases import STORES, database, postgres_schema
from tests._support.engines import running

pytestmark = [pytest.mark.slow]

KEYS = "abc"
KEY_CHOICES = "aaabbc"  # mostly one hot key, so its throttle and concurrency limit bite
GAPS = (0.0, 0.0, 0.0, 0.0, 0.5, 1.0, 2.5, 7.0, 20.0)  # seconds of virtual time between events
EPSILON = 1e-4  # seconds; float drift of throttle slots near epoch times is ~1e-7 per step
QUIET_TIMEOUT = 5.0  # real seconds the engine may take to finish what is due now


@dataclasses.dataclass(frozen=True)
class Scenario:
    events: list[tuple[float, str]]  # (gap before the event, key)
    steps: int  # steps per run
    concurrency: int
    limit: int
    period: int
    burst: int | None  # None: left to the engine's default (0 extra)

    @property
    def capacity(self) -> int:
        return self.limit + (self.burst or 0)


scenarios = st.builds(
    Scenario,
    events=st.lists(
        st.tuples(st.sampled_from(GAPS), st.sampled_from(KEY_CHOICES)), min_size=2, max_size=14
    ),
    steps=st.integers(1, 2),
    concurrency=st.integers(1, 3),
    limit=st.integers(1, 3),
    period=st.integers(1, 20),
    burst=st.none() | st.integers(1, 2),
)


class Gauge:
    """Counts steps executing at once per key, and remembers the peak."""

    def __init__(self) -> None:
        self.active: collections.Counter[str] = collections.Counter()
        self.peak: collections.Counter[str] = collections.Counter()
        self.steps = 0

    async def hold(self, key: str) -> None:
        self.active[key] += 1
        self.peak[key] = max(self.peak[key], self.active[key])
        try:
            await asyncio.sleep(0.005)
        finally:
            self.active[key] -= 1
        self.steps += 1


async def all_runs(engine: Engine) -> list[Run]:
    return await engine.list_runs(RunFilter(function_id="t-flow", limit=1000))


async def quiet(engine: Engine, clock: ManualClock) -> bool:
    """Nothing left to do at the current virtual time: every run is done or throttled."""
    now = clock.now()
    for run in await all_runs(engine):
        if run.status is RunStatus.COMPLETED:
            continue
        waiting = run.waiting or {}
        throttled = run.status is RunStatus.QUEUED and waiting.get("reason") == "throttled"
        if not (throttled and float(waiting["until"]) > now):
            return False
    nxt = await engine.store.read(lambda tx: tx.queue.next_job_at())
    return nxt is None or nxt > now


async def calm(engine: Engine, clock: ManualClock) -> None:
    async def poll() -> None:
        while not await quiet(engine, clock):
            await asyncio.sleep(0.003)

    try:
        await asyncio.wait_for(poll(), QUIET_TIMEOUT)
    except TimeoutError:
        runs = [(r.status, r.waiting, r.events[0]["data"]) for r in await all_runs(engine)]
        raise AssertionError(f"engine stuck at t={clock.now()}: {runs}") from None


async def advance_to(engine: Engine, clock: ManualClock, target: float) -> None:
    """Move virtual time to ``target``, stopping at every due job on the way."""
    while True:
        await calm(engine, clock)
        nxt = await engine.store.read(lambda tx: tx.queue.next_job_at())
        if nxt is None or nxt >= target:
            clock.set(target)
            await calm(engine, clock)
            return
        clock.set(nxt)


async def drain(engine: Engine, clock: ManualClock) -> None:
    """Let every run finish, moving the clock from one due job to the next."""
    while True:
        await calm(engine, clock)
        nxt = await engine.store.read(lambda tx: tx.queue.next_job_at())
        if nxt is None:
            return
        clock.set(nxt)


async def play(scenario: Scenario, db: str) -> None:
    client = dev_client()
    gauge = Gauge()
    throttle = stepline.Throttle(
        limit=scenario.limit,
        period=dt.timedelta(seconds=scenario.period),
        key="event.data.k",
        **({} if scenario.burst is None else {"burst": scenario.burst}),
    )

    @client.function(
        id="flow",
        trigger=stepline.TriggerEvent(event="t/flow"),
        concurrency=stepline.Concurrency(limit=scenario.concurrency, key="event.data.k"),
        throttle=throttle,
    )
    async def flow(ctx: stepline.Context) -> int:
        key = str(ctx.event.data["k"])
        for n in range(scenario.steps):
            await ctx.step.run(f"s{n}", gauge.hold, key)
        return int(ctx.event.data["seq"])

    clock = ManualClock(start=1_700_000_000.0)
    async with running(db, clock=clock, apps=[(client, [flow])]) as engine:
        event_ids: list[str] = []
        for seq, (gap, key) in enumerate(scenario.events):
            if gap:  # events without a gap go in while earlier runs are still busy
                await advance_to(engine, clock, clock.now() + gap)
            sent = await engine.send({"name": "t/flow", "data": {"k": key, "seq": seq}})
            event_ids.extend(sent)
        await drain(engine, clock)

        # no event lost: one run per event, each one completed with its own output
        runs = {r.run_id: r for r in await all_runs(engine)}
        assert len(runs) == len(scenario.events)
        run_of: list[Run] = []
        for seq, event_id in enumerate(event_ids):
            links = await engine.event_runs(event_id)
            assert len(links) == 1, links
            (link,) = links
            assert link.reason is None, link
            assert link.run_id in runs, link
            run = runs[link.run_id]
            assert run.status is RunStatus.COMPLETED, run
            assert run.output == str(seq)
            assert run.events[0]["data"]["seq"] == seq
            run_of.append(run)
        assert len({r.run_id for r in run_of}) == len(run_of)
        assert gauge.steps == scenario.steps * len(scenario.events)

    # concurrency: never more than the limit of one key's steps at once
    assert all(peak <= scenario.concurrency for peak in gauge.peak.values()), gauge.peak
    event(f"concurrency limit reached: {max(gauge.peak.values()) == scenario.concurrency}")
    delayed = sum(1 for r in run_of if r.started_at is not None and r.started_at > r.created_at)
    event(f"runs delayed by the throttle: {'some' if delayed else 'none'}")

    interval = scenario.period / scenario.limit
    capacity = scenario.capacity
    for key in KEYS:
        starts = [
            r.started_at for (_, k), r in zip(scenario.events, run_of, strict=True) if k == key
        ]
        assert all(s is not None for s in starts)
        times = [float(s) for s in starts if s is not None]
        # FIFO per key: in event order, starts never go back in time
        assert times == sorted(times), (key, times)
        # throttle (GCRA): any j - i + 1 consecutive starts span enough time
        for i in range(len(times)):
            for j in range(i + 1, len(times)):
                need = (j - i - capacity + 1) * interval
                assert times[j] - times[i] >= need - EPSILON, (key, i, j, times, need)
        # ... and no run waits longer than that: it starts when sent or at the earliest
        # time the spacing allows (virtual time stops at every due job, so this is exact)
        sent_at = [
            r.created_at for (_, k), r in zip(scenario.events, run_of, strict=True) if k == key
        ]
        earliest: list[float] = []
        for j, at in enumerate(sent_at):
            bounds = [earliest[i] + (j - i - capacity + 1) * interval for i in range(j)]
            earliest.append(max([at, *bounds]))
        assert all(abs(a - b) <= EPSILON for a, b in zip(times, earliest, strict=True)), (
            key,
            times,
            earliest,
        )


#: Examples per store: each Postgres example also creates (and drops) its own schema.
EXAMPLES = {"sqlite": 60, "postgres": 30}


# 23 s on Postgres on a quiet machine (30 engines, each opened, driven and closed), over
# the suite's 60 s on a loaded one
@pytest.mark.timeout(180)
@pytest.mark.parametrize("store", STORES)
def test_random_streams_respect_concurrency_and_throttle(store: str) -> None:
    if store == "postgres":
        with postgres_schema():  # skip (or fail, under CI) once, not in every example
            pass

    @settings(
        max_examples=EXAMPLES[store],
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        database=None,
    )
    @given(scenario=scenarios)
    # the whole capacity at once, where float rounding of period / limit puts the last slot
    # a fraction of a microsecond after "now" (the run is briefly marked throttled)
    @example(Scenario([(0.0, "a")] * 3, steps=1, concurrency=1, limit=3, period=14, burst=None))
    def check(scenario: Scenario) -> None:
        with tempfile.TemporaryDirectory() as tmp, database(store, Path(tmp)) as url:
            arun(play(scenario, url))

    check()
