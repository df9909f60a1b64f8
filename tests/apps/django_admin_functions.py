"""``STEPLINE["FUNCTIONS"]`` of the Django admin tests: a factory, called once per settings value.

``greet`` completes in two steps, ``hold`` sleeps for an hour after one step (a run to
cancel), ``boom`` fails in its second step with no retries.
"""

from __future__ import annotations

import datetime as dt

import stepline
import stepline.django


def make() -> list[stepline.Function]:
    return functions(stepline.django.get_client())


def functions(client: stepline.Client) -> list[stepline.Function]:
    @client.function(id="greet", name="Greet", trigger=stepline.TriggerEvent(event="adm/greet"))
    def greet(ctx: stepline.SyncContext) -> dict[str, str]:
        name = ctx.step.run("load", lambda: str(ctx.event.data["name"]))
        return {"text": ctx.step.run("greet", lambda: f"Hello, {name}!")}

    @client.function(id="hold", trigger=stepline.TriggerEvent(event="adm/hold"))
    def hold(ctx: stepline.SyncContext) -> str:
        ctx.step.run("ready", lambda: "ready")
        ctx.step.sleep("nap", dt.timedelta(hours=1))
        return "released"

    @client.function(id="boom", trigger=stepline.TriggerEvent(event="adm/boom"), retries=0)
    def boom(ctx: stepline.SyncContext) -> str:
        ctx.step.run("fine", lambda: "fine")

        def explode() -> str:
            raise ValueError("the flux capacitor broke")

        return ctx.step.run("explode", explode)

    return [greet, hold, boom]
