"""An orders shop on Tornado: each order is a durable function, the engine runs in-process.

One command, no other process (the engine stores its queue in ./.stepline/embedded.db):

    python examples/tornado_orders/app.py      # PORT=8000 by default

    curl -X POST localhost:8000/orders -d '{"item": "teapot", "quantity": 2}'
    curl localhost:8000/orders/<id>
    curl -X POST localhost:8000/orders/<id>/cancel
    curl -H 'Authorization: Bearer dev-token' localhost:8000/api/runs/<id>/events
    open http://localhost:8000/stepline                  # the engine's dashboard

``/orders`` is the app's own API, written with ``ClientMixin``; ``/api/runs`` is the
web-app kit (start, status, cancel, result, live events) behind a bearer token.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import json
import os
import signal
from typing import Any, Literal

import pydantic
import tornado.web

import stepline
import stepline.tornado
import stepline.web

PRICES = {"teapot": 1999, "mug": 899, "sofa": 49900}
#: Read once at start-up; the kit's authorize hook compares against it.
API_TOKEN = os.environ.get("ORDERS_API_TOKEN", "dev-token")

client = stepline.Client("tornado-orders", is_production=False)


class Order(pydantic.BaseModel):
    item: Literal["teapot", "mug", "sofa"]
    quantity: int = pydantic.Field(gt=0, le=100)
    ship_after: int = pydantic.Field(default=2, ge=0, le=86_400, description="seconds")


@client.function(id="process-order", trigger=stepline.TriggerEvent(event="shop/order.placed"))
def process_order(ctx: stepline.SyncContext) -> dict[str, Any]:
    order = Order.model_validate(ctx.event.data)
    total = ctx.step.run("reserve-stock", lambda: PRICES[order.item] * order.quantity)
    charge = ctx.step.run("charge-card", lambda: f"ch_{ctx.run_id[-10:]}")
    if order.ship_after:  # a durable sleep: no worker is held while it waits
        ctx.step.sleep("wait-for-courier", dt.timedelta(seconds=order.ship_after))
    tracking = ctx.step.run("ship", lambda: f"TRK-{ctx.run_id[-6:]}")
    return {
        "item": order.item,
        "quantity": order.quantity,
        "total_cents": total,
        "charge": charge,
        "tracking": tracking,
    }


class JsonHandler(stepline.tornado.ClientMixin, tornado.web.RequestHandler):
    def reply(self, status: int, body: dict[str, Any]) -> None:
        self.set_status(status)
        self.finish(body)

    async def order(self, order_id: str) -> stepline.RunInfo | None:
        """The run behind an order, or None (unknown id, or a run of another function)."""
        try:
            run = await self.stepline_client.get_run(order_id).describe()
        except stepline.RunNotFoundError:
            return None
        return run if run.function_id == process_order.composite_id else None


class Orders(JsonHandler):
    async def post(self) -> None:
        try:
            order = Order.model_validate_json(self.request.body or b"{}")
        except pydantic.ValidationError as exc:
            detail = json.loads(exc.json(include_url=False))
            return self.reply(422, {"error": "invalid order", "detail": detail})
        handle = await self.stepline_client.start(
            process_order,
            order.model_dump(),
            idempotency_key=self.request.headers.get("Idempotency-Key"),
        )
        link = f"/orders/{handle.run_id}"
        body = {"id": handle.run_id, "links": {"self": link, "cancel": f"{link}/cancel"}}
        self.reply(201 if handle.created else 200, body)


class OrderDetail(JsonHandler):
    async def get(self, order_id: str) -> None:
        run = await self.order(order_id)
        if run is None:
            return self.reply(404, {"error": f"order {order_id} not found"})
        body = {"id": order_id, "status": run.status.value, "result": run.output}
        self.reply(200, {**body, "error": run.error and dict(run.error)})


class CancelOrder(JsonHandler):
    async def post(self, order_id: str) -> None:
        if await self.order(order_id) is None:
            return self.reply(404, {"error": f"order {order_id} not found"})
        status = await self.stepline_client.get_run(order_id).cancel()
        self.reply(200, {"id": order_id, "status": status.value})


class Index(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write({"orders": "/orders", "runs": "/api/runs", "dashboard": "/stepline"})


def bearer_token(access: stepline.web.AccessRequest) -> bool:
    """The kit's authorize hook: ``access.request`` is the Tornado RequestHandler."""
    header = access.request.request.headers.get("Authorization")
    if not header:
        raise stepline.web.AccessDenied("send Authorization: Bearer <token>", status=401)
    return hmac.compare_digest(header, f"Bearer {API_TOKEN}")


def make_app(engine: Literal["embedded"] | None = "embedded") -> tornado.web.Application:
    """The shop; ``engine=None`` leaves the engine to someone else (a dev server, a TestEnv)."""
    app = tornado.web.Application(
        [
            (r"/", Index),
            (r"/orders", Orders),
            (r"/orders/([A-Za-z0-9_-]+)", OrderDetail),
            (r"/orders/([A-Za-z0-9_-]+)/cancel", CancelOrder),
        ]
    )
    # The engine on a background thread (SQLite), its API and dashboard at /stepline, and
    # the client in app.settings["stepline_client"] for ClientMixin.
    stepline.tornado.serve(app, client, [process_order], engine=engine)
    kit = stepline.tornado.runs_handlers(
        client,
        [process_order],
        authorize=bearer_token,
        inputs={process_order: Order},
        prefix="/api",
    )
    app.add_handlers(r".*", kit)
    return app


async def main() -> None:
    port = int(os.environ.get("PORT", "8000"))
    app = make_app()
    server = app.listen(port, address="127.0.0.1")
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    print(f"orders on http://127.0.0.1:{port}/  (dashboard: /stepline)", flush=True)
    await stop.wait()
    server.stop()
    await server.close_all_connections()
    await stepline.tornado.shutdown(app)  # stops the engine, closes the client


if __name__ == "__main__":
    asyncio.run(main())
