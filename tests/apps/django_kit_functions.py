"""``STEPLINE["FUNCTIONS"]`` for the in-process settings tests: a factory, called once per
settings value, so each ``override_settings(STEPLINE=...)`` gets functions of its own client."""

from __future__ import annotations

import pydantic

import stepline
import stepline.django


class Named(pydantic.BaseModel):
    name: str


def make() -> list[stepline.Function]:
    client = stepline.django.get_client()

    @client.function(id="welcome", trigger=stepline.TriggerEvent(event="cfg/welcome"))
    def welcome(ctx: stepline.SyncContext) -> str:
        return ctx.step.run("greet", lambda: f"Welcome, {ctx.event.data_as(Named).name}!")

    return [welcome]
