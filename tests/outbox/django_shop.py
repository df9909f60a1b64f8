"""The shop's functions for the Django embedded-relay case (``STEPLINE['FUNCTIONS']``)."""

from __future__ import annotations

from typing import Any

import stepline
import stepline.django

client = stepline.django.get_client()


@client.function(id="process-order", trigger=stepline.TriggerEvent(event="shop/order.placed"))
def process_order(ctx: stepline.SyncContext) -> dict[str, Any]:
    return {"order": ctx.event.data.get("order_id")}


functions = [process_order]
