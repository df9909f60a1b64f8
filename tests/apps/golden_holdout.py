"""The stepline twin of the app inngest-py ran to record ``captures/py``."""

from __future__ import annotations

import datetime as dt
from typing import Any

import stepline

APP_ID = "holdout-py"


def make_client(**overrides: Any) -> stepline.Client:
    settings: dict[str, Any] = {"is_production": False, "environ": {}}
    settings.update(overrides)
    return stepline.Client(APP_ID, **settings)


def make_functions(client: stepline.Client) -> list[stepline.Function]:
    @client.function(id="three-steps", trigger=stepline.TriggerEvent(event="demo/three"), retries=2)
    def three_steps(ctx: stepline.SyncContext) -> dict[str, Any]:
        a = ctx.step.run("add-one", lambda: ctx.event.data["n"] + 1)
        b = ctx.step.run("double", lambda: a * 2)
        c = ctx.step.run("to-str", lambda: f"result={b}")
        return {"a": a, "b": b, "c": c}

    @client.function(id="ops", trigger=stepline.TriggerEvent(event="demo/ops"))
    async def ops(ctx: stepline.Context) -> str:
        await ctx.step.sleep("nap", dt.timedelta(seconds=5))
        await ctx.step.wait_for_event(
            "wait",
            event="demo/approved",
            if_exp="event.data.id == async.data.id",
            timeout=dt.timedelta(minutes=1),
        )
        await ctx.step.invoke("call-other", function=three_steps, data={"n": 1})
        return "ok"

    @client.function(id="fails", trigger=stepline.TriggerEvent(event="demo/fail"), retries=0)
    def fails(ctx: stepline.SyncContext) -> None:
        def boom() -> None:
            raise ValueError("boom")

        ctx.step.run("boom", boom)

    @client.function(id="fn-level-error", trigger=stepline.TriggerEvent(event="demo/fnerr"))
    async def fn_level_error(ctx: stepline.Context) -> None:
        raise stepline.NonRetriableError("nope, do not retry")

    @client.function(id="parallel", trigger=stepline.TriggerEvent(event="demo/par"))
    async def parallel(ctx: stepline.Context) -> tuple[str, ...]:
        async def a() -> str:
            return "A"

        async def b() -> str:
            return "B"

        return await ctx.step.parallel(
            [lambda: ctx.step.run("p-a", a), lambda: ctx.step.run("p-b", b)]
        )

    return [three_steps, ops, fails, fn_level_error, parallel]
