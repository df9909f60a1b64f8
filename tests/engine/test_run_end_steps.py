"""A run that ends ends its steps.

When a run is cancelled, fails or times out while some of its steps sleep, wait for an
event or wait on an invoked run, those steps become ``Cancelled`` (ended at the run's
end) in the transaction that ends the run: the REST API, the dashboard, ``stepline runs
show`` and the web kit's SSE stream never show an ended run with a step "Sleeping".
Runs on both stores.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pytest

import stepline
from stepline.engine import ManualClock, RunStatus, StepStatus
from stepline.engine._model import StepRecord
from tests._support.aio import arun
from tests._support.clients import dev_client
from tests._support.engines import advance, finished, only_run, quiet, running


def steps_by_name(steps: Sequence[StepRecord]) -> dict[str, tuple[str, bool]]:
    return {str(s.name): (s.status.value, s.ended_at is not None) for s in steps}


def test_cancelled_run_ends_its_sleeping_and_waiting_steps(db: str) -> None:
    client = dev_client()

    @client.function(id="both", trigger=stepline.TriggerEvent(event="t/both"))
    async def both(ctx: stepline.Context) -> object:
        await ctx.step.run("first", lambda: 1)
        return await ctx.step.parallel(
            [
                lambda: ctx.step.sleep("nap", dt.timedelta(days=1)),
                lambda: ctx.step.wait_for_event("hear", event="t/go", timeout="1d"),
            ]
        )

    async def scenario() -> None:
        clock = ManualClock()
        async with running(db, clock=clock, apps=[(client, [both])]) as engine:
            await engine.send({"name": "t/both"})
            run_id = await only_run(engine, "t-both")
            await advance(engine, clock, 1)
            asleep = steps_by_name(await engine.run_steps(run_id))
            assert asleep == {
                "first": ("Completed", True),
                "nap": ("Sleeping", False),
                "hear": ("Waiting", False),
            }
            assert await engine.cancel(run_id)
            run = await engine.get_run(run_id)
            assert run.status is RunStatus.CANCELLED
            steps = await engine.run_steps(run_id)
            assert steps_by_name(steps) == {
                "first": ("Completed", True),
                "nap": ("Cancelled", True),
                "hear": ("Cancelled", True),
            }
            assert all(s.ended_at == run.ended_at for s in steps if s.name != "first")
            # the sleep's wake-up changes nothing afterwards
            await advance(engine, clock, 2 * 86_400)
            assert steps_by_name(await engine.run_steps(run_id))["nap"] == ("Cancelled", True)

    arun(scenario())


def test_timed_out_run_ends_its_waiting_step(db: str) -> None:
    client = dev_client()

    @client.function(
        id="slow",
        trigger=stepline.TriggerEvent(event="t/slow"),
        timeouts=stepline.Timeouts(finish="1h"),
    )
    async def slow(ctx: stepline.Context) -> object:
        return await ctx.step.wait_for_event("hear", event="t/never", timeout="7d")

    async def scenario() -> None:
        clock = ManualClock()
        async with running(db, clock=clock, apps=[(client, [slow])]) as engine:
            await engine.send({"name": "t/slow"})
            run_id = await only_run(engine, "t-slow")
            run = await finished(engine, run_id, clock)
            assert run.status is RunStatus.CANCELLED
            assert run.cancel_reason == "finish timeout exceeded"
            [step] = await engine.run_steps(run_id)
            assert (step.status, step.ended_at) == (StepStatus.CANCELLED, run.ended_at)

    arun(scenario())


def test_failed_run_ends_its_sleeping_step(db: str) -> None:
    client = dev_client()

    def boom() -> None:
        raise RuntimeError("boom")

    @client.function(id="fails", trigger=stepline.TriggerEvent(event="t/fails"), retries=0)
    async def fails(ctx: stepline.Context) -> object:
        return await ctx.step.parallel(
            [
                lambda: ctx.step.sleep("nap", dt.timedelta(days=1)),
                lambda: ctx.step.run("boom", boom),
            ],
            mode="race",
        )

    async def scenario() -> None:
        clock = ManualClock()
        async with running(db, clock=clock, apps=[(client, [fails])]) as engine:
            await engine.send({"name": "t/fails"})
            run_id = await only_run(engine, "t-fails")
            await quiet(engine)
            await advance(engine, clock, 60)
            run = await engine.get_run(run_id)
            assert run.status is RunStatus.FAILED, run
            by_name = steps_by_name(await engine.run_steps(run_id))
            assert by_name["nap"] == ("Cancelled", True)
            assert by_name["boom"] == ("Failed", True)

    arun(scenario())


@pytest.mark.parametrize("shape", ["sequential", "parallel"])
def test_a_step_that_raises_non_retriable_error_shows_failed_not_cancelled(
    db: str, shape: str
) -> None:
    client = dev_client()

    def refuse() -> None:
        raise stepline.NonRetriableError("card declined")

    @client.function(id="charge", trigger=stepline.TriggerEvent(event="t/charge"), retries=3)
    async def charge(ctx: stepline.Context) -> object:
        await ctx.step.run("first", lambda: 1)
        if shape == "parallel":  # "pay" is called on its own, targeted
            return await ctx.step.parallel([lambda: ctx.step.run("pay", refuse)] * 1)
        return await ctx.step.run("pay", refuse)

    async def scenario() -> None:
        async with running(db, apps=[(client, [charge])]) as engine:
            await engine.send({"name": "t/charge"})
            run_id = await only_run(engine, "t-charge")
            run = await finished(engine, run_id)
            assert run.status is RunStatus.FAILED
            steps = {str(s.name): s for s in await engine.run_steps(run_id)}
            assert steps["pay"].status is StepStatus.FAILED
            assert steps["pay"].ended_at is not None
            assert "card declined" in str(steps["pay"].error)
            assert steps["first"].status is StepStatus.COMPLETED

    arun(scenario())
