"""The victim of ``tools/attack_chains.py``: a signed (production) FastAPI app.

Served by a real uvicorn process::

    ATTACK_ENGINE_URL=http://127.0.0.1:PORT ATTACK_SIGNING_KEY=signkey-prod-... \\
    ATTACK_EVENT_KEY=... uvicorn _attack_apps:app --app-dir tools --port N

It has one function, ``victim-one`` (event ``victim/one``), that runs one step and returns 1.
"""

from __future__ import annotations

import os

import fastapi

import stepline
import stepline.fastapi

ENGINE = os.environ["ATTACK_ENGINE_URL"]

client = stepline.Client(
    app_id="victim",
    is_production=True,
    signing_key=os.environ["ATTACK_SIGNING_KEY"],
    event_key=os.environ["ATTACK_EVENT_KEY"],
    api_base_url=ENGINE,
    event_api_base_url=ENGINE,
    environ={},
)


@client.function(id="one", trigger=stepline.TriggerEvent(event="victim/one"), retries=0)
async def one(ctx: stepline.Context) -> int:
    return int(await ctx.step.run("a", lambda: 1))


app = fastapi.FastAPI()
stepline.fastapi.serve(app, client, [one])
