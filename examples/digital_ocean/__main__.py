"""A DigitalOcean Function serving one sync and one async durable function.

Deploy it as ``packages/stepline/api/__main__.py`` with ``web: raw`` in project.yml (see
README.md); the function's URL is the endpoint to sync with the engine.
"""

from __future__ import annotations

from typing import Any

import stepline
import stepline.digital_ocean

client = stepline.Client("digital-ocean-example")


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


main = stepline.digital_ocean.serve(client, [greet, count])
