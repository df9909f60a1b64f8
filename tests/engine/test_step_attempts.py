"""Every attempt of a step (the run page's depth), on both stores.

Real functions on an engine with a manual clock and the Go backoff table (no jitter): a
step that fails twice then succeeds shows three attempts, the failed ones with their
errors and the time each was retried, the last read from the step row. A step that
succeeds at once writes no attempt row; a step that runs out of retries ends with a
failed attempt that is not retried; a function failing outside any step keeps its
attempts under ``"step"``. The REST route answers the same, retention removes the rows
with their run, and ``GET /v1/runs?parent_run_id=`` lists an invoked child with the
parent step that invoked it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx

import stepline
from stepline.engine import Engine, ManualClock
from stepline.engine._http.api import build_app
from stepline.engine._model import RunStatus
from stepline.engine._store import Store, Tx
from stepline.engine._store.attempts import StepAttempt
from stepline.engine._store.sweeper import Sweeper
from tests._support.aio import arun
from tests._support.clients import dev_client
from tests._support.engines import finished, only_run, running

from .test_retention import DAY, T0, seed
from .test_store_contract import with_store

#: the first two delays of the Go executor's backoff table (``_backoff.INNGEST_TABLE``)
FIRST_RETRY, SECOND_RETRY = 15.0, 30.0
START = 1_800_000_000.0  # 2027: events' times must be plausible


def flaky_app(client: stepline.Client) -> list[stepline.Function]:
    @client.function(id="flaky", trigger=stepline.TriggerEvent(event="t/flaky"), retries=3)
    def flaky(ctx: stepline.SyncContext) -> str:
        ctx.step.run("steady", lambda: "fine")

        def shaky() -> str:
            if ctx.attempt < 2:
                raise RuntimeError(f"boom {ctx.attempt + 1}")
            return "finally"

        return str(ctx.step.run("shaky", shaky))

    @client.function(id="doomed", trigger=stepline.TriggerEvent(event="t/doomed"), retries=1)
    def doomed(ctx: stepline.SyncContext) -> None:
        def never() -> None:
            raise ValueError("still broken")

        ctx.step.run("never", never)

    @client.function(id="outside", trigger=stepline.TriggerEvent(event="t/outside"), retries=2)
    def outside(ctx: stepline.SyncContext) -> int:
        if ctx.attempt == 0:
            raise RuntimeError("outside any step")
        return ctx.attempt

    return [flaky, doomed, outside]


async def api(engine: Engine, path: str, **params: Any) -> Any:
    transport = httpx.ASGITransport(app=build_app(engine))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        answer = await http.get(path, params=params)
        assert answer.status_code == 200, answer.text
        return answer.json()


def test_a_step_failing_twice_then_succeeding_shows_three_attempts(db: str) -> None:
    client = dev_client()
    clock = ManualClock(start=START)

    async def scenario() -> None:
        options = {"retry_scale": 1.0, "retry_jitter": 0.0}
        async with running(db, clock=clock, apps=[(client, flaky_app(client))], **options) as e:
            await e.send({"name": "t/flaky"})
            run = await finished(e, await only_run(e, "t-flaky"), clock)
            assert run.status is RunStatus.COMPLETED
            assert run.output == '"finally"'
            steps = {s.name: s for s in await e.run_steps(run.run_id)}
            shaky = steps["shaky"]

            # two rows written, for the failed attempts only: none for "steady"
            recorded = await e.store.read(lambda tx: tx.attempts.get_attempts(run.run_id))
            assert [(a.step_id, a.attempt) for a in recorded] == [
                (shaky.step_id, 1),
                (shaky.step_id, 2),
            ]

            first, second, third = await e.run_attempts(run.run_id)
            assert [a.attempt for a in (first, second, third)] == [1, 2, 3]
            assert {a.step_id for a in (first, second, third)} == {shaky.step_id}
            assert first.error is not None
            assert first.error["message"] == "boom 1"
            assert second.error is not None
            assert second.error["message"] == "boom 2"
            assert third.error is None, "the last attempt succeeded"
            assert first.ended_at is not None
            assert second.ended_at is not None
            assert first.started_at is not None
            assert first.started_at <= first.ended_at
            assert first.retry_at == first.ended_at + FIRST_RETRY
            assert second.retry_at == second.ended_at + SECOND_RETRY
            assert second.started_at is not None
            assert second.started_at >= first.retry_at
            assert third.retry_at is None
            assert third.started_at == second.retry_at
            assert third.ended_at == shaky.ended_at
            assert shaky.attempts == 3

            body = await api(e, f"/v1/runs/{run.run_id}/attempts")
            shown = body["data"]
            assert [(a["attempt"], a["status"]) for a in shown] == [
                (1, "Failed"),
                (2, "Failed"),
                (3, "Completed"),
            ]
            assert shown[0]["error"]["message"] == "boom 1"
            assert shown[0]["retry_at"] is not None
            assert shown[2]["retry_at"] is None
            assert shown[1]["duration_ms"] is not None
            assert shown[2]["started_at"] == shown[1]["retry_at"]

    arun(scenario())


def test_out_of_retries_and_failures_outside_steps(db: str) -> None:
    client = dev_client()
    clock = ManualClock(start=START)

    async def scenario() -> None:
        async with running(db, clock=clock, apps=[(client, flaky_app(client))]) as engine:
            await engine.send([{"name": "t/doomed"}, {"name": "t/outside"}])
            doomed = await finished(engine, await only_run(engine, "t-doomed"), clock)
            assert doomed.status is RunStatus.FAILED
            [never] = await engine.run_steps(doomed.run_id)
            everything = await engine.run_attempts(doomed.run_id)
            attempts = [a for a in everything if a.step_id == never.step_id]
            assert [(a.attempt, a.error is not None) for a in attempts] == [(1, True), (2, True)]
            assert attempts[0].retry_at is not None, "the first was retried"
            assert attempts[1].retry_at is None, "the last was not"
            assert attempts[1].error is not None
            assert attempts[1].error["message"] == "still broken"
            # the step's error then failed the function's call (not retried): kept too
            [call] = [a for a in everything if a.step_id == "step"]
            assert (call.attempt, call.retry_at) == (1, None)
            assert call.error is not None
            assert call.error["message"] == "still broken"

            outside = await finished(engine, await only_run(engine, "t-outside"), clock)
            assert outside.status is RunStatus.COMPLETED
            [call] = await engine.run_attempts(outside.run_id)
            assert (call.step_id, call.attempt, call.retry_at is not None) == ("step", 1, True)
            assert call.error is not None
            assert call.error["message"] == "outside any step"

    arun(scenario())


def test_retention_removes_attempts_with_their_run(db: str) -> None:
    async def body(store: Store) -> None:
        def write(tx: Tx) -> None:
            seed(tx, "OLD", "E-OLD", T0, status=RunStatus.FAILED, ended_at=T0 + 10)
            seed(tx, "LIVE", "E-LIVE", T0, status=RunStatus.RUNNING, started_at=T0)
            for run_id in ("OLD", "LIVE"):
                for n in (1, 2):
                    tx.attempts.put_attempt(
                        StepAttempt(run_id, "a", n, T0, T0 + n, {"message": "x"})
                    )

        await store.atomic(write)
        removed = await Sweeper(store, ManualClock(start=T0 + 8 * DAY), 7 * DAY).sweep()
        assert removed["step_attempts"] == 2
        assert removed["runs"] == 1
        assert await store.read(lambda tx: tx.attempts.get_attempts("OLD")) == []
        kept = await store.read(lambda tx: tx.attempts.get_attempts("LIVE"))
        assert [(a.attempt, a.error) for a in kept] == [(n, {"message": "x"}) for n in (1, 2)]

    with_store(db, body)


def test_children_are_listed_by_parent_with_the_step_that_invoked_them(db: str) -> None:
    client = dev_client()

    @client.function(id="child", trigger=stepline.TriggerEvent(event="t/child"))
    def child(ctx: stepline.SyncContext) -> int:
        return int(ctx.event.data["n"]) * 2

    @client.function(id="parent", trigger=stepline.TriggerEvent(event="t/parent"))
    def parent(ctx: stepline.SyncContext) -> int:
        got = ctx.step.invoke("double", function=child, data={"n": 21}, timeout=dt.timedelta(1))
        return int(got)

    async def scenario() -> None:
        async with running(db, apps=[(client, [child, parent])]) as engine:
            await engine.send([{"name": "t/parent"}, {"name": "t/child", "data": {"n": 1}}])
            run = await finished(engine, await only_run(engine, "t-parent"))
            assert run.output == "42"
            [double] = await engine.run_steps(run.run_id)
            body = await api(engine, "/v1/runs", parent_run_id=run.run_id)
            [kid] = body["data"]
            assert kid["function_id"] == "t-child"
            assert kid["parent_run_id"] == run.run_id
            assert kid["parent_step_id"] == double.step_id
            everything = (await api(engine, "/v1/runs"))["data"]
            assert len(everything) == 3, "the filter left out the parent and the other child"

    arun(scenario())
