"""A minimal aiohttp app serving one sync and one async durable function.

Run it (dev mode, against a local engine on :8288):

    STEPLINE_DEV=1 PORT=8000 .venv/bin/python examples/aiohttp/app.py
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from aiohttp import web

import stepline
import stepline.aiohttp

client = stepline.Client("aiohttp-example")


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


async def index(_request: web.Request) -> web.Response:
    return web.json_response({"app": "aiohttp-example", "functions": "/api/inngest"})


app = web.Application()
app.router.add_get("/", index)
stepline.aiohttp.serve(app, client, [greet, count])

if __name__ == "__main__":
    web.run_app(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
