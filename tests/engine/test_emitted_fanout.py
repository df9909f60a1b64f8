"""Events the engine emits are fanned out in the transaction that emits them.

A run's end stores ``inngest/function.finished`` (and ``failed`` / ``cancelled``) and
matches it against triggers, waits and cancel rules at once, as ``POST /e`` does for
the events it stores. Only an event emitted by that fan-out itself (a run it cancels
ends, and says so) is queued for a fan-out of its own, so one transaction's work stays
bounded however long a chain of reactions is.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

import stepline
from stepline.engine import RunStatus
from stepline.engine._model import Job, JobKind
from stepline.engine._store.queue import QueueSql
from tests._support.aio import arun
from tests._support.clients import dev_client
from tests._support.engines import finished, only_run, running
from tests._support.polling import await_until


@pytest.fixture
def queued_fanouts(monkeypatch: pytest.MonkeyPatch) -> list[Job]:
    """Every fan-out job enqueued, on any store."""
    queued: list[Job] = []
    original = QueueSql.enqueue

    def spy(self: QueueSql, job: Job) -> Any:
        if job.kind is JobKind.FANOUT:
            queued.append(job)
        return original(self, job)

    monkeypatch.setattr(QueueSql, "enqueue", spy)
    return queued


def test_a_run_s_end_is_fanned_out_in_its_own_transaction(
    db: str, queued_fanouts: list[Job]
) -> None:
    client = dev_client("fan")

    @client.function(id="work", trigger=stepline.TriggerEvent(event="fan/go"))
    def work(ctx: stepline.SyncContext) -> int:
        return ctx.step.run("one", lambda: 1) + ctx.step.run("two", lambda: 2)

    @client.function(
        id="after",
        trigger=stepline.TriggerEvent(
            event="inngest/function.finished", expression="event.data.function_id == 'fan-work'"
        ),
    )
    def after(ctx: stepline.SyncContext) -> Any:
        return ctx.event.data["result"]

    async def scenario() -> None:
        async with running(db, apps=[(client, [work, after])]) as engine:
            run_id, _ = await engine.start_function("fan-work", {})
            assert (await finished(engine, run_id)).status is RunStatus.COMPLETED
            reaction = await finished(engine, await only_run(engine, "fan-after"))
            assert reaction.status is RunStatus.COMPLETED
            assert reaction.output == "3"
            [trigger] = reaction.events
            assert trigger["name"] == "inngest/function.finished"
            assert trigger["data"]["run_id"] == run_id

    arun(scenario())
    assert queued_fanouts == [], "no fan-out job: the end and its fan-out are one commit"


def test_a_chain_of_cancellations_by_finished_runs_goes_to_its_end(
    db: str, queued_fanouts: list[Job]
) -> None:
    client = dev_client("chain")

    def waiter(fn_id: str, cancelled_by: str) -> stepline.Function:
        @client.function(
            id=fn_id,
            trigger=stepline.TriggerEvent(event=f"chain/{fn_id}"),
            cancel=[
                stepline.Cancel(
                    event="inngest/function.finished",
                    if_exp=f"async.data.function_id == 'chain-{cancelled_by}'",
                )
            ],
        )
        def fn(ctx: stepline.SyncContext) -> None:
            ctx.step.sleep("long", dt.timedelta(days=1))

        return fn

    first = waiter("first", cancelled_by="trigger")  # cancelled when "trigger" finishes
    second = waiter("second", cancelled_by="first")  # cancelled when "first" ends

    @client.function(id="trigger", trigger=stepline.TriggerEvent(event="chain/trigger"))
    def trigger(ctx: stepline.SyncContext) -> str:
        return "done"

    async def scenario() -> None:
        async with running(db, apps=[(client, [first, second, trigger])]) as engine:
            await engine.send([{"name": "chain/first"}, {"name": "chain/second"}])
            first_id = await only_run(engine, "chain-first")
            second_id = await only_run(engine, "chain-second")
            for run_id in (first_id, second_id):  # both asleep, waiting to be cancelled
                await _asleep(engine, run_id)
            run_id, _ = await engine.start_function("chain-trigger", {})
            assert (await finished(engine, run_id)).status is RunStatus.COMPLETED
            assert (await finished(engine, first_id)).status is RunStatus.CANCELLED
            assert (await finished(engine, second_id)).status is RunStatus.CANCELLED

    arun(scenario())
    # "trigger"'s end cancelled "first" in its own fan-out; the events of "first"'s end
    # were queued, and their fan-out (a transaction of its own) cancelled "second"
    assert queued_fanouts, "an event emitted inside a fan-out is queued"


async def _asleep(engine: Any, run_id: str) -> None:
    async def asleep() -> bool:
        return any(s.name == "long" for s in await engine.run_steps(run_id))

    await await_until(asleep, timeout=10.0, interval=0.025, message=f"run {run_id} to sleep")
