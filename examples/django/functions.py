"""The example's durable functions: one sync, one async."""

from __future__ import annotations

from typing import Any

import stepline

client = stepline.Client("django-example")


@client.function(id="greet", trigger=stepline.TriggerEvent(event="example/greet"))
def greet(ctx: stepline.SyncContext) -> dict[str, Any]:
    name = ctx.step.run("load-name", lambda: ctx.event.data.get("name", "world"))
    text = ctx.step.run("compose", lambda: f"Hello, {name}!")
    return {"text": text}


@client.function(id="count", trigger=stepline.TriggerEvent(event="example/count"))
async def count(ctx: stepline.Context) -> int:
    async def numbers() -> list[int]:
        return list(range(int(ctx.event.data.get("n", 3))))

    values = await ctx.step.run("numbers", numbers)
    return await ctx.step.run("sum", lambda: sum(values))
