"""Django views that are durable routes on an embedded engine, for the Django endpoint tests.

Importable (``build(database, markers, is_async=...)``: the URL patterns, to mount in the
tests' URLconf) and runnable as a process (``python -m tests.endpoints.django_durable_app
wsgi|asgi PORT DATABASE MARKERS``) for the crash test: Django's threaded WSGI server with
plain ``def`` handlers, or uvicorn with ``async def`` ones. Each step appends its name and
run id to MARKERS; step "c" writes ``c-started`` and blocks forever in a process started
with ``BLOCK=1``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

import stepline
import stepline.django
import stepline.web
from stepline.embedded import EmbeddedEngine

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
#: The process's URLconf (``__main__``): set by ``main``.
urlpatterns: list[Any] = []


@dataclass
class Built:
    client: stepline.Client
    engine: EmbeddedEngine
    views: dict[str, Any]
    patterns: list[Any]


def build(database: str, markers: Path, *, is_async: bool, app_id: str = "dj-durable") -> Built:
    """``orders/<oid>`` (3 steps), ``nap`` (a sleep), ``made/<int:oid>`` (an
    ``EndpointResponse``), ``small`` (max_body=16), csrf-exempt as an API's are;
    ``guarded/<oid>`` the orders view without the exemption; the run routes at ``api/``."""
    client = stepline.Client(app_id, is_production=False, environ={})

    def mark(name: str, run_id: str) -> str:
        with markers.open("a") as out:
            out.write(f"{name} {run_id}\n")
        return name

    views = (_async_views if is_async else _sync_views)(client, mark)
    functions = [view.endpoint.function for view in views.values()]
    engine = EmbeddedEngine(client, [], database=database, poll_interval=0.05, lease_seconds=2)
    kit = stepline.django.runs_urls(
        client, functions, authorize=stepline.web.allow_all, async_mode=is_async
    )
    patterns = [
        path("orders/<str:oid>", csrf_exempt(views["orders"])),
        path("guarded/<str:oid>", views["orders"]),
        path("nap", csrf_exempt(views["nap"])),
        path("made/<int:oid>", csrf_exempt(views["made"])),
        path("small", csrf_exempt(views["small"])),
        path("api/", include(kit)),
    ]
    return Built(client, engine, views, patterns)


def _sync_views(client: stepline.Client, mark: Callable[[str, str], str]) -> dict[str, Any]:
    @stepline.django.durable(client, run_routes="/api")
    def orders(ctx: stepline.SyncEndpointContext) -> dict[str, Any]:
        a = ctx.step.run("a", mark, "a", ctx.run_id)
        b = ctx.step.run("b", mark, "b", ctx.run_id)

        def c() -> str:
            if os.environ.get("BLOCK") == "1":
                mark("c-started", ctx.run_id)
                time.sleep(3600)
            return str(mark("c", ctx.run_id))

        c_value = ctx.step.run("c", c)
        return {"steps": [a, b, c_value], "oid": ctx.request.path_params["oid"], **_seen(ctx)}

    @stepline.django.durable(client, run_routes="/api")
    def nap(ctx: stepline.SyncEndpointContext) -> stepline.EndpointResponse:
        first = ctx.step.run("first", mark, "first", ctx.run_id)
        ctx.step.sleep("nap", dt.timedelta(seconds=1))
        then = ctx.step.run("then", mark, "then", ctx.run_id)
        return stepline.EndpointResponse({"ran": [first, then]}, status=201, headers={"x-nap": "1"})

    @stepline.django.durable(client, id="made", run_routes="/api")
    def made(ctx: stepline.SyncEndpointContext) -> stepline.EndpointResponse:
        oid = ctx.request.path_params["oid"]
        ctx.step.run("make", mark, "make", ctx.run_id)
        return stepline.EndpointResponse(
            f"order {oid} made", status=201, headers={"x-order": str(oid)}
        )

    @stepline.django.durable(client, max_body=16)
    def small(ctx: stepline.SyncEndpointContext) -> dict[str, str]:
        return {"echo": ctx.step.run("echo", lambda: ctx.request.text)}

    return {"orders": orders, "nap": nap, "made": made, "small": small}


def _async_views(client: stepline.Client, mark: Callable[[str, str], str]) -> dict[str, Any]:
    async def amark(name: str, run_id: str) -> str:
        return str(mark(name, run_id))

    @stepline.django.durable(client, run_routes="/api")
    async def orders(ctx: stepline.EndpointContext) -> dict[str, Any]:
        a = await ctx.step.run("a", amark, "a", ctx.run_id)
        b = await ctx.step.run("b", amark, "b", ctx.run_id)

        async def c() -> str:
            if os.environ.get("BLOCK") == "1":
                await amark("c-started", ctx.run_id)
                await asyncio.sleep(3600)
            return await amark("c", ctx.run_id)

        c_value = await ctx.step.run("c", c)
        return {"steps": [a, b, c_value], "oid": ctx.request.path_params["oid"], **_seen(ctx)}

    @stepline.django.durable(client, run_routes="/api")
    async def nap(ctx: stepline.EndpointContext) -> stepline.EndpointResponse:
        first = await ctx.step.run("first", amark, "first", ctx.run_id)
        await ctx.step.sleep("nap", dt.timedelta(seconds=1))
        then = await ctx.step.run("then", amark, "then", ctx.run_id)
        return stepline.EndpointResponse({"ran": [first, then]}, status=201, headers={"x-nap": "1"})

    @stepline.django.durable(client, id="made", run_routes="/api")
    async def made(ctx: stepline.EndpointContext) -> stepline.EndpointResponse:
        oid = ctx.request.path_params["oid"]
        await ctx.step.run("make", amark, "make", ctx.run_id)
        return stepline.EndpointResponse(
            f"order {oid} made", status=201, headers={"x-order": str(oid)}
        )

    @stepline.django.durable(client, max_body=16)
    async def small(ctx: stepline.EndpointContext) -> dict[str, str]:
        async def echo() -> str:
            return ctx.request.text

        return {"echo": await ctx.step.run("echo", echo)}

    return {"orders": orders, "nap": nap, "made": made, "small": small}


def _seen(ctx: stepline.EndpointContext | stepline.SyncEndpointContext) -> dict[str, Any]:
    return {"sent": ctx.request.json(), "path": ctx.request.path, "query": ctx.request.query}


def main(server: str, port: int, database: str, markers: Path) -> None:
    """Configure Django, mount ``build``'s patterns and serve them on 127.0.0.1:``port``."""
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF="__main__",
        SECRET_KEY="stepline-tests-not-secret",
        MIDDLEWARE=MIDDLEWARE,
        INSTALLED_APPS=[],
        DATABASES={},
        USE_TZ=True,
    )
    django.setup()
    urlpatterns[:] = build(database, markers, is_async=server == "asgi").patterns
    if server == "asgi":
        import uvicorn
        from django.core.handlers.asgi import ASGIHandler

        uvicorn.run(ASGIHandler(), host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        return
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler

    httpd = ThreadedWSGIServer(("127.0.0.1", port), WSGIRequestHandler)
    httpd.set_app(WSGIHandler())
    httpd.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], Path(sys.argv[4]))
