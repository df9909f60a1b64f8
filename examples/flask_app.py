"""A small shop backend: an ordinary Flask app that also serves Stepline functions.

The functions live next to normal routes and are served at ``/api/inngest`` by
``stepline.flask.serve``. An engine (``stepline dev``, or an Inngest server) calls that
endpoint to run them step by step; ``POST /orders`` starts one by sending an event.

Run it on its own against an engine listening on ``http://127.0.0.1:8288``::

    .venv/bin/stepline dev -u http://127.0.0.1:8000/api/inngest &
    .venv/bin/python examples/flask_app.py

or let ``examples/demo.py`` start both.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import flask
import pydantic

import stepline
import stepline.flask

APP_ID = "demo-shop"

#: Sales per region, as a report query would find them.
REGIONAL_SALES_CENTS = {"eu": 12_500, "us": 20_000, "apac": 7_500}


class LineItem(pydantic.BaseModel):
    """One line of an order."""

    sku: str
    quantity: int


class Order(pydantic.BaseModel):
    """The payload of ``shop/order.created``."""

    order_id: str
    customer: str
    items: list[LineItem]
    total_cents: int


class Shipment(pydantic.BaseModel):
    """The payload of ``shop/shipment.sent``."""

    order_id: str
    tracking: str


class Purchase(pydantic.BaseModel):
    """The payload of ``shop/customer.rewarded`` (and of the ``child`` invocation)."""

    customer: str
    amount_cents: int


class CardNetworkTimeoutError(Exception):
    """A transient payment-provider failure: worth retrying."""


def make_functions(client: stepline.Client) -> list[stepline.Function]:
    """Declare the shop's durable functions on ``client``."""

    @client.function(
        id="process-order",
        trigger=stepline.TriggerEvent(event="shop/order.created"),
        retries=3,
    )
    def process_order(ctx: stepline.SyncContext) -> dict[str, Any]:
        """Reserve stock, charge, wait for shipping, then send a receipt."""
        order = ctx.event.data_as(Order)

        def reserve_stock() -> dict[str, Any]:
            units = sum(item.quantity for item in order.items)
            return {"reservation_id": f"res-{order.order_id}", "units": units}

        def charge_card() -> dict[str, Any]:
            # The payment provider times out on the first attempt, every time: a
            # deterministic stand-in for a flaky network, so the retry is visible.
            if ctx.attempt == 0:
                raise CardNetworkTimeoutError("card network did not answer in time")
            return {"charge_id": f"ch-{order.order_id}", "amount_cents": order.total_cents}

        reservation = ctx.step.run("reserve-stock", reserve_stock)
        charge = ctx.step.run("charge-card", charge_card)
        ctx.step.sleep("cool-off", dt.timedelta(seconds=2))
        shipment = ctx.step.wait_for_event(
            "wait-shipment",
            event="shop/shipment.sent",
            if_exp="event.data.order_id == async.data.order_id",
            timeout=dt.timedelta(minutes=1),
        )
        tracking = None if shipment is None else shipment.data_as(Shipment).tracking

        def send_receipt() -> str:
            paid = charge["amount_cents"] / 100
            shipped = f"tracking {tracking}" if tracking else "not shipped yet"
            return f"receipt for {order.order_id}: {order.customer} paid ${paid:.2f}, {shipped}"

        receipt = ctx.step.run("send-receipt", send_receipt)
        return {
            "order_id": order.order_id,
            "reservation_id": reservation["reservation_id"],
            "charge_id": charge["charge_id"],
            "tracking": tracking,
            "receipt": receipt,
        }

    @client.function(id="fan-out", trigger=stepline.TriggerEvent(event="shop/report.requested"))
    async def fan_out(ctx: stepline.Context) -> dict[str, Any]:
        """Query every region in parallel, then add the results up."""

        async def sales(region: str) -> int:
            return REGIONAL_SALES_CENTS[region]

        eu, us, apac = await ctx.step.parallel(
            [
                lambda: ctx.step.run("sales-eu", sales, "eu"),
                lambda: ctx.step.run("sales-us", sales, "us"),
                lambda: ctx.step.run("sales-apac", sales, "apac"),
            ]
        )
        return {"eu": eu, "us": us, "apac": apac, "total_cents": eu + us + apac}

    @client.function(id="child", trigger=stepline.TriggerEvent(event="shop/points.compute"))
    async def child(ctx: stepline.Context) -> dict[str, Any]:
        """Compute loyalty points for a purchase (usually invoked by ``parent``)."""
        amount_cents = ctx.event.data_as(Purchase).amount_cents
        points = await ctx.step.run("compute-points", lambda: amount_cents // 100)
        return {"points": points}

    @client.function(id="parent", trigger=stepline.TriggerEvent(event="shop/customer.rewarded"))
    async def parent(ctx: stepline.Context) -> dict[str, Any]:
        """Invoke ``child`` as a step and use its result."""
        purchase = ctx.event.data_as(Purchase)
        result = await ctx.step.invoke(
            "call-child",
            function=child,
            data={"customer": purchase.customer, "amount_cents": purchase.amount_cents},
        )
        return {"customer": purchase.customer, "points": result["points"]}

    return [process_order, fan_out, child, parent]


def create_app(api_base_url: str | None = None) -> flask.Flask:
    """Build the shop app.

    Args:
        api_base_url: where the engine listens (registration and events). ``None`` reads
            ``STEPLINE_API_BASE_URL`` / ``STEPLINE_EVENT_API_BASE_URL`` or falls back to the
            local dev-server default, ``http://127.0.0.1:8288``.
    """
    app = flask.Flask(__name__)
    client = stepline.Client(
        APP_ID,
        is_production=False,
        api_base_url=api_base_url,
        event_api_base_url=api_base_url,
    )

    @app.post("/orders")
    def create_order() -> tuple[flask.Response, int]:
        """An ordinary route: accept an order, start ``process-order``, answer with JSON."""
        body = flask.request.get_json(silent=True) or {}
        order = {
            "order_id": f"ord-{uuid.uuid4().hex[:8]}",
            "customer": str(body.get("customer", "anonymous")),
            "items": list(body.get("items", [])),
            "total_cents": int(body.get("total_cents", 0)),
            "status": "accepted",
        }
        event = stepline.Event(name="shop/order.created", data=order)
        order["event_ids"] = client.send_sync(event)
        return flask.jsonify(order), 201

    stepline.flask.serve(app, client, make_functions(client))
    return app


if __name__ == "__main__":
    create_app().run(port=8000)
