"""``make demo``: a real Flask app serving Stepline functions, driven over real HTTP.

What happens:

1. A tiny registry (the engine's ``/fn/register``) and the shop app from ``flask_app.py``
   start on free localhost ports.
2. The mini executor inspects the app (GET) and syncs it (PUT); the app registers its
   functions with the registry.
3. An ordinary route (``POST /orders``) accepts an order, and the resulting
   ``shop/order.created`` event runs ``process-order``: steps, a retry, a sleep and a
   wait for a shipment event. Then ``fan-out`` (parallel steps) and ``parent`` (which
   invokes ``child``) run.

Exits 0 after printing "demo finished OK", non-zero if anything goes wrong.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any

import httpx

# ``python examples/demo.py`` puts this directory on sys.path: its siblings import directly.
from flask_app import REGIONAL_SALES_CENTS, create_app
from mini_executor import MiniExecutor, Registry
from werkzeug.serving import BaseWSGIServer, make_server


def warehouse(trigger: dict[str, Any], wait: dict[str, Any]) -> dict[str, Any]:
    """Plays the warehouse: ships the order a run is waiting for."""
    order_id = trigger["data"]["order_id"]
    return {"name": wait["name"], "data": {"order_id": order_id, "tracking": "1Z-DEMO-42"}}


def banner(text: str) -> None:
    """Print a section heading."""
    print(f"\n== {text}", flush=True)


def check(ok: bool, what: str) -> None:
    """Print a check mark line, or stop the demo."""
    if not ok:
        raise AssertionError(f"unexpected result: {what}")
    print(f"  ok: {what}", flush=True)


def main() -> int:
    """Run the demo; returns the process exit code."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no per-request access log
    started = time.monotonic()
    registry = Registry().start()
    server: BaseWSGIServer = make_server("127.0.0.1", 0, create_app(registry.url), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    app_url = f"http://127.0.0.1:{server.server_port}"
    executor = MiniExecutor(f"{app_url}/api/inngest", registry, event_source=warehouse)
    try:
        banner(f"shop app on {app_url}, engine registry on {registry.url}")
        inspection = executor.inspect()
        print(
            f"  GET  /api/inngest -> mode={inspection['mode']}, "
            f"{inspection['function_count']} functions"
        )
        print(f"  PUT  /api/inngest -> registered: {', '.join(executor.sync())}")

        banner("an ordinary route: POST /orders")
        items = [{"sku": "mug", "quantity": 2}, {"sku": "tea", "quantity": 1}]
        new_order = {"customer": "Ada", "items": items, "total_cents": 3450}
        order = httpx.post(f"{app_url}/orders", json=new_order).raise_for_status().json()
        print(f"  201 {order}")

        banner("process-order: steps, a retried step, a sleep and a wait for an event")
        results = executor.send("shop/order.created", order)
        summary = results["demo-shop-process-order"]
        print(f"  result: {summary}")
        check(summary["charge_id"] == f"ch-{order['order_id']}", "card charged after a retry")
        check(summary["tracking"] == "1Z-DEMO-42", "shipment event received")
        check(summary["receipt"].startswith(f"receipt for {order['order_id']}"), "receipt sent")

        banner("fan-out: three steps in parallel, then their sum")
        report = executor.send("shop/report.requested", {})["demo-shop-fan-out"]
        print(f"  result: {report}")
        check(report["total_cents"] == sum(REGIONAL_SALES_CENTS.values()), "regions summed")

        banner("parent: invokes child as a step")
        reward = {"customer": "Ada", "amount_cents": 3450}
        rewarded = executor.send("shop/customer.rewarded", reward)["demo-shop-parent"]
        print(f"  result: {rewarded}")
        check(rewarded == {"customer": "Ada", "points": 34}, "child result returned")
    except Exception as exc:
        print(f"\ndemo FAILED: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        executor.http.close()
        server.shutdown()
        registry.stop()
    print(f"\ndemo finished OK in {time.monotonic() - started:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
