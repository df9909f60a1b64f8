"""One version of the app ``patches``, served by uvicorn in a child process.

``PATCHES_LABEL`` says which: ``v1`` (steps ``begin``, sleep ``nap``, ``end``) or ``v2``,
which adds a ``ctx.patched("new-path")`` branch (step ``new``) before the sleep. A sync
and an async function; the output says which path the run took and who ended it.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import fastapi

import stepline
import stepline.fastapi

LABEL = os.environ["PATCHES_LABEL"]
app = fastapi.FastAPI()
client = stepline.Client("patches", is_production=False)


def _nap(data: Any) -> dt.timedelta:
    return dt.timedelta(seconds=float(data.get("nap", 3)))


@client.function(id="sync", trigger=stepline.TriggerEvent(event="patches/sync"))
def sync_run(ctx: stepline.SyncContext) -> dict[str, Any]:
    ctx.step.run("begin", lambda: LABEL)
    path = "v1"
    if LABEL == "v2":
        path = ctx.step.run("new", lambda: "new") if ctx.patched("new-path") else "old"
    ctx.step.sleep("nap", _nap(ctx.event.data))
    return {"path": path, "end": ctx.step.run("end", lambda: LABEL)}


@client.function(id="async", trigger=stepline.TriggerEvent(event="patches/async"))
async def async_run(ctx: stepline.Context) -> dict[str, Any]:
    await ctx.step.run("begin", lambda: LABEL)
    path = "v1"
    if LABEL == "v2":
        path = await ctx.step.run("new", lambda: "new") if ctx.patched("new-path") else "old"
    await ctx.step.sleep("nap", _nap(ctx.event.data))
    return {"path": path, "end": await ctx.step.run("end", lambda: LABEL)}


stepline.fastapi.serve(app, client, [sync_run, async_run])
