"""A module ``stepline connect tests.apps.connect_cli:client`` serves (engine: CLI_ENGINE_URL)."""

from __future__ import annotations

import os

import stepline

client = stepline.Client(
    "cli-app",
    is_production=False,
    api_base_url=os.environ["CLI_ENGINE_URL"],
    event_api_base_url=os.environ["CLI_ENGINE_URL"],
)


@client.function(id="add", trigger=stepline.TriggerEvent(event="cli/add"))
async def add(ctx: stepline.Context) -> int:
    async def total() -> int:
        return int(ctx.event.data["a"]) + int(ctx.event.data["b"])

    return int(await ctx.step.run("total", total))


@client.function(id="upper", trigger=stepline.TriggerEvent(event="cli/upper"))
def upper(ctx: stepline.SyncContext) -> str:
    return str(ctx.step.run("upper", lambda: str(ctx.event.data["text"]).upper()))
