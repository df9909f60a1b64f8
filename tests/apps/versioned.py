"""One version of the app ``versioned``, served by uvicorn in a child process.

Configured by the environment, as a deploy would be:

* ``VERSIONED_SDK``: ``stepline`` or ``official`` (the ``inngest`` package);
* ``VERSIONED_LABEL``: what this process is (``v1``, ``v2``), returned by its steps;
* ``VERSIONED_APP_VERSION``: the client's app version (unset: none, e.g. a deploy id
  carries it instead);
* ``VERSIONED_POLICY``: the functions' ``versioning=`` option (stepline only).

Two functions, one sync and one async: step ``begin`` returns the label of the process
that ran it, then a sleep (``event.data.nap`` seconds), then step ``end`` likewise; the
output is ``{"begin": ..., "end": ...}``: which version started the run and which
finished it.
"""

from __future__ import annotations

import datetime as dt
import os
import warnings
from typing import Any

import fastapi

SDK = os.environ.get("VERSIONED_SDK", "stepline")
LABEL = os.environ["VERSIONED_LABEL"]
APP_VERSION = os.environ.get("VERSIONED_APP_VERSION") or None
POLICY = os.environ.get("VERSIONED_POLICY") or None
APP_ID = "versioned"

app = fastapi.FastAPI()


def _nap(data: Any) -> dt.timedelta:
    return dt.timedelta(seconds=float(data.get("nap", 3)))


if SDK == "official":
    import inngest

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # inngest 0.5's class-based pydantic Config
        import inngest.fast_api

    official = inngest.Inngest(app_id=APP_ID, is_production=False, app_version=APP_VERSION)

    @official.create_function(fn_id="sync", trigger=inngest.TriggerEvent(event="versioned/sync"))
    def sync_fn(ctx: inngest.ContextSync) -> dict[str, Any]:
        begin = ctx.step.run("begin", lambda: LABEL)
        ctx.step.sleep("nap", _nap(ctx.event.data))
        return {"begin": begin, "end": ctx.step.run("end", lambda: LABEL)}

    @official.create_function(fn_id="async", trigger=inngest.TriggerEvent(event="versioned/async"))
    async def async_fn(ctx: inngest.Context) -> dict[str, Any]:
        async def label() -> str:
            return LABEL

        begin = await ctx.step.run("begin", label)
        await ctx.step.sleep("nap", _nap(ctx.event.data))
        return {"begin": begin, "end": await ctx.step.run("end", label)}

    inngest.fast_api.serve(app, official, [sync_fn, async_fn])
else:
    import stepline
    import stepline.fastapi

    client = stepline.Client(APP_ID, is_production=False, app_version=APP_VERSION)
    options: dict[str, Any] = {"versioning": POLICY} if POLICY else {}

    @client.function(id="sync", trigger=stepline.TriggerEvent(event="versioned/sync"), **options)
    def sync_run(ctx: stepline.SyncContext) -> dict[str, Any]:
        begin = ctx.step.run("begin", lambda: LABEL)
        ctx.step.sleep("nap", _nap(ctx.event.data))
        return {"begin": begin, "end": ctx.step.run("end", lambda: LABEL)}

    @client.function(id="async", trigger=stepline.TriggerEvent(event="versioned/async"), **options)
    async def async_run(ctx: stepline.Context) -> dict[str, Any]:
        begin = await ctx.step.run("begin", lambda: LABEL)
        await ctx.step.sleep("nap", _nap(ctx.event.data))
        return {"begin": begin, "end": await ctx.step.run("end", lambda: LABEL)}

    stepline.fastapi.serve(app, client, [sync_run, async_run])
