"""An app written with the official ``inngest`` SDK, served by uvicorn in a child process.

Its engine comes from the environment (``INNGEST_DEV`` / ``INNGEST_BASE_URL``), as a user's
would: the poll tests start ``stepline dev`` first and this app after it.
"""

from __future__ import annotations

import warnings
from typing import Any

import fastapi
import inngest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # inngest 0.5's class-based pydantic Config
    import inngest.fast_api

client = inngest.Inngest(app_id="official-poll", is_production=False)


@client.create_function(fn_id="hello", trigger=inngest.TriggerEvent(event="poll/hello"))
def hello(ctx: inngest.ContextSync) -> dict[str, Any]:
    return {"hello": ctx.event.data.get("name", "world")}


app = fastapi.FastAPI()
inngest.fast_api.serve(app, client, [hello])
