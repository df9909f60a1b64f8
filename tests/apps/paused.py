"""The app of the pause tests with real processes, served by uvicorn in a child process.

``PAUSED_LOG``: a file each step appends ``<who>:<step>`` to, so the test sees exactly
which steps ran, in order, in this process. One function, ``paused-steps`` (event
``paused/go``, concurrency 1): step ``a``, a short sleep (a call boundary: the run's
next call is made after it), steps ``b`` and ``c``.
"""

from __future__ import annotations

import datetime as dt
import os

import fastapi

import stepline
import stepline.fastapi

LOG = os.environ["PAUSED_LOG"]

app = fastapi.FastAPI()
client = stepline.Client("paused", is_production=False)


def _log(entry: str) -> str:
    with open(LOG, "a", encoding="utf-8") as f:
        f.write(entry + "\n")
    return entry


@client.function(id="steps", trigger=stepline.TriggerEvent(event="paused/go"), concurrency=1)
async def steps(ctx: stepline.Context) -> list[str]:
    who = str(dict(ctx.event.data)["who"])
    first = await ctx.step.run("a", _log, f"{who}:a")
    await ctx.step.sleep("nap", dt.timedelta(seconds=4))  # outlasts a slow CLI start
    return [first, *[await ctx.step.run(name, _log, f"{who}:{name}") for name in ("b", "c")]]


stepline.fastapi.serve(app, client, [steps])
