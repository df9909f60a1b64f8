"""Checkout as a durable endpoint: the steps run inside the request, durably.

One command runs the web app and the engine (in this process, on SQLite):

    python examples/durable_endpoints/fastapi_app.py        # http://127.0.0.1:8000/docs

    curl -X POST localhost:8000/checkout -H 'content-type: application/json' \\
         -H 'idempotency-key: cart-1' -d '{"cart": "cart-1", "items": 2}'
    # 200 {"order": ..., "charge": ..., "email": "sent"}, in a few milliseconds

    curl -i -X POST localhost:8000/checkout -H 'content-type: application/json' \\
         -d '{"cart": "cart-2", "items": 1, "gift_wrap": true}'
    # 202, Location: /api/runs/<run_id>/result (wrapping waits 3 s, then the run finishes)
    curl localhost:8000/api/runs/<run_id>/result?wait=10

Each step is recorded before the next one runs: if the process dies after the charge,
the engine finishes the checkout when it comes back, without charging twice. A retry of
the same request with the same ``Idempotency-Key`` gets the same order. Settings: ``PORT``,
``STEPLINE_DATABASE_URL`` (default ``.stepline/embedded.db``).
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import fastapi
import pydantic
import uvicorn

import stepline
import stepline.fastapi
import stepline.web

client = stepline.Client("shop", is_production=False)
app = fastapi.FastAPI(title="Shop", lifespan=stepline.fastapi.lifespan(client))


class Cart(pydantic.BaseModel):
    cart: str = pydantic.Field(min_length=1)
    items: int = pydantic.Field(ge=1, le=100)
    gift_wrap: bool = False


@app.post("/checkout")
@stepline.fastapi.durable(client, retries=3, run_routes="/api")
async def checkout(ctx: stepline.EndpointContext) -> Any:
    """Reserve, charge, (gift-wrap), confirm: one request, each step exactly once."""
    try:
        cart = Cart.model_validate(ctx.request.json())
    except (pydantic.ValidationError, stepline.SteplineError) as exc:
        return stepline.EndpointResponse({"error": str(exc)}, status=422)
    order = await ctx.step.run("reserve", lambda: {"order": f"ord-{ctx.run_id[-8:]}"})
    charge = await ctx.step.run(
        "charge", lambda: {"charge": f"ch-{ctx.run_id[-8:]}", "cents": 1250 * cart.items}
    )
    if cart.gift_wrap:  # the request answers 202 here; the engine wakes the run in 3 s
        await ctx.step.sleep("wrapping", dt.timedelta(seconds=3))
    email = await ctx.step.run("email", lambda: "sent")
    return {**order, **charge, "email": email}


stepline.fastapi.serve(app, client, [], engine="embedded")
# the kit's routes: where a suspended checkout's Location points (status, result, events)
app.include_router(
    stepline.fastapi.runs_router(
        client,
        [checkout.endpoint.function],
        authorize=stepline.web.allow_all,  # type: ignore[attr-defined]
    ),
    prefix="/api",
)


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
