"""Orders, the durable way: the Temporal FastAPI order guide rebuilt with Stepline.

One command runs the web app, the engine (in this process, on SQLite) and the workers:

    python examples/fastapi_orders/app.py            # http://127.0.0.1:8000/docs

    curl -X POST localhost:8000/orders -H 'content-type: application/json' \\
         -d '{"customer": "ada", "items": [{"sku": "book", "quantity": 2}]}'
    curl localhost:8000/orders/<order_id>               # status and the steps so far
    curl -X POST localhost:8000/orders/<order_id>/cancel
    curl -N localhost:8000/api/runs/<order_id>/events -H 'x-api-token: dev-token'

``/api`` is Stepline's run kit (start, status, cancel, result, live events), guarded by an
``x-api-token`` header; ``/stepline`` is the embedded engine's API. Settings: ``PORT``,
``ORDERS_API_TOKEN``, ``STEPLINE_DATABASE_URL`` (default ``.stepline/embedded.db``) and
``ORDERS_ENGINE`` (``none``: no embedded engine, as in ``tests/testing/test_examples.py``).
"""

from __future__ import annotations

import datetime as dt
import hmac
import os
from typing import Annotated, Any, Literal

import fastapi
import pydantic
import uvicorn

import stepline
import stepline.fastapi
import stepline.web

client = stepline.Client("orders", is_production=False)
API_TOKEN = os.environ.get("ORDERS_API_TOKEN", "dev-token")
PRICES = {"book": 1250, "lamp": 4900, "mug": 800}  # cents


class Item(pydantic.BaseModel):
    sku: str
    quantity: int = pydantic.Field(ge=1, le=100)


class Order(pydantic.BaseModel):
    customer: str = pydantic.Field(min_length=1)
    items: list[Item] = pydantic.Field(min_length=1)
    hold_seconds: float = pydantic.Field(
        default=5, ge=0, le=86_400, description="how long the warehouse waits (cancel window)"
    )


@client.function(id="process-order", trigger=stepline.TriggerEvent(event="orders/placed"))
async def process_order(ctx: stepline.Context) -> dict[str, Any]:
    """Reserve, charge, wait for the warehouse, ship: each step runs once, even across crashes."""
    order = Order.model_validate(ctx.event.data)

    def reserve() -> dict[str, Any]:
        unknown = [item.sku for item in order.items if item.sku not in PRICES]
        if unknown:
            raise stepline.NonRetriableError(f"unknown items: {', '.join(unknown)}")
        return {"reservation": f"res-{ctx.run_id[-8:]}", "skus": [i.sku for i in order.items]}

    reservation = await ctx.step.run("reserve-inventory", reserve)
    total = sum(PRICES[item.sku] * item.quantity for item in order.items)
    payment = await ctx.step.run(
        "charge-payment", lambda: {"charge": f"ch-{ctx.run_id[-8:]}", "cents": total}
    )
    await ctx.step.sleep("wait-for-warehouse", dt.timedelta(seconds=order.hold_seconds))
    shipment = await ctx.step.run(
        "ship-order", lambda: {"tracking": f"1Z-{ctx.run_id[-6:]}", "to": order.customer}
    )
    return {"status": "shipped", **reservation, **payment, **shipment}


def check_token(access: stepline.web.AccessRequest) -> bool:
    """The kit's authorize hook: every /api request needs the API token."""
    token = access.request.headers.get("x-api-token")
    if token is None:
        raise stepline.web.AccessDenied("send an x-api-token header", status=401)
    return hmac.compare_digest(token, API_TOKEN)


# The engine runs in this process; ORDERS_ENGINE=none serves the functions at /api/inngest
# for an engine elsewhere (a separate dev server, or stepline.testing's TestEnv in tests).
ENGINE: Literal["embedded"] | None = (
    None if os.environ.get("ORDERS_ENGINE") == "none" else "embedded"
)
app = fastapi.FastAPI(title="Orders", lifespan=stepline.fastapi.lifespan(client))
stepline.fastapi.serve(app, client, [process_order], engine=ENGINE)
app.include_router(
    stepline.fastapi.runs_router(
        client, [process_order], authorize=check_token, inputs={process_order: Order}
    ),
    prefix="/api",
)


@app.post("/orders", status_code=201)
async def place_order(
    order: Order,
    client: stepline.fastapi.ClientDep,
    idempotency_key: Annotated[str | None, fastapi.Header()] = None,
) -> dict[str, Any]:
    """Place an order: starts its durable process-order run (retrying a key is safe)."""
    data = order.model_dump(mode="json")
    handle = await client.start(process_order, data, idempotency_key=idempotency_key)
    return {"order_id": handle.run_id, "created": handle.created}


@app.get("/orders/{order_id}")
async def order_status(order_id: str, client: stepline.fastapi.ClientDep) -> dict[str, Any]:
    """Where the order is: run status, the steps done so far, and the result once shipped."""
    handle = client.get_run(order_id)
    info = await _order_run(handle)
    steps = [{"name": s.name, "status": s.status} for s in await handle.steps()]
    return {
        "order_id": order_id,
        "status": info.status.value,
        "steps": steps,
        "result": info.output,
        "error": info.error,
    }


@app.post("/orders/{order_id}/cancel")
async def cancel_order(order_id: str, client: stepline.fastapi.ClientDep) -> dict[str, Any]:
    """Cancel an order that has not shipped yet (a shipped one keeps its status)."""
    handle = client.get_run(order_id)
    await _order_run(handle)
    return {"order_id": order_id, "status": (await handle.cancel()).value}


async def _order_run(handle: stepline.RunHandle) -> stepline.RunInfo:
    try:
        info = await handle.describe()
    except stepline.RunNotFoundError:
        info = None
    if info is None or info.function_id != process_order.composite_id:
        raise fastapi.HTTPException(404, f"no order {handle.run_id}")
    return info


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
