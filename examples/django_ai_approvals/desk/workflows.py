"""The durable function a refund request starts: the agent's run, step by step."""

from __future__ import annotations

import stepline
import stepline.django
from desk.agent import refunds

client = stepline.django.get_client()


@client.function(id="refund-request", trigger=stepline.TriggerEvent(event="desk/refund.asked"))
def refund_request(ctx: stepline.SyncContext) -> str:
    return refunds.on(ctx).run_sync(str(ctx.event.data["message"])).output


functions = [refund_request]
