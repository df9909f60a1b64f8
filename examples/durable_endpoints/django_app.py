"""Checkout as a durable endpoint, in Django: one file, the engine in the process.

    python examples/durable_endpoints/django_app.py          # http://127.0.0.1:8000

    curl -X POST localhost:8000/checkout -H 'content-type: application/json' \\
         -H 'idempotency-key: cart-1' -d '{"cart": "cart-1", "items": 2}'
    curl -i -X POST localhost:8000/checkout -H 'content-type: application/json' \\
         -d '{"cart": "cart-2", "items": 1, "gift_wrap": true}'
    curl localhost:8000/api/runs/<run_id>/result?wait=10

The same checkout as ``fastapi_app.py``, as an ``async def`` Django view (Django serves
it as an async view; a plain ``def`` handler makes a sync view). A project keeps the
settings in ``settings.py`` and the view in ``views.py``: here they are one file so it
runs as one command. Settings: ``PORT``, ``STEPLINE_DATABASE_URL``.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from typing import Any

import django
from django.conf import settings
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

settings.configure(
    DEBUG=True,
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    INSTALLED_APPS=["stepline.django"],
    SECRET_KEY="durable-endpoints-example",
    STEPLINE={
        "APP_ID": "shop",
        "DEV": True,
        "ENGINE": "embedded",
        "DATABASE": os.environ.get("STEPLINE_DATABASE_URL", ".stepline/embedded.db"),
    },
)
django.setup()

import stepline  # noqa: E402 - after the settings, as Django wants
import stepline.django  # noqa: E402
import stepline.web  # noqa: E402


@csrf_exempt  # an API for JSON clients; a browser form would keep Django's CSRF check
@stepline.django.durable(retries=3, run_routes="/api")
async def checkout(ctx: stepline.EndpointContext) -> Any:
    """Reserve, charge, (gift-wrap), confirm: one request, each step exactly once."""
    cart = ctx.request.json() if ctx.request.body else None
    if not isinstance(cart, dict) or not cart.get("cart") or not 1 <= cart.get("items", 0) <= 100:
        return stepline.EndpointResponse({"error": "want {cart, items: 1-100}"}, status=422)
    order = await ctx.step.run("reserve", lambda: {"order": f"ord-{ctx.run_id[-8:]}"})
    charge = await ctx.step.run(
        "charge", lambda: {"charge": f"ch-{ctx.run_id[-8:]}", "cents": 1250 * cart["items"]}
    )
    if cart.get("gift_wrap"):  # the request answers 202 here; the engine wakes the run in 3 s
        await ctx.step.sleep("wrapping", dt.timedelta(seconds=3))
    email = await ctx.step.run("email", lambda: "sent")
    return {**order, **charge, "email": email}


urlpatterns = [
    path("checkout", checkout),
    # the kit's routes: where a suspended checkout's Location points
    path(
        "api/",
        include(
            stepline.django.runs_urls(
                stepline.django.get_client(),
                [checkout.endpoint.function],
                authorize=stepline.web.allow_all,
            )
        ),
    ),
    path("stepline/", include("stepline.django.urls")),  # the engine's API and dashboard
]


if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    port = os.environ.get("PORT", "8000")
    execute_from_command_line([sys.argv[0], "runserver", "--noreload", f"127.0.0.1:{port}"])
