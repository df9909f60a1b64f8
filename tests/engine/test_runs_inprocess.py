"""The run transitions end to end: our SDK's functions served in-process, on a real SQLite
engine."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import stepline
from stepline.engine import ManualClock, RunStatus
from stepline.engine._store import RunFilter
from tests._support.aio import arun
from tests._support.clients import dev_client
from tests._support.engines import finished, only_run, running


def test_two_steps_complete_with_output_and_timeline(db: str) -> None:
    client = dev_client()
    calls: list[str] = []

    @client.function(id="two", trigger=stepline.TriggerEvent(event="t/two"))
    def two(ctx: stepline.SyncContext) -> dict[str, int]:
        a = ctx.step.run("a", lambda: calls.append("a") or ctx.event.data["n"] + 1)
        b = ctx.step.run("b", lambda: calls.append("b") or a * 2)
        return {"a": a, "b": b}

    async def scenario() -> None:
        async with running(db, apps=[(client, [two])]) as engine:
            [event_id] = await engine.send({"name": "t/two", "data": {"n": 1}})
            run_id = await only_run(engine, "t-two")
            run = await finished(engine, run_id)
            assert run.status is RunStatus.COMPLETED
            assert json.loads(run.output or "") == {"a": 2, "b": 4}
            steps = await engine.run_steps(run_id)
            assert [(s.name, s.status.value, s.memo) for s in steps] == [
                ("a", "Completed", {"data": 2}),
                ("b", "Completed", {"data": 4}),
            ]
            links = await engine.event_runs(event_id)
            assert [link.run_id for link in links] == [run_id]

    arun(scenario())
    assert calls == ["a", "b"], "each recorded step ran exactly once"


def test_sleep_waits_on_the_virtual_clock(db: str) -> None:
    client = dev_client()

    @client.function(id="sleepy", trigger=stepline.TriggerEvent(event="t/sleep"))
    async def sleepy(ctx: stepline.Context) -> str:
        await ctx.step.sleep("nap", dt.timedelta(days=7))
        return "rested"

    async def scenario() -> None:
        clock = ManualClock()
        start = clock.now()
        async with running(db, clock=clock, apps=[(client, [sleepy])]) as engine:
            await engine.send({"name": "t/sleep"})
            run_id = await only_run(engine, "t-sleepy")
            run = await finished(engine, run_id, clock)
            assert run.status is RunStatus.COMPLETED
            assert run.output == '"rested"'
            assert clock.now() - start >= 7 * 86_400
            [nap] = await engine.run_steps(run_id)
            assert nap.op == "Sleep"
            assert nap.memo is None
            assert nap.status.value == "Completed"

    arun(scenario())


def test_wait_for_event_matches_expression_and_times_out(db: str) -> None:
    client = dev_client()

    @client.function(id="waiter", trigger=stepline.TriggerEvent(event="t/order"))
    def waiter(ctx: stepline.SyncContext) -> Any:
        paid = ctx.step.wait_for_event(
            "paid",
            event="t/paid",
            timeout=dt.timedelta(hours=1),
            if_exp="event.data.order == async.data.order",
        )
        return None if paid is None else paid.data["amount"]

    async def scenario() -> None:
        clock = ManualClock()
        async with running(db, clock=clock, apps=[(client, [waiter])]) as engine:
            await engine.send([{"name": "t/order", "data": {"order": 1}}])
            await engine.send([{"name": "t/order", "data": {"order": 2}}])
            runs = []
            while len(runs) < 2:
                runs = await engine.list_runs(RunFilter(function_id="t-waiter"))
            by_order = {r.events[0]["data"]["order"]: r.run_id for r in runs}
            # wait until both runs are parked on their pause
            for rid in by_order.values():
                while not [s for s in await engine.run_steps(rid) if s.status.value == "Waiting"]:
                    clock.advance(0)
                    await __import__("asyncio").sleep(0.01)
            await engine.send({"name": "t/paid", "data": {"order": 1, "amount": 42}})
            first = await finished(engine, by_order[1])
            assert first.status is RunStatus.COMPLETED
            assert first.output == "42"
            second = await finished(engine, by_order[2], clock)
            assert second.status is RunStatus.COMPLETED
            assert second.output == "null"

    arun(scenario())


def test_retries_then_success_and_non_retriable_failure(db: str) -> None:
    client = dev_client()
    attempts: list[int] = []

    @client.function(id="flaky", trigger=stepline.TriggerEvent(event="t/flaky"), retries=3)
    def flaky(ctx: stepline.SyncContext) -> int:
        attempts.append(ctx.attempt)
        if ctx.attempt < 2:
            raise RuntimeError("try again")
        return ctx.attempt

    @client.function(id="fatal", trigger=stepline.TriggerEvent(event="t/fatal"), retries=3)
    def fatal(ctx: stepline.SyncContext) -> None:
        attempts.append(100 + ctx.attempt)
        raise stepline.NonRetriableError("no point")

    async def scenario() -> None:
        async with running(db, apps=[(client, [flaky, fatal])]) as engine:
            await engine.send([{"name": "t/flaky"}, {"name": "t/fatal"}])
            ok = await finished(engine, await only_run(engine, "t-flaky"))
            assert ok.status is RunStatus.COMPLETED
            assert ok.output == "2"
            bad = await finished(engine, await only_run(engine, "t-fatal"))
            assert bad.status is RunStatus.FAILED
            assert json.loads(bad.output or "")["message"] == "no point"

    arun(scenario())
    assert [a for a in attempts if a < 100] == [0, 1, 2]
    assert [a for a in attempts if a >= 100] == [100]


def test_step_error_is_catchable_after_retries(db: str) -> None:
    client = dev_client()

    @client.function(id="catcher", trigger=stepline.TriggerEvent(event="t/c"), retries=1)
    def catcher(ctx: stepline.SyncContext) -> str:
        def boom() -> None:
            raise ValueError("bad input")

        try:
            ctx.step.run("boom", boom)
        except stepline.StepError as exc:
            return f"caught {exc.name}: {exc.message}"
        return "unreachable"

    async def scenario() -> None:
        async with running(db, apps=[(client, [catcher])]) as engine:
            await engine.send({"name": "t/c"})
            run = await finished(engine, await only_run(engine, "t-catcher"))
            assert run.status is RunStatus.COMPLETED
            assert run.output == '"caught ValueError: bad input"'
            [boom] = await engine.run_steps(run.run_id)
            assert boom.status.value == "Failed"
            assert boom.attempts == 2

    arun(scenario())


def test_parallel_wait_and_race(db: str) -> None:
    client = dev_client()
    order: list[str] = []

    def step(name: str) -> Any:
        return lambda: order.append(name) or name

    @client.function(id="par", trigger=stepline.TriggerEvent(event="t/par"))
    async def par(ctx: stepline.Context) -> list[str]:
        results = await ctx.step.parallel(
            [
                lambda: ctx.step.run("x", step("x")),
                lambda: ctx.step.run("y", step("y")),
                lambda: ctx.step.run("z", step("z")),
            ]
        )
        after = await ctx.step.run("after", step("after"))
        return [*results, after]

    async def scenario() -> None:
        async with running(db, apps=[(client, [par])]) as engine:
            await engine.send({"name": "t/par"})
            run = await finished(engine, await only_run(engine, "t-par"))
            assert run.status is RunStatus.COMPLETED
            assert json.loads(run.output or "") == ["x", "y", "z", "after"]
            assert not run.force_plan, "force-plan is reset once the parallel group drains"

    arun(scenario())
    assert sorted(order[:3]) == ["x", "y", "z"]
    assert order[3:] == ["after"]


def test_invoke_child_result_failure_and_timeout(db: str) -> None:
    client = dev_client()

    @client.function(id="child", trigger=stepline.TriggerEvent(event="never"))
    def child(ctx: stepline.SyncContext) -> int:
        if ctx.event.data.get("fail"):
            raise stepline.NonRetriableError("child says no")
        return int(ctx.event.data["x"]) * 10

    @client.function(id="slow-child", trigger=stepline.TriggerEvent(event="never"))
    async def slow_child(ctx: stepline.Context) -> None:
        await ctx.step.sleep("forever", dt.timedelta(days=30))

    @client.function(id="parent", trigger=stepline.TriggerEvent(event="t/parent"))
    def parent(ctx: stepline.SyncContext) -> dict[str, Any]:
        ok = ctx.step.invoke("ok", function=child, data={"x": 4})
        try:
            ctx.step.invoke("bad", function=child, data={"fail": True})
            failed = None
        except stepline.StepError as exc:
            failed = exc.message
        try:
            ctx.step.invoke("slow", function=slow_child, timeout=dt.timedelta(minutes=5))
            timed_out = None
        except stepline.StepError as exc:
            timed_out = exc.name
        return {"ok": ok, "failed": failed, "timed_out": timed_out}

    async def scenario() -> None:
        clock = ManualClock()
        async with running(db, clock=clock, apps=[(client, [child, slow_child, parent])]) as engine:
            await engine.send({"name": "t/parent"})
            run = await finished(engine, await only_run(engine, "t-parent"), clock)
            assert run.status is RunStatus.COMPLETED, run.output
            assert json.loads(run.output or "") == {
                "ok": 40,
                "failed": "child says no",
                "timed_out": "InngestInvokeTimeoutError",
            }
            children = await engine.list_runs(RunFilter(function_id="t-child"))
            assert sorted(r.status.value for r in children) == ["Completed", "Failed"]
            assert all(r.parent_run_id == run.run_id for r in children)

    arun(scenario())


def test_cancel_on_event_and_api_cancel(db: str) -> None:
    client = dev_client()

    @client.function(
        id="cancellable",
        trigger=stepline.TriggerEvent(event="t/start"),
        cancel=[stepline.Cancel(event="t/stop", if_exp="event.data.id == async.data.id")],
    )
    async def cancellable(ctx: stepline.Context) -> None:
        await ctx.step.sleep("long", dt.timedelta(days=1))

    async def scenario() -> None:
        clock = ManualClock()
        async with running(db, clock=clock, apps=[(client, [cancellable])]) as engine:
            await engine.send([{"name": "t/start", "data": {"id": i}} for i in (1, 2, 3)])
            runs = []
            while len(runs) < 3:
                runs = await engine.list_runs(RunFilter(function_id="t-cancellable"))
            by_id = {r.events[0]["data"]["id"]: r.run_id for r in runs}
            await engine.send({"name": "t/stop", "data": {"id": 2}})
            stopped = await finished(engine, by_id[2])
            assert stopped.status is RunStatus.CANCELLED
            assert "t/stop" in (stopped.cancel_reason or "")
            assert await engine.cancel(by_id[3]) is True
            assert await engine.cancel(by_id[3]) is False
            assert (await engine.get_run(by_id[3])).status is RunStatus.CANCELLED
            survivor = await finished(engine, by_id[1], clock)
            assert survivor.status is RunStatus.COMPLETED

    arun(scenario())


def test_on_failure_handler_receives_function_failed(db: str) -> None:
    client = dev_client()
    seen: list[dict[str, Any]] = []

    def handle_failure(ctx: stepline.SyncContext) -> None:
        seen.append(dict(ctx.event.data))

    @client.function(
        id="doomed",
        trigger=stepline.TriggerEvent(event="t/doom"),
        retries=0,
        on_failure=handle_failure,
    )
    def doomed(ctx: stepline.SyncContext) -> None:
        raise RuntimeError("intentional failure")

    async def scenario() -> None:
        async with running(db, apps=[(client, [doomed])]) as engine:
            await engine.send({"name": "t/doom"})
            run = await finished(engine, await only_run(engine, "t-doomed"))
            assert run.status is RunStatus.FAILED
            handler = await finished(engine, await only_run(engine, "t-doomed-failure"))
            assert handler.status is RunStatus.COMPLETED

    arun(scenario())
    [data] = seen
    assert data["function_id"] == "t-doomed"
    assert data["error"]["name"] == "RuntimeError"
    assert data["error"]["message"] == "intentional failure"
    assert data["error"]["error"] == "invalid status code: 500"


def test_event_id_and_expression_idempotency(db: str) -> None:
    client = dev_client()

    @client.function(id="once", trigger=stepline.TriggerEvent(event="t/once"))
    def once(ctx: stepline.SyncContext) -> None:
        return None

    @client.function(
        id="per-user", trigger=stepline.TriggerEvent(event="t/user"), idempotency="event.data.user"
    )
    def per_user(ctx: stepline.SyncContext) -> None:
        return None

    async def scenario() -> None:
        async with running(db, apps=[(client, [once, per_user])]) as engine:
            first = await engine.send({"name": "t/once", "id": "abc"})
            await engine.send({"name": "t/once", "id": "abc"})
            await engine.send([{"name": "t/user", "data": {"user": u}} for u in ("a", "b", "a")])
            assert len(await engine.list_runs(RunFilter(function_id="t-once"))) == 1
            assert len(await engine.list_runs(RunFilter(function_id="t-per-user"))) == 2
            links = await engine.event_runs(first[0])
            assert [link.run_id is not None for link in links] == [True]

    arun(scenario())


def test_cron_fires_on_the_virtual_clock(db: str) -> None:
    client = dev_client()

    @client.function(id="ticker", trigger=stepline.TriggerCron(cron="*/15 * * * *"))
    def ticker(ctx: stepline.SyncContext) -> str:
        return str(ctx.event.data["cron"])

    async def scenario() -> None:
        clock = ManualClock(start=1_800_000_000.0)  # 2027-01-15T08:00:00Z, on a quarter hour
        async with running(db, clock=clock, apps=[(client, [ticker])]) as engine:
            clock.advance(15 * 60)
            engine.worker.wake.set()
            run_id = await only_run(engine, "t-ticker")
            run = await finished(engine, run_id)
            assert run.output == '"*/15 * * * *"'
            assert run.events[0]["name"] == "inngest/scheduled.timer"

    arun(scenario())


def test_finish_timeout_cancels(db: str) -> None:
    client = dev_client()

    @client.function(
        id="bounded",
        trigger=stepline.TriggerEvent(event="t/bounded"),
        timeouts=stepline.Timeouts(finish=dt.timedelta(minutes=10)),
    )
    async def bounded(ctx: stepline.Context) -> None:
        await ctx.step.sleep("too-long", dt.timedelta(hours=1))

    async def scenario() -> None:
        clock = ManualClock()
        async with running(db, clock=clock, apps=[(client, [bounded])]) as engine:
            await engine.send({"name": "t/bounded"})
            run = await finished(engine, await only_run(engine, "t-bounded"), clock)
            assert run.status is RunStatus.CANCELLED
            assert run.cancel_reason == "finish timeout exceeded"

    arun(scenario())


def test_bad_wait_expression_fails_the_step_not_the_engine(db: str) -> None:
    client = dev_client()

    @client.function(id="bad-wait", trigger=stepline.TriggerEvent(event="t/bad"))
    def bad_wait(ctx: stepline.SyncContext) -> str:
        try:
            ctx.step.wait_for_event(
                "w", event="t/x", timeout=dt.timedelta(hours=1), if_exp="event.data.a == )"
            )
        except stepline.StepError as exc:
            return f"{exc.name}: {exc.message}"
        return "unreachable"

    @client.function(id="fine", trigger=stepline.TriggerEvent(event="t/bad"))
    def fine(ctx: stepline.SyncContext) -> str:
        return "unaffected"

    async def scenario() -> None:
        async with running(db, apps=[(client, [bad_wait, fine])]) as engine:
            await engine.send({"name": "t/bad"})
            run = await finished(engine, await only_run(engine, "t-bad-wait"))
            assert run.status is RunStatus.COMPLETED
            assert run.output is not None
            assert run.output.startswith('"InvalidExpressionError: wait_for_event if: unexpected')
            other = await finished(engine, await only_run(engine, "t-fine"))
            assert other.output == '"unaffected"'

    arun(scenario())


def test_a_non_retriable_step_after_checkpointed_steps_runs_once(db: str) -> None:
    client = dev_client()
    calls: list[str] = []

    def boom() -> None:
        calls.append("b")
        raise stepline.NonRetriableError("no")

    @client.function(id="nr", trigger=stepline.TriggerEvent(event="t/nr"))
    def nr(ctx: stepline.SyncContext) -> int:
        ctx.step.run("a", lambda: calls.append("a"))
        ctx.step.run("b", boom)  # runs in the same call as "a" (checkpointing)
        return 1

    async def scenario() -> None:
        async with running(db, apps=[(client, [nr])]) as engine:
            await engine.send({"name": "t/nr"})
            run = await finished(engine, await only_run(engine, "t-nr"))
            assert run.status is RunStatus.FAILED
            steps = {s.name: s.status.value for s in await engine.run_steps(run.run_id)}
            assert steps == {"a": "Completed", "b": "Failed"}
        assert calls == ["a", "b"]  # neither step ran twice

    arun(scenario())
