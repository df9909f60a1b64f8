"""A minimal FastAPI app serving one sync and one async durable function.

Run it (dev mode, against a local engine on :8288):

    STEPLINE_DEV=1 .venv/bin/uvicorn main:app --app-dir examples/fastapi --port 8000
"""

from __future__ import annotations

import asyncio
from typing import Any

import fastapi

import stepline
import stepline.fastapi

client = stepline.Client("fastapi-example")


@client.function(id="greet", trigger=stepline.TriggerEvent(event="example/greet"))
def greet(ctx: stepline.SyncContext) -> dict[str, Any]:
    # A sync function: FastAPI's event loop stays free, it runs on Stepline's thread pool.
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


app = fastapi.FastAPI()
stepline.fastapi.serve(app, client, [greet, count])


@app.get("/")
async def index() -> dict[str, str]:
    return {"app": "fastapi-example", "functions": "/api/inngest"}
