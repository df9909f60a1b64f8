"""Orders: a Flask app whose checkout is a durable function, with the engine inside.

One command, no second process (the engine keeps its queue in ``.stepline/orders.db``)::

    python examples/flask_orders/app.py

Then place an order, follow it and cancel one during its grace period::

    curl -s -X POST localhost:8000/orders -H 'content-type: application/json' \\
        -d '{"customer": "ada", "items": [{"sku": "tea", "quantity": 2}]}'
    curl -s localhost:8000/orders/<order_id>
    curl -s -X POST localhost:8000/orders/<order_id>/cancel
    curl -sN -H 'authorization: Bearer dev-token' localhost:8000/api/runs/<order_id>/events

``/orders`` are the app's own routes; ``/api/runs/...`` is Stepline's run kit (start,
status, cancel, result, live events) behind a bearer token; ``/stepline/`` is the
engine's API and dashboard (dev mode only).
"""

from __future__ import annotations

import datetime as dt
import hmac
import os
import uuid
from collections.abc import Mapping
from typing import Any

import flask
import pydantic

import stepline
import stepline.flask
import stepline.web

PRICES_CENTS = {"tea": 450, "mug": 1200, "beans": 1500}

ext = stepline.flask.Stepline(app_id="orders")


class Item(pydantic.BaseModel):
    """One line of an order."""

    sku: str
    quantity: int = pydantic.Field(gt=0, le=100)


class OrderIn(pydantic.BaseModel):
    """What ``POST /orders`` (and ``POST /api/runs``) accepts."""

    customer: str = pydantic.Field(min_length=1)
    items: list[Item] = pydantic.Field(min_length=1)
    grace_seconds: float = pydantic.Field(default=5.0, ge=0, le=3600)


@ext.function(id="process-order", trigger=stepline.TriggerEvent(event="orders/placed"))
def process_order(ctx: stepline.SyncContext) -> dict[str, Any]:
    """Price, reserve, wait out the grace period (cancellable), then charge."""
    order = OrderIn.model_validate(ctx.event.data)

    def price() -> int:
        unknown = [item.sku for item in order.items if item.sku not in PRICES_CENTS]
        if unknown:
            raise stepline.NonRetriableError(f"unknown products: {', '.join(unknown)}")
        return sum(PRICES_CENTS[item.sku] * item.quantity for item in order.items)

    total = ctx.step.run("price", price)
    reservation = ctx.step.run("reserve-stock", lambda: f"res-{uuid.uuid4().hex[:8]}")
    ctx.step.sleep("grace-period", dt.timedelta(seconds=order.grace_seconds))
    charge = ctx.step.run("charge-card", lambda: f"ch-{uuid.uuid4().hex[:8]}")
    return {
        "customer": order.customer,
        "total_cents": total,
        "reservation": reservation,
        "charge_id": charge,
    }


orders = flask.Blueprint("orders", __name__)


@orders.post("/orders")
def place_order() -> tuple[dict[str, Any], int]:
    try:
        order = OrderIn.model_validate(flask.request.get_json(silent=True) or {})
    except pydantic.ValidationError as exc:
        return {
            "error": "invalid order",
            "detail": exc.errors(include_url=False, include_context=False),
        }, 422
    # the shop sets the grace period; API callers (/api/runs) may choose their own
    order.grace_seconds = flask.current_app.config["ORDERS_GRACE"]
    key = flask.request.headers.get("idempotency-key")
    handle = ext.client.start_sync(process_order, order.model_dump(), idempotency_key=key)
    status = 201 if handle.created else 200  # 200: the same key placed it already
    return {"order_id": handle.run_id, "links": _links(handle.run_id)}, status


@orders.get("/orders/<order_id>")
def show_order(order_id: str) -> tuple[dict[str, Any], int]:
    run = _order_run(order_id)
    if run is None:
        return {"error": f"order {order_id} not found"}, 404
    steps = ext.client.get_run_sync(order_id).steps()
    view = {
        "order_id": order_id,
        "status": run.status.value,
        "steps": {step.name: step.status for step in steps},
        "receipt": run.output,
        "error": (run.error or {}).get("message"),
        "links": _links(order_id),
    }
    return view, 200


@orders.post("/orders/<order_id>/cancel")
def cancel_order(order_id: str) -> tuple[dict[str, Any], int]:
    if _order_run(order_id) is None:
        return {"error": f"order {order_id} not found"}, 404
    status = ext.client.get_run_sync(order_id).cancel()
    return {"order_id": order_id, "status": status.value}, 200


def _order_run(order_id: str) -> stepline.RunInfo | None:
    try:
        run = ext.client.get_run_sync(order_id).describe()
    except stepline.RunNotFoundError:
        return None
    return run if run.function_id == process_order.composite_id else None


def _links(order_id: str) -> dict[str, str]:
    return {"self": f"/orders/{order_id}", "events": f"/api/runs/{order_id}/events"}


def authorize(access: stepline.web.AccessRequest) -> bool:
    """The run kit's gate: a bearer token (a real app would check its user's session)."""
    token = flask.current_app.config["ORDERS_API_TOKEN"]
    given = access.request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise stepline.web.AccessDenied("send 'authorization: Bearer <token>'", status=401)
    return True


def create_app(config: Mapping[str, Any] | None = None) -> flask.Flask:
    """The app factory: defaults, then ``config``; the engine runs in this process."""
    app = flask.Flask(__name__)
    app.config.from_mapping(
        STEPLINE_DEV=True,
        STEPLINE_ENGINE="embedded",
        STEPLINE_DATABASE_URL=".stepline/orders.db",
        ORDERS_GRACE=float(os.environ.get("ORDERS_GRACE", "5")),  # seconds to cancel in
        ORDERS_API_TOKEN=os.environ.get("ORDERS_API_TOKEN", "dev-token"),
    )
    app.config.from_mapping(config or {})
    ext.init_app(app)
    app.register_blueprint(orders)
    app.register_blueprint(
        stepline.flask.runs_blueprint(
            ext.state(app).client,
            [process_order],
            authorize=authorize,
            inputs={process_order: OrderIn},
        ),
        url_prefix="/api",
    )
    return app


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8000"))
    print(f"orders app on http://127.0.0.1:{port} (engine dashboard: /stepline/)", flush=True)
    create_app().run(host="127.0.0.1", port=port, threaded=True)
