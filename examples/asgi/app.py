"""A bare ASGI app (no framework) serving one sync and one async durable function.

Run it with any ASGI server (dev mode, against a local engine on :8288):

    STEPLINE_DEV=1 .venv/bin/uvicorn app:app --app-dir examples/asgi --port 8000

The same object plugs into other ASGI frameworks, for example as a Starlette/FastAPI
route, ``app.router.add_route("/api/inngest", app, methods=["GET", "POST", "PUT"])``, or
as a Litestar mount, ``asgi("/api/inngest", is_mount=True)(app)``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import stepline
import stepline.asgi

client = stepline.Client("asgi-example")


@client.function(id="greet", trigger=stepline.TriggerEvent(event="example/greet"))
def greet(ctx: stepline.SyncContext) -> dict[str, Any]:
    name = ctx.step.run("load-name", lambda: ctx.event.data.get("name", "world"))
    text = ctx.step.run("compose", lambda: f"Hello, {name}!")
    return {"text": text}


@client.function(id="count", trigger=stepline.TriggerEvent(event="example/count"))
async def count(ctx: stepline.Context) -> int:
    async def numbers() -> list[int]:
        await asyncio.sleep(float(ctx.event.data.get("delay", 0)))  # stands in for slow I/O
        return list(range(int(ctx.event.data.get("n", 3))))

    values = await ctx.step.run("numbers", numbers)
    return await ctx.step.run("sum", lambda: sum(values))


app = stepline.asgi.serve(client, [greet, count])
