"""The shop's durable endpoints as bare ASGI apps in Starlette, for the endpoint tests.

``stepline.asgi.durable`` makes each endpoint an ASGI app; Starlette routes to them
(``Route`` restricted to POST, ``Mount`` for ``seen``: any method, the mount's path
parameter). The login is an ASGI middleware putting the session's user in
``scope["user"]`` (else 401), where ``note``'s caller hook reads it. The run routes
(``runs_app``) are mounted at ``/api``. Runnable as a process for the crash scenario:
``python -m tests.apps.durable_asgi PORT DATABASE MARKERS sync|async`` (uvicorn).
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from pathlib import Path
from typing import Any

import starlette.applications
import starlette.requests
import starlette.responses
import starlette.routing

import stepline
import stepline.asgi
from tests.apps.durable_shop import LOGGED_IN, PATHS, Shop, user_from

Scope = dict[str, Any]


def user_of(scope: Scope) -> str | None:
    request = starlette.requests.Request(scope)
    return user_from(request.headers.get("authorization"), request.cookies.get("session"))


class LoginRequired:
    """The app's own authentication: a middleware naming the user in ``scope["user"]``."""

    def __init__(self, app: stepline.asgi.DurableApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        user = user_of(scope)
        if user is None:
            refused = starlette.responses.JSONResponse({"error": "log in first"}, 401)
            await refused(scope, receive, send)
            return
        await self.app({**scope, "user": user}, receive, send)


def endpoints(shop: Shop) -> dict[str, stepline.asgi.DurableApp]:
    """The shop's endpoints, and ``seen``: what request it was given (a 201, any method)."""
    views = shop.declare(
        functools.partial(stepline.asgi.durable, shop.client),
        user_of=user_of,
        caller=shop.caller(lambda scope: f"user:{scope['user']}"),
    )

    @stepline.asgi.durable(shop.client)
    def seen(ctx: stepline.SyncEndpointContext) -> stepline.EndpointResponse:
        request = ctx.request
        answer = {"method": request.method, "path": request.path, "query": dict(request.query)}
        answer["params"] = dict(request.path_params)
        return stepline.EndpointResponse(answer, status=201, headers={"X-Made": "yes"})

    shop.views["seen"] = seen
    return {**views, "seen": seen}


@dataclasses.dataclass
class Built:
    shop: Shop
    app: starlette.applications.Starlette


def build(database: str, markers: Path, *, is_async: bool, async_hooks: bool = False) -> Built:
    shop = Shop("shop-asgi", database, markers, is_async=is_async, async_hooks=async_hooks)
    apps = endpoints(shop)
    routes: list[starlette.routing.BaseRoute] = [
        starlette.routing.Route(
            PATHS[name], LoginRequired(app) if name in LOGGED_IN else app, methods=["POST"]
        )
        for name, app in apps.items()
        if name != "seen"
    ]
    kit = stepline.asgi.runs_app(shop.client, shop.functions, authorize=Shop.kit_authorize(user_of))
    routes += [
        starlette.routing.Mount("/seen/{shop}", apps["seen"]),
        starlette.routing.Mount("/api", kit),
    ]
    return Built(shop, starlette.applications.Starlette(routes=routes))


if __name__ == "__main__":
    import uvicorn

    port, database, markers, face = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), sys.argv[4]
    built = build(database, markers, is_async=face == "async")
    uvicorn.run(built.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
