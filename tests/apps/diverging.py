"""One deploy of the app ``diverging``, served by uvicorn in a child process.

Configured by the environment, as a deploy would be:

* ``DIVERGING_SDK``: ``stepline`` or ``official`` (the ``inngest`` package);
* ``DIVERGING_CODE``: ``v1`` or ``v2``, the code of this deploy;
* ``DIVERGING_POLICY``: the functions' ``nondeterminism=`` option (stepline only).

Two functions, one sync and one async, of the same shape.

stepline: v1 runs step ``reserve``, sleeps until event ``diverging/resume`` (a wait: the
test decides when the run wakes, after the deploy), runs ``ship``; v2 renamed ``reserve``
to ``reserve stock``, so a run that slept on v1 no longer reaches its recorded
``reserve`` (the SDK reports the divergence).

official: v1 plans ``charge`` and ``ship`` in parallel, and ``charge`` asks to be retried
in ``event.data.nap`` seconds (``RetryAfterError``); v2 renamed ``charge`` to ``charge
card`` and sends a ``receipt`` after the group, so the retried call that targets the
planned ``charge`` finds ``receipt`` first (what the engine sees from outside the SDK).
"""

from __future__ import annotations

import datetime as dt
import os
import warnings
from typing import Any, Literal, cast

import fastapi

SDK = os.environ.get("DIVERGING_SDK", "stepline")
CODE = os.environ["DIVERGING_CODE"]
POLICY = cast(Literal["warn", "fail"], os.environ.get("DIVERGING_POLICY") or "warn")
APP_ID = "diverging"

app = fastapi.FastAPI()


def _nap(data: Any) -> dt.timedelta:
    return dt.timedelta(seconds=float(data.get("nap", 3)))


if SDK == "official":
    import inngest

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # inngest 0.5's class-based pydantic Config
        import inngest.fast_api

    official = inngest.Inngest(app_id=APP_ID, is_production=False)
    CHARGE = "charge" if CODE == "v1" else "charge card"

    def charge(data: Any) -> str:
        if CODE == "v1":
            raise inngest.RetryAfterError("the bank is busy", _nap(data))
        return "charged"

    @official.create_function(fn_id="sync", trigger=inngest.TriggerEvent(event="diverging/sync"))
    def sync_fn(ctx: inngest.ContextSync) -> dict[str, Any]:
        done = ctx.group.parallel(
            (
                lambda: ctx.step.run(CHARGE, lambda: charge(ctx.event.data)),
                lambda: ctx.step.run("ship", lambda: "shipped"),
            )
        )
        receipt = ctx.step.run("receipt", lambda: "sent") if CODE == "v2" else None
        return {"done": list(done), "receipt": receipt}

    @official.create_function(fn_id="async", trigger=inngest.TriggerEvent(event="diverging/async"))
    async def async_fn(ctx: inngest.Context) -> dict[str, Any]:
        async def charged() -> str:
            return charge(ctx.event.data)

        async def shipped() -> str:
            return "shipped"

        async def sent() -> str:
            return "sent"

        done = await ctx.group.parallel(
            (lambda: ctx.step.run(CHARGE, charged), lambda: ctx.step.run("ship", shipped))
        )
        receipt = await ctx.step.run("receipt", sent) if CODE == "v2" else None
        return {"done": list(done), "receipt": receipt}

    inngest.fast_api.serve(app, official, [sync_fn, async_fn])
else:
    import stepline
    import stepline.fastapi

    client = stepline.Client(APP_ID, is_production=False)
    RESERVE = "reserve" if CODE == "v1" else "reserve stock"
    trigger = stepline.TriggerEvent

    HOUR = dt.timedelta(hours=1)

    @client.function(id="sync", trigger=trigger(event="diverging/sync"), nondeterminism=POLICY)
    def sync_run(ctx: stepline.SyncContext) -> dict[str, Any]:
        reserved = ctx.step.run(RESERVE, lambda: CODE)
        ctx.step.wait_for_event("nap", event="diverging/resume", timeout=HOUR)
        return {"reserved": reserved, "shipped": ctx.step.run("ship", lambda: CODE)}

    @client.function(id="async", trigger=trigger(event="diverging/async"), nondeterminism=POLICY)
    async def async_run(ctx: stepline.Context) -> dict[str, Any]:
        reserved = await ctx.step.run(RESERVE, lambda: CODE)
        await ctx.step.wait_for_event("nap", event="diverging/resume", timeout=HOUR)
        return {"reserved": reserved, "shipped": await ctx.step.run("ship", lambda: CODE)}

    stepline.fastapi.serve(app, client, [sync_run, async_run])
