"""Checkout as a durable endpoint, in Flask: the steps run inside the request, durably.

One command runs the web app and the engine (in this process, on SQLite):

    python examples/durable_endpoints/flask_app.py          # http://127.0.0.1:8000

    curl -X POST localhost:8000/checkout -H 'content-type: application/json' \\
         -H 'idempotency-key: cart-1' -d '{"cart": "cart-1", "items": 2}'
    # 200 {"order": ..., "charge": ..., "email": "sent"}

    curl -i -X POST localhost:8000/checkout -H 'content-type: application/json' \\
         -d '{"cart": "cart-2", "items": 1, "gift_wrap": true}'
    # 202, Location: /api/runs/<run_id>/result (wrapping waits 3 s, then the run finishes)
    curl localhost:8000/api/runs/<run_id>/result?wait=10

The same checkout as ``fastapi_app.py``, with a plain ``def`` handler and blocking steps.
Settings: ``PORT``, ``STEPLINE_DATABASE_URL`` (default ``.stepline/embedded.db``).
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import flask

import stepline
import stepline.flask
import stepline.web

client = stepline.Client("shop", is_production=False)
app = flask.Flask("shop")


@app.post("/checkout")
@stepline.flask.durable(client, retries=3, run_routes="/api")
def checkout(ctx: stepline.SyncEndpointContext) -> Any:
    """Reserve, charge, (gift-wrap), confirm: one request, each step exactly once."""
    cart = ctx.request.json() if ctx.request.body else None
    if not isinstance(cart, dict) or not cart.get("cart") or not 1 <= cart.get("items", 0) <= 100:
        return stepline.EndpointResponse({"error": "want {cart, items: 1-100}"}, status=422)
    order = ctx.step.run("reserve", lambda: {"order": f"ord-{ctx.run_id[-8:]}"})
    charge = ctx.step.run(
        "charge", lambda: {"charge": f"ch-{ctx.run_id[-8:]}", "cents": 1250 * cart["items"]}
    )
    if cart.get("gift_wrap"):  # the request answers 202 here; the engine wakes the run in 3 s
        ctx.step.sleep("wrapping", dt.timedelta(seconds=3))
    email = ctx.step.run("email", lambda: "sent")
    return {**order, **charge, "email": email}


stepline.flask.serve(app, client, [], engine="embedded")
# the kit's routes: where a suspended checkout's Location points (status, result, events)
app.register_blueprint(
    stepline.flask.runs_blueprint(
        client, [checkout.endpoint.function], authorize=stepline.web.allow_all
    ),
    url_prefix="/api",
)


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "8000")), threaded=True)
