"""The app ``timeouts``, served by uvicorn in a child process (``test_step_timeouts.py``).

Each function's only step (or, for ``hang``, its code outside steps) runs longer than it
may, and logs what happened to it at ``GET /log?run=``: ``start`` when an attempt's code
starts, ``late`` when abandoned sync code finishes after all, ``cancelled`` when async
code is cancelled, ``call`` when the engine's call reaches the function.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import fastapi

import stepline
import stepline.fastapi

app = fastapi.FastAPI()
client = stepline.Client("timeouts", is_production=False)
LOG: list[dict[str, Any]] = []
_lock = threading.Lock()


def note(ctx: stepline.Context | stepline.SyncContext, event: str) -> None:
    with _lock:
        LOG.append({"run": ctx.run_id, "attempt": ctx.attempt, "event": event})


@client.function(id="slow-sync", trigger=stepline.TriggerEvent(event="timeouts/sync"), retries=1)
def slow_sync(ctx: stepline.SyncContext) -> str:
    def slow() -> str:
        note(ctx, "start")
        time.sleep(1.5)
        note(ctx, "late")
        return "late result"

    return ctx.step.run("slow", slow, timeout=300)


@client.function(
    id="slow-async",
    trigger=stepline.TriggerEvent(event="timeouts/async"),
    retries=1,
    timeouts=stepline.Timeouts(step="1s"),
)
async def slow_async(ctx: stepline.Context) -> str:
    async def slow() -> str:
        note(ctx, "start")
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            note(ctx, "cancelled")
            raise
        return "never"

    return await ctx.step.run("slow", slow)


@client.function(
    id="hang",
    trigger=stepline.TriggerEvent(event="timeouts/hang"),
    retries=1,
    timeouts=stepline.Timeouts(call="1s"),
)
def hang(ctx: stepline.SyncContext) -> str:
    note(ctx, "call")
    time.sleep(3)  # outside any step: only the engine's call timeout bounds it
    return "too late"


stepline.fastapi.serve(app, client, [slow_sync, slow_async, hang])


@app.get("/log")
def log(run: str) -> list[dict[str, Any]]:
    with _lock:
        return [entry for entry in LOG if entry["run"] == run]
