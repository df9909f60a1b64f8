"""The site's functions, declared on ``stepline.django.get_client()``."""

from __future__ import annotations

import datetime as dt

import pydantic

import stepline
import stepline.django

client = stepline.django.get_client()


class Greeting(pydantic.BaseModel):
    name: str


@client.function(id="welcome", trigger=stepline.TriggerEvent(event="site/welcome"))
async def welcome(ctx: stepline.Context) -> dict[str, str]:
    async def load() -> str:
        return str(ctx.event.data_as(Greeting).name)

    name = await ctx.step.run("load", load)

    async def greet() -> str:
        return f"Welcome, {name}!"

    return {"text": await ctx.step.run("greet", greet)}


@client.function(id="hold", trigger=stepline.TriggerEvent(event="site/hold"))
def hold(ctx: stepline.SyncContext) -> str:
    ctx.step.run("ready", lambda: "ready")
    ctx.step.sleep("hold", dt.timedelta(hours=1))
    return "released"


@client.function(id="hidden", trigger=stepline.TriggerEvent(event="site/hidden"))
def hidden(ctx: stepline.SyncContext) -> str:
    return "hidden"


functions = [welcome, hold, hidden]
